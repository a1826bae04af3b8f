// The development key made at start is an admin key (every scope); one from before scopes is replaced.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findCallerByHash, hashApiKey } from '../gateway/access/api-keys.ts';
import { bootGateway } from '../gateway/platform/bootstrap.ts';
import { parseConfig } from '../gateway/platform/config.ts';
import { insertApiKey } from '../gateway/store/api-keys.ts';
import { loadSeeds } from '../seeds/index.ts';
import { type ScratchStore, scratchStore } from './helpers/temp-store.ts';

let dir: string;
/** The gateway's store, on the run's dialect. */
let store: ScratchStore;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'curbside-devkey-'));
  store = await scratchStore(join(dir, 'data'));
});
afterAll(async () => {
  await store?.drop();
  rmSync(dir, { recursive: true, force: true });
});

const boot = () =>
  bootGateway({
    config: parseConfig({
      NODE_ENV: 'development',
      HTTP_PORT: '0',
      MQTT_PORT: '0',
      ...store.env,
      CERTS_DIR: join(dir, 'certs'),
      LOG_LEVEL: 'silent',
    }),
    catalog: loadSeeds().catalog,
    seededVins: [],
    logger: pino({ level: 'silent' }),
    print: () => {},
  });

it('creates an admin key once, keeps it, and replaces a key without scopes', async () => {
  const file = join(dir, 'certs', 'api-key');
  const first = await boot();
  const firstKey = first.apiKey;
  try {
    expect(first.apiKey).toMatch(/^ck_/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const caller = await findCallerByHash(first.gateway.store.db, hashApiKey(first.apiKey as string));
    expect(caller).toMatchObject({ scopes: ['admin'], ownerId: null, carrierId: null });
    // A key from before scopes existed, left in the file.
    await insertApiKey(first.gateway.store.db, {
      id: 'key_old',
      hash: hashApiKey('ck_oldoldoldoldoldoldold0'),
      label: 'old',
      createdAt: 1,
    });
  } finally {
    await first.stop();
  }
  const again = await boot();
  try {
    expect(again.apiKey).toBe(firstKey);
    expect(readFileSync(file, 'utf8').trim()).toBe(firstKey);
  } finally {
    await again.stop();
  }
  writeFileSync(file, 'ck_oldoldoldoldoldoldold0\n', { mode: 0o600 });
  const third = await boot();
  try {
    expect(third.apiKey).not.toBe('ck_oldoldoldoldoldoldold0');
    const caller = await findCallerByHash(third.gateway.store.db, hashApiKey(third.apiKey as string));
    expect(caller?.scopes).toEqual(['admin']);
  } finally {
    await third.stop();
  }
});
