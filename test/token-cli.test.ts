// The reviewer's command line (npm run token): inspect without trusting, verify step by step, exit codes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT_OK, EXIT_REFUSED, EXIT_USAGE, runTokenCli, type TokenCliIo } from '../protocols/cli/token.ts';
import { TOKEN_STEPS } from '../protocols/index.ts';
import type { Vectors } from '../protocols/test-vectors.ts';

const vectors = JSON.parse(
  readFileSync(join(import.meta.dirname, '..', 'protocols', 'vectors', 'tokens.json'), 'utf8'),
) as Vectors['tokens'];
const KEYS = '/vectors/trusted-keys.json';
const valid = vectors.cases[0]?.token as string;
const byName = (name: string): string => vectors.cases.find((c) => c.name === name)?.token as string;

async function run(argv: string[], stdin = ''): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: TokenCliIo = {
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      err += s;
    },
    readFile: (path) => {
      if (path === KEYS) return JSON.stringify(vectors.trustedKeys);
      throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    },
    readStdin: async () => stdin,
  };
  return { code: await runTokenCli(argv, io), out, err };
}

const verifyArgs = (token: string, ...more: string[]) => [
  'verify',
  token,
  '--vin',
  vectors.vin,
  '--at',
  vectors.nowIso,
  '--keys',
  KEYS,
  ...more,
];

describe('npm run token -- verify', () => {
  it('prints every step in order with pass, and exits 0 for a valid token', async () => {
    const r = await run(
      verifyArgs(valid, '--command-id', 'cmd_vec_1', '--delivery-id', 'dlv_vec_1', '--action', 'unlock'),
    );
    expect(r.code).toBe(EXIT_OK);
    const rows = r.out.split('\n').filter((l) => /^\s*\d+ {2}/.test(l));
    expect(rows.map((l) => l.trim().split(/\s+/)[1])).toEqual(TOKEN_STEPS.map((s) => s.step));
    expect(rows.every((l) => / pass$/.test(l))).toBe(true);
    expect(r.out).toMatch(/verdict: ACCEPTED/);
    expect(r.out).not.toMatch(/note:/);
  });

  it('stops at the failing step with its code, lists the rest as not run, and exits 1', async () => {
    const r = await run(verifyArgs(byName('signature malleated (S + L)')));
    expect(r.code).toBe(EXIT_REFUSED);
    expect(r.out).toMatch(/^ {2}8 {2}signature +FAIL {2}TOKEN_SIGNATURE_INVALID/m);
    expect(r.out).toMatch(/^ {2}9 {2}claims +- +not run$/m);
    expect(r.out).toMatch(/verdict: REFUSED TOKEN_SIGNATURE_INVALID/);
  });

  it('checks the envelope it is given, and says when it took the values from the token instead', async () => {
    const bound = await run(
      verifyArgs(valid, '--command-id', 'cmd_other', '--delivery-id', 'dlv_vec_1', '--action', 'unlock'),
    );
    expect(bound.out).toMatch(/verdict: REFUSED TOKEN_BINDING_MISMATCH/);
    const trivial = await run(verifyArgs(valid));
    expect(trivial.code).toBe(EXIT_OK);
    expect(trivial.out).toMatch(/note: --action, --command-id, --delivery-id not given/);
  });

  it('knows an unknown time, revoked deliveries and used jtis', async () => {
    expect((await run([...verifyArgs(valid).slice(0, 5), 'unknown', '--keys', KEYS])).out).toMatch(
      /REFUSED CLOCK_UNKNOWN/,
    );
    expect((await run(verifyArgs(valid, '--revoked', 'dlv_vec_1'))).out).toMatch(/REFUSED TOKEN_REVOKED/);
    expect((await run(verifyArgs(valid, '--seen', 'jti_vec_1'))).out).toMatch(/REFUSED TOKEN_REPLAYED/);
    expect((await run(verifyArgs(valid, '--at', String(vectors.now / 1000 + 120)))).out).toMatch(
      /REFUSED TOKEN_EXPIRED/,
    );
  });

  it('reads the token from stdin when given as -', async () => {
    expect((await run(verifyArgs('-'), `${valid}\n`)).code).toBe(EXIT_OK);
  });
});

describe('npm run token -- inspect', () => {
  it('decodes header and claims without verifying, and says so', async () => {
    const r = await run(['inspect', byName('signed by another key under a pinned kid')]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toMatch(/^NOT VERIFIED/);
    expect(r.out).toMatch(/kind {7}access token/);
    expect(r.out).toMatch(/"aud": "1G1ZE5ST5KF100231"/);
    expect(r.out).toMatch(/lifetime 60 s/);
  });

  it('exits 1 on something that is not a compact JWS', async () => {
    expect((await run(['inspect', 'not-a-token'])).code).toBe(EXIT_REFUSED);
  });
});

describe('bad arguments', () => {
  it.each([
    [[]],
    [['decode', valid]],
    [['verify', valid]],
    [['verify', valid, '--vin', 'NOTAVIN']],
    [['verify', valid, '--vin', vectors.vin]],
    [['verify', valid, '--vin', vectors.vin, '--at', '2026-01-01']],
    [['verify', valid, '--vin', vectors.vin, '--at', vectors.nowIso, '--keys', '/nowhere.json']],
    [['verify', valid, '--vin', vectors.vin, '--at', vectors.nowIso, '--keys', KEYS, '--action', 'open']],
    [['verify', valid, '--vin', vectors.vin, '--at', vectors.nowIso, '--bogus']],
    [['verify', valid, valid, '--vin', vectors.vin, '--at', vectors.nowIso]],
  ])('%j → exit 2 with one line on stderr', async (argv) => {
    const r = await run(argv);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.err).toMatch(/^token: .+ \(see --help\)\n$/);
    expect(r.out).toBe('');
  });

  it('--help prints the usage and exits 0', async () => {
    for (const argv of [['--help'], ['verify', '--help'], ['inspect', '-h']]) {
      const r = await run(argv);
      expect(r.code).toBe(EXIT_OK);
      expect(r.out).toMatch(/^Usage: npm run token/);
    }
  });
});
