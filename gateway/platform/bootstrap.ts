// Owns starting a gateway from configuration: dev PKI when missing, production refusals, API key, listen, shutdown.
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  DEV_CA_COMMON_NAME,
  type DevPkiPaths,
  ensureDevPki,
  inspectCertificate,
  loadDevPki,
} from '../../certs/index.ts';
import type { Catalog } from '../../protocols/index.ts';
import { findCallerByHash, hashApiKey } from '../access/api-keys.ts';
import { type Gateway, startGateway } from '../gateway.ts';
import type { Config } from './config.ts';
import { loadGatewayMaterial } from './material.ts';

export interface BootDeps {
  config: Config;
  catalog: Catalog;
  /** VINs the development PKI issues identities for when it is created. */
  seededVins: string[];
  logger: Logger;
  print: (line: string) => void;
}

export interface Booted {
  gateway: Gateway;
  pki: DevPkiPaths;
  baseUrl: string;
  /** Where /metrics is served: its own listener with METRICS_PORT, else on baseUrl. */
  metricsUrl: string;
  /** The development API key, when this start created or found one on disk. */
  apiKey: string | null;
  /** Graceful: see Gateway.close. */
  stop(): Promise<void>;
}

export type StartupErrorCode =
  | 'PRODUCTION_NEEDS_PKI'
  | 'PRODUCTION_DEV_PKI'
  | 'PRODUCTION_DEV_API_KEY'
  | 'PRODUCTION_NEEDS_API_KEYS';

/** The label of keys that a development start creates by itself; production refuses a store holding one. */
export const DEV_API_KEY_LABEL = 'development key created at start';

export class StartupError extends Error {
  readonly code: StartupErrorCode;
  constructor(code: StartupError['code'], message: string) {
    super(message);
    this.name = 'StartupError';
    this.code = code;
  }
}

/**
 * In development a key is created on first start and kept in CERTS_DIR/api-key (0600); production never does
 * this. It is an admin key (every scope, no binding); one from before scopes existed is replaced.
 */
async function ensureDevApiKey(
  gateway: Gateway,
  file: string,
  print: (line: string) => void,
): Promise<string> {
  if (existsSync(file)) {
    const key = readFileSync(file, 'utf8').trim();
    const caller = await findCallerByHash(gateway.store.db, hashApiKey(key));
    if (caller?.scopes.includes('admin')) return key;
  }
  const key = await gateway.createApiKey(DEV_API_KEY_LABEL);
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  print(`Created a development API key in ${file} (mode 0600).`);
  return key;
}

/** The development CA's name, as ensureDevPki writes it; certs/ marks no other CA so. */
function isDevelopmentCa(caCertPath: string): boolean {
  const der = new X509Certificate(readFileSync(caCertPath)).raw;
  return inspectCertificate(der).subjectCommonNames.includes(DEV_CA_COMMON_NAME);
}

/** Production starts only with an issued PKI and operator-made API keys: nothing a development start creates. */
async function refuseDevelopmentMaterial(config: Config, gateway: Gateway): Promise<void> {
  const devKeyFile = join(config.CERTS_DIR, 'api-key');
  if (existsSync(devKeyFile)) {
    throw new StartupError(
      'PRODUCTION_DEV_API_KEY',
      `production refuses to start while ${devKeyFile} (a self-generated development key) exists`,
    );
  }
  const keys = await gateway.store.db.selectFrom('api_keys').select(['label']).execute();
  if (keys.some((k) => k.label === DEV_API_KEY_LABEL)) {
    throw new StartupError(
      'PRODUCTION_DEV_API_KEY',
      `production refuses a store holding self-generated development API keys (label "${DEV_API_KEY_LABEL}")`,
    );
  }
  if (keys.length === 0) {
    throw new StartupError(
      'PRODUCTION_NEEDS_API_KEYS',
      'production refuses to start without API keys in the store',
    );
  }
}

export async function bootGateway(deps: BootDeps): Promise<Booted> {
  const { config, print } = deps;
  const production = config.NODE_ENV === 'production';
  let pki: DevPkiPaths;
  if (production) {
    try {
      pki = loadDevPki(config.CERTS_DIR);
    } catch (err) {
      throw new StartupError(
        'PRODUCTION_NEEDS_PKI',
        `production needs an issued PKI in CERTS_DIR: ${(err as Error).message}`,
      );
    }
    if (isDevelopmentCa(pki.caCert)) {
      throw new StartupError(
        'PRODUCTION_DEV_PKI',
        `production refuses the development PKI in ${config.CERTS_DIR} (CA "${DEV_CA_COMMON_NAME}"); issue a production one`,
      );
    }
  } else {
    const made = await ensureDevPki({ dir: config.CERTS_DIR, vins: deps.seededVins });
    if (made.created.length > 0)
      print(`Development PKI in ${config.CERTS_DIR}: created ${made.created.length} files.`);
    pki = made;
  }
  const gateway = await startGateway({
    config,
    material: await loadGatewayMaterial(pki, config.GATEWAY_REPLICA),
    catalog: deps.catalog,
    logger: deps.logger,
  });
  try {
    let apiKey: string | null = null;
    if (!production) apiKey = await ensureDevApiKey(gateway, join(config.CERTS_DIR, 'api-key'), print);
    else await refuseDevelopmentMaterial(config, gateway);
    const address = await gateway.app.listen({ host: config.HOST, port: config.HTTP_PORT });
    const metricsUrl = gateway.metricsApp
      ? await gateway.metricsApp.listen({ host: config.METRICS_HOST, port: config.METRICS_PORT ?? 0 })
      : address;
    return {
      gateway,
      pki,
      baseUrl: address,
      metricsUrl: `${metricsUrl}/metrics`,
      apiKey,
      stop: () => gateway.close(),
    };
  } catch (err) {
    await gateway.close();
    throw err;
  }
}
