// Owns starting a gateway from configuration: dev PKI when missing, material, API key, HTTP listen, shutdown.
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type DevPkiPaths, ensureDevPki, loadDevPki } from '../certs/index.ts';
import type { Catalog } from '../protocols/index.ts';
import { findCallerByHash, hashApiKey } from './api-keys.ts';
import type { Config } from './config.ts';
import { type Gateway, startGateway } from './gateway.ts';
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
  /** The development API key, when this start created or found one on disk. */
  apiKey: string | null;
  stop(): Promise<void>;
}

export class StartupError extends Error {
  readonly code: 'PRODUCTION_NEEDS_PKI' | 'PRODUCTION_NEEDS_API_KEYS';
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
  const key = await gateway.createApiKey('development key created at start');
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  print(`Created a development API key in ${file} (mode 0600).`);
  return key;
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
  } else {
    const made = await ensureDevPki({ dir: config.CERTS_DIR, vins: deps.seededVins });
    if (made.created.length > 0)
      print(`Development PKI in ${config.CERTS_DIR}: created ${made.created.length} files.`);
    pki = made;
  }
  const gateway = await startGateway({
    config,
    material: await loadGatewayMaterial(pki),
    catalog: deps.catalog,
    logger: deps.logger,
  });
  try {
    let apiKey: string | null = null;
    if (!production) apiKey = await ensureDevApiKey(gateway, join(config.CERTS_DIR, 'api-key'), print);
    else if ((await gateway.store.db.selectFrom('api_keys').select('id').executeTakeFirst()) === undefined) {
      throw new StartupError(
        'PRODUCTION_NEEDS_API_KEYS',
        'production refuses to start without API keys in the store',
      );
    }
    const address = await gateway.app.listen({ host: config.HOST, port: config.HTTP_PORT });
    return {
      gateway,
      pki,
      baseUrl: address,
      apiKey,
      stop: () => gateway.close(),
    };
  } catch (err) {
    await gateway.close();
    throw err;
  }
}

/** Resolves on the first SIGINT or SIGTERM; a second one exits at once. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.once('SIGINT', () => process.exit(1));
      process.once('SIGTERM', () => process.exit(1));
      resolve(signal);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
