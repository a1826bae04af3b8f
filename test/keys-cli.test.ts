// `npm run keys`: create, list and revoke against a real store; bad usage exits 2 with one line.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findCallerByHash, hashApiKey } from '../gateway/access/api-keys.ts';
import { runKeysCli } from '../gateway/access/keys-cli.ts';
import { type ScratchStore, scratchStore } from './helpers/temp-store.ts';

let dir: string;
/** The store the CLI works on (the run's dialect), and the one the program test gives the real program. */
let store: ScratchStore;
let programStore: ScratchStore;
let ids = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'curbside-keys-'));
  store = await scratchStore(join(dir, 'data'));
  programStore = await scratchStore(join(dir, 'program'));
});
afterAll(async () => {
  await store?.drop();
  await programStore?.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function keys(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runKeysCli({
    argv,
    openStore: () => store.open(),
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    now: () => Date.parse('2026-03-01T12:00:00Z'),
    newId: () => `t${++ids}`,
  });
  return { code, out, err };
}

describe('keys create, list, revoke', () => {
  it('creates a bound key, prints it once, and stores only its hash with the grant', async () => {
    const r = await keys(
      'create',
      '--scope',
      'carrier',
      '--carrier',
      'carrier-acme',
      '--label',
      'Acme backend',
    );
    expect(r.code).toBe(0);
    expect(r.out).toHaveLength(1);
    const key = r.out[0] as string;
    expect(key).toMatch(/^ck_[A-Za-z0-9_-]{32}$/);
    expect(r.err.join('\n')).toContain('deliveries, webhooks; carrier carrier-acme');
    const opened = await store.open();
    try {
      expect(await findCallerByHash(opened.db, hashApiKey(key))).toEqual({
        keyId: 'key_t1',
        scopes: ['deliveries', 'webhooks'],
        ownerId: null,
        carrierId: 'carrier-acme',
      });
      const rows = await opened.db.selectFrom('api_keys').selectAll().execute();
      expect(JSON.stringify(rows)).not.toContain(key);
    } finally {
      await opened.close();
    }
  });

  it('accepts scopes as a list or repeated', async () => {
    const r = await keys(
      'create',
      '--scope',
      'vehicles,locations',
      '--scope',
      'webhooks',
      '--owner',
      'owner-ada',
    );
    expect(r.code).toBe(0);
    const listed = await keys('list');
    expect(listed.out[0]?.split('\t')).toEqual(['id', 'scopes', 'binding', 'created', 'revoked', 'label']);
    const row = listed.out.find((l) => l.startsWith('key_t2'))?.split('\t');
    expect(row?.slice(0, 5)).toEqual([
      'key_t2',
      'vehicles,locations,webhooks',
      'owner:owner-ada',
      '2026-03-01T12:00:00.000Z',
      '-',
    ]);
    expect(listed.out.join('\n')).not.toMatch(/ck_/);
  });

  it('revokes a key once; the second time it is not found (exit 1)', async () => {
    expect(await keys('revoke', 'key_t2')).toMatchObject({ code: 0, out: ['revoked key_t2'] });
    const again = await keys('revoke', 'key_t2');
    expect(again.code).toBe(1);
    expect(again.err).toEqual(['keys: no active key key_t2']);
    const listed = await keys('list');
    expect(listed.out.find((l) => l.startsWith('key_t2'))?.split('\t')[4]).toBe('2026-03-01T12:00:00.000Z');
  });

  const bad: Array<[string, string[]]> = [
    ['no command', []],
    ['an unknown command', ['grant']],
    ['create without a scope', ['create', '--owner', 'o']],
    ['an unknown scope', ['create', '--scope', 'root']],
    ['a scope without its binding', ['create', '--scope', 'deliveries']],
    ['both bindings', ['create', '--scope', 'reviewer', '--owner', 'o', '--carrier', 'c']],
    ['an unknown option', ['create', '--scope', 'reviewer', '--admin']],
    ['an option without its value', ['create', '--scope']],
    ['a stray argument', ['create', 'x', '--scope', 'reviewer']],
    ['revoke without an id', ['revoke']],
    ['list with an argument', ['list', 'all']],
  ];
  for (const [name, argv] of bad) {
    it(`exits 2 with one line on ${name}`, async () => {
      const r = await keys(...argv);
      expect(r.code).toBe(2);
      expect(r.out).toEqual([]);
      expect(r.err).toHaveLength(1);
      expect(r.err[0]).toMatch(/^keys: .+ \(see --help\)$/);
    });
  }

  it('prints help with exit 0 and opens no store', async () => {
    const fresh = mkdtempSync(join(tmpdir(), 'curbside-keys-help-'));
    try {
      let opened = false;
      const out: string[] = [];
      const code = await runKeysCli({
        argv: ['--help'],
        openStore: async () => {
          opened = true;
          throw new Error('no');
        },
        out: (l) => out.push(l),
        err: () => {},
        now: Date.now,
        newId: () => 'x',
      });
      expect(code).toBe(0);
      expect(opened).toBe(false);
      expect(out.join('\n')).toMatch(/Usage: npm run keys/);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });
});

describe('the program', () => {
  it('runs under npm run keys on the store its settings name (DATA_DIR, or DATABASE_URL), with exit codes', async () => {
    const env = { ...process.env, ...programStore.env };
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'gateway/access/keys-main.ts', ...args], {
        env,
        encoding: 'utf8',
      });
    const bad = run('create', '--scope', 'deliveries');
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toEqual(['keys: scope deliveries needs --carrier (see --help)']);
    const made = run('create', '--scope', 'reviewer');
    expect(made.status).toBe(0);
    expect(made.stdout.trim()).toMatch(/^ck_[A-Za-z0-9_-]{32}$/);
  }, 20_000);
});
