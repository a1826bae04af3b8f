// The audit command line with files in memory: verdicts, the per-delivery report, exit codes and one-line reasons.
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditCliIo, runAuditCli } from '../audit/cli.ts';
import { exportFromStore } from '../audit/export.ts';
import { ensureDevPki } from '../certs/index.ts';
import { type AuditBundle, formatVerifierKey } from '../protocols/audit/index.ts';
import { ORIGIN, openTestLog, play, type TestLog } from './helpers/audit-log.ts';

let log: TestLog;
let bundle: AuditBundle;

beforeAll(async () => {
  log = await openTestLog();
  await play(log);
  bundle = await log.audit.exportBundle();
});

afterAll(async () => {
  await log?.close();
});

function fakeIo(files: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const written: Record<string, string> = {};
  const io: AuditCliIo = {
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    readFile: (path) => {
      const text = files[path];
      if (text === undefined) throw new Error('ENOENT');
      return text;
    },
    writeFile: (path, text) => {
      written[path] = text;
    },
    exportBundle: async () => bundle,
    defaults: { dataDir: '/data', certsDir: '/certs' },
  };
  return { io, out: () => out.join(''), err: () => err.join(''), written };
}

const pem = () => createPublicKey(log.privateKey).export({ type: 'spki', format: 'pem' }) as string;

