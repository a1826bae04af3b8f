// Production mode: refuses the development PKI and self-generated API keys, and starts with operator-made ones.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createCa, devPkiPaths, ensureDevPki, writeIdentity } from '../certs/index.ts';
import { ADMIN_GRANT, insertGrantedKey } from '../gateway/access/api-keys.ts';
import { hashApiKey } from '../gateway/access/auth.ts';
import { bootGateway, DEV_API_KEY_LABEL, StartupError } from '../gateway/platform/bootstrap.ts';
import { parseConfig } from '../gateway/platform/config.ts';
import { loadSeeds } from '../seeds/index.ts';
import { type ScratchStore, scratchStore } from './helpers/temp-store.ts';

let dir: string;
/** The gateway's store, on the run's dialect. */
let store: ScratchStore;
const pkiDir = () => join(dir, 'pki');

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'curbside-prod-'));
  store = await scratchStore(join(dir, 'data'));
});
afterEach(async () => {
  await store?.drop();
  rmSync(dir, { recursive: true, force: true });
});

/** An issued PKI: the development layout, under a CA that is not the development one. */
async function productionPki(): Promise<void> {
  const paths = devPkiPaths(pkiDir());
  mkdirSync(paths.dir, { recursive: true });
  await writeIdentity(
    { cert: paths.caCert, key: paths.caKey },
    createCa({ commonName: 'Acme Fleet Issuing CA' }),
  );
  await ensureDevPki({ dir: pkiDir(), vins: [] });
}

async function storeKey(label: string, key = `ck_${'k'.repeat(32)}`): Promise<string> {
  const opened = await store.open();
  // An operator's key, as `npm run keys -- create` makes one: an admin grant.
  await insertGrantedKey(opened.db, {
    id: `key_${label.length}`,
    hash: hashApiKey(key),
    label,
    createdAt: Date.now(),
    grant: ADMIN_GRANT,
  });
  await opened.close();
  return key;
}

const boot = () =>
  bootGateway({
    config: parseConfig({
      NODE_ENV: 'production',
      HTTP_PORT: '0',
      MQTT_PORT: '0',
      ...store.env,
      CERTS_DIR: pkiDir(),
    }),
    catalog: loadSeeds().catalog,
    seededVins: [],
    logger: pino({ level: 'silent' }),
    print: () => undefined,
  });

async function refusal(): Promise<StartupError> {
  const err = await boot().then(
    async (booted) => {
      await booted.stop();
      throw new Error('production started');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StartupError);
  return err as StartupError;
}

describe('production refuses', () => {
  it('to start without a PKI, and does not create one', async () => {
    expect((await refusal()).code).toBe('PRODUCTION_NEEDS_PKI');
    expect(existsSync(pkiDir())).toBe(false);
  });

  it('the development PKI (its CA is "Curbside Key Dev CA")', async () => {
    await ensureDevPki({ dir: pkiDir(), vins: [] });
    await storeKey('issued by the operator');
    const err = await refusal();
    expect(err.code).toBe('PRODUCTION_DEV_PKI');
    expect(err.message).toContain('Curbside Key Dev CA');
  });

  it('to start without API keys, rather than make one', async () => {
    await productionPki();
    expect((await refusal()).code).toBe('PRODUCTION_NEEDS_API_KEYS');
  });

  it('the development API key file a development start left in CERTS_DIR', async () => {
    await productionPki();
    await storeKey('issued by the operator');
    writeFileSync(join(pkiDir(), 'api-key'), `ck_${'d'.repeat(32)}\n`);
    expect((await refusal()).code).toBe('PRODUCTION_DEV_API_KEY');
  });

  it('a store holding a self-generated development key', async () => {
    await productionPki();
    await storeKey('issued by the operator');
    await storeKey(DEV_API_KEY_LABEL, `ck_${'s'.repeat(32)}`);
    expect((await refusal()).code).toBe('PRODUCTION_DEV_API_KEY');
  });
});

describe('production starts', () => {
  it('with an issued PKI and operator-made keys, and creates no key of its own', async () => {
    await productionPki();
    const key = await storeKey('issued by the operator');
    const booted = await boot();
    try {
      expect(booted.apiKey).toBeNull();
      expect((await fetch(`${booted.baseUrl}/readyz`)).status).toBe(200);
      const r = await fetch(`${booted.baseUrl}/v1/vehicles`, { headers: { authorization: `Bearer ${key}` } });
      expect(r.status).toBe(200);
      expect(await r.json()).toEqual({ vehicles: [] });
    } finally {
      await booted.stop();
    }
  });

  it('and takes only https webhook URLs', async () => {
    await productionPki();
    const key = await storeKey('issued by the operator');
    const booted = await boot();
    try {
      const subscribe = (url: string) =>
        fetch(`${booted.baseUrl}/v1/webhooks`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ url, events: ['delivery.completed'], ownerId: 'owner-ada' }),
        });
      const http = await subscribe('http://hooks.example.com/curbside');
      expect(http.status).toBe(422);
      expect(await http.json()).toMatchObject({
        code: 'WEBHOOK_URL_FORBIDDEN',
        detail: expect.stringMatching(/https in production/),
      });
      const https = await subscribe('https://hooks.example.com/curbside');
      expect(https.status).toBe(201);
      await https.body?.cancel();
    } finally {
      await booted.stop();
    }
  });
});