describe('npm run audit -- verify', () => {
  it('verifies with the PEM public key and prints who authorized what, and each relock', async () => {
    const { io, out, err } = fakeIo({ 'b.json': JSON.stringify(bundle), 'k.pub': pem() });
    expect(await runAuditCli(['verify', 'b.json', '--key', 'k.pub'], io)).toBe(0);
    expect(err()).toBe('');
    const text = out();
    expect(text).toContain(`Audit log ${ORIGIN}: VERIFIED`);
    expect(text).toContain('signed checkpoints: 3 (tree sizes 4, 12, 16)');
    expect(text).toContain('Delivery dlv_a');
    expect(text).toMatch(/#5 +unlock AUTHORIZED for driver driver-7/);
    expect(text).toMatch(/#4 +unlock by driver driver-9 REFUSED: DRIVER_NOT_ASSIGNED/);
    expect(text).toContain('relock: unlock #7 was followed by a car-confirmed lock, #10');
    expect(text).toContain('relock: unlock #15 was NOT followed by a car-confirmed lock in this log');
    expect(text).toContain('owner owner-ada linked 1G1ZE5ST5KF100231 and consented to unlock, lock');
    expect(text).toContain(
      'Summary: 2 deliveries; 2 unlocks confirmed by cars, 1 followed by a car-confirmed relock, 1 not.',
    );
  });

  it('takes a C2SP verifier key line too, and a checkpoint the reviewer holds', async () => {
    const { io, out } = fakeIo({
      'b.json': JSON.stringify(bundle),
      'k.vkey': `${formatVerifierKey(ORIGIN, log.privateKey)}\n`,
      'cp.txt': bundle.checkpoints[1] as string,
    });
    expect(
      await runAuditCli(['verify', 'b.json', '--key', 'k.vkey', '--checkpoint', 'cp.txt', '--quiet'], io),
    ).toBe(0);
    expect(out()).toContain('checkpoints you hold: 1, each a prefix of this log');
    expect(out()).not.toContain('Delivery dlv_a');
  });

  it('fails with exit 1 and one line naming the reason code', async () => {
    const tampered = structuredClone(bundle) as AuditBundle & {
      entries: Array<{ detail: Record<string, unknown> }>;
    };
    (tampered.entries[5] as { detail: Record<string, unknown> }).detail.driverId = 'driver-9';
    const cases: Array<[Record<string, string>, string[], RegExp]> = [
      [
        { 'b.json': JSON.stringify(tampered), k: pem() },
        ['verify', 'b.json', '--key', 'k'],
        /^audit: verify FAILED: ENTRY_ALTERED: /,
      ],
      [
        { 'b.json': '{"format": 1, "format": 2}', k: pem() },
        ['verify', 'b.json', '--key', 'k'],
        /BUNDLE_MALFORMED: JSON_DUPLICATE_KEY/,
      ],
      [
        { 'b.json': JSON.stringify(bundle), k: 'not a key' },
        ['verify', 'b.json', '--key', 'k'],
        /KEY_INVALID/,
      ],
      [{ k: pem() }, ['verify', 'b.json', '--key', 'k'], /FILE_UNREADABLE: cannot read bundle b\.json/],
      [
        { 'b.json': JSON.stringify(bundle), k: pem() },
        ['verify', 'b.json', '--key', 'k', '--require-relock'],
        /UNLOCK_NOT_RELOCKED: 1 unlocks without a car-confirmed lock after them: #15 \(dlv_b\)/,
      ],
    ];
    for (const [files, argv, reason] of cases) {
      const { io, err } = fakeIo(files);
      expect(await runAuditCli(argv, io), argv.join(' ')).toBe(1);
      expect(err()).toMatch(reason);
      expect(err().trimEnd().split('\n')).toHaveLength(1);
    }
  });

  for (const argv of [
    [],
    ['bogus'],
    ['verify'],
    ['verify', 'b.json'],
    ['verify', 'a.json', 'b.json', '--key', 'k'],
    ['verify', 'b.json', '--key'],
    ['verify', 'b.json', '--key', 'k', '--nope'],
    ['export'],
    ['export', 'a', 'b'],
  ]) {
    it(`exits 2 with one line for ${JSON.stringify(argv)}`, async () => {
      const { io, out, err } = fakeIo();
      expect(await runAuditCli(argv, io)).toBe(2);
      expect(out()).toBe('');
      expect(err()).toMatch(/^audit: /);
      expect(err().trimEnd().split('\n')).toHaveLength(1);
    });
  }

  for (const argv of [['--help'], ['verify', '--help'], ['export', '-h']]) {
    it(`prints help for ${JSON.stringify(argv)}`, async () => {
      const { io, out } = fakeIo();
      expect(await runAuditCli(argv, io)).toBe(0);
      expect(out()).toMatch(/^Usage: npm run audit -- /);
    });
  }
});

describe('npm run audit -- export', () => {
  it('writes the bundle where it is told', async () => {
    const { io, out, written } = fakeIo();
    expect(await runAuditCli(['export', '/tmp/out.json'], io)).toBe(0);
    expect(JSON.parse(written['/tmp/out.json'] as string)).toEqual(bundle);
    expect(out()).toContain('16 entries, 3 checkpoints');
  });

  it('refuses a data dir without a store rather than export an empty log', async () => {
    const { io, err } = fakeIo();
    io.exportBundle = ({ dataDir, certsDir }) =>
      exportFromStore({ dataDir, certsDir, origin: ORIGIN, now: Date.now });
    expect(await runAuditCli(['export', 'x.json', '--data-dir', `${log.dir}/nowhere`], io)).toBe(1);
    expect(err()).toMatch(/^audit: export failed: STORE_MISSING: no store at /);
  });
});

describe('the program', () => {
  /** Runs `npm run audit -- …` as npm does (tsx), with the store's settings and nothing inherited of them. */
  const audit = (env: Record<string, string>, ...args: string[]) => {
    const { DATA_DIR: _d, DATABASE_URL: _u, ...inherited } = process.env;
    return spawnSync(process.execPath, ['--import', 'tsx', 'audit/main.ts', ...args], {
      env: { ...inherited, ...env },
      encoding: 'utf8',
    });
  };

  it("exports the store the gateway's settings name (DATA_DIR, or DATABASE_URL), and the bundle verifies", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'curbside-audit-program-'));
    const pki = await ensureDevPki({ dir: join(dir, 'pki'), vins: [] });
    const own = await openTestLog(createPrivateKey(readFileSync(pki.auditCheckpointKey, 'utf8')));
    try {
      await play(own);
      await own.store.close();
      const env = { ...own.env, CERTS_DIR: pki.dir, AUDIT_ORIGIN: ORIGIN };
      const file = join(dir, 'bundle.json');
      const exported = audit(env, 'export', file);
      expect(exported.stderr).toBe('');
      expect(exported.status).toBe(0);
      expect(JSON.parse(readFileSync(file, 'utf8')).entries).toHaveLength(16);
      const verified = audit({}, 'verify', file, '--key', pki.auditCheckpointPub);
      expect(verified.status, verified.stderr).toBe(0);
      expect(verified.stdout).toContain(`Audit log ${ORIGIN}: VERIFIED`);
      expect(verified.stdout).toContain('Delivery dlv_a');
    } finally {
      await own.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('refuses in one line naming DATABASE_URL when it does not answer, and exports nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'curbside-audit-program-'));
    try {
      const pki = await ensureDevPki({ dir: join(dir, 'pki'), vins: [] });
      const file = join(dir, 'bundle.json');
      const r = audit(
        {
          DATA_DIR: join(dir, 'data'),
          CERTS_DIR: pki.dir,
          DATABASE_URL: 'postgres://u:secret@127.0.0.1:1/none',
        },
        'export',
        file,
      );
      expect(r.status).toBe(1);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(
        /^audit: DATABASE_URL \(postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/none\) is unreachable/,
      );
      expect(r.stderr).not.toContain('secret');
      expect(() => readFileSync(file)).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
