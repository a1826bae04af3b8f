// The programs as an operator runs them: --help, one-line refusals with a non-zero exit, and signals.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { CONFIG_HELP, CONFIG_NAMES } from '../gateway/platform/config.ts';
import { DIALECTS, type ScratchStore, scratchStore } from './helpers/temp-store.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const children = new Set<ChildProcess>();
const dirs: string[] = [];
const stores: ScratchStore[] = [];

/** Ends the long-running children of the signal tests and removes their folders and stores. */
async function cleanUp(): Promise<void> {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
  for (const store of stores.splice(0)) await store.drop();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

interface Run {
  child: ChildProcess;
  out(): string;
  err(): string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs a program the way `npm run <name>` does (tsx), without npm in between, so signals reach it. */
function run(script: string, args: string[] = [], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'development', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A program that hangs is killed rather than left behind.
    timeout: 60_000,
    killSignal: 'SIGKILL',
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  return { child, out: () => out, err: () => err, exit };
}

async function finished(script: string, args: string[], env: Record<string, string> = {}) {
  const r = run(script, args, env);
  const { code } = await r.exit;
  return { code, out: r.out(), err: r.err() };
}

const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'curbside-cli-'));
  dirs.push(dir);
  return dir;
};

// Short-lived programs: run side by side.
describe.concurrent('--help', { timeout: 60_000 }, () => {
  it.each([
    ['npm start', 'demo/main.ts'],
    ['npm run gateway', 'gateway/main.ts'],
  ])('%s -- --help lists every variable with its default', async (_name, script) => {
    const r = await finished(script, ['--help']);
    expect(r.code).toBe(0);
    const lines = r.out.split('\n').map((l) => l.trim().replace(/^(\S+)\s+/, '$1 '));
    for (const name of CONFIG_NAMES) expect(lines).toContain(`${name} ${CONFIG_HELP[name]}`);
  });

  it.each([
    ['certs/main.ts', /^Usage: npm run certs --/],
    ['simulator/main.ts', /^Usage: npm run simulator --/],
    ['test/bench/statements.ts', /^Usage: npm run bench:sql --/],
    ['test/bench/broker.ts', /^Usage: npm run bench:broker -- \[--cars N\] \[--nodes 1,3\]/],
    ['test/bench/main.ts', /^Usage: npm run bench -- [\s\S]*--store LIST[\s\S]*--open-loop-cycles K/],
    ['demo/replay-main.ts', /^Usage: npm run demo /],
  ])('%s --help', async (script, usage) => {
    const r = await finished(script, ['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(usage);
  });
});

describe.concurrent('bad arguments: a non-zero exit and one line saying why', { timeout: 60_000 }, () => {
  it.each([
    ['demo/main.ts', ['--port', '80'], /^npm start: Unknown option '--port'/],
    ['demo/replay-main.ts', ['again'], /^npm run demo: Unexpected argument 'again'/],
    ['gateway/main.ts', ['serve'], /^gateway: Unexpected argument 'serve'/],
    ['certs/main.ts', ['bogus'], /^certs: unknown command bogus/],
    ['certs/main.ts', ['fleet', '--count', '0'], /^certs: --count must be an integer in 1\.\./],
    ['simulator/main.ts', [], /^simulator: --broker is required/],
    ['test/bench/statements.ts', ['--bogus'], /^bench:sql: Unknown option '--bogus'/],
    [
      'test/bench/statements.ts',
      ['--cycles', '0'],
      /^bench:sql: --cycles must be a whole number from 1 to 100/,
    ],
    [
      'test/bench/statements.ts',
      ['--dialect', 'mysql'],
      /^bench:sql: --dialect must be sqlite, postgres or both/,
    ],
    ['test/bench/broker.ts', ['--bogus'], /^bench:broker: Unknown option '--bogus'/],
    [
      'test/bench/broker.ts',
      ['--cars', '1'],
      /^bench:broker: --cars must be a whole number from 2 to 100000/,
    ],
    [
      'test/bench/broker.ts',
      ['--nodes', '1,10'],
      /^bench:broker: --nodes takes a comma-separated list of node counts from 1 to 9/,
    ],
    [
      'test/bench/broker.ts',
      ['--gateway', 'mysql'],
      /^bench:broker: --gateway takes a comma-separated list of sqlite, postgres/,
    ],
    ['test/bench/main.ts', ['--store', 'mysql'], /^bench: --store: mysql is not one of sqlite, postgres/],
    ['test/bench/main.ts', ['--arrivals', 'bursty'], /^bench: --arrivals must be one of poisson, uniform/],
    [
      'simulator/main.ts',
      ['--broker', 'mqtt://127.0.0.1:1883'],
      /^simulator: --broker must be an mqtts:\/\/ URL/,
    ],
  ])('%s %j', async (script, args, reason) => {
    const r = await finished(script, args);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(reason);
    expect(r.err.trimEnd().split('\n')).toHaveLength(1);
  });

  it('a bad setting stops the gateway naming each variable and what it allows', async () => {
    const r = await finished('gateway/main.ts', [], { HTTP_PORT: 'eighty', LOG_LEVEL: 'loud' });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^invalid configuration:\n/);
    expect(r.err).toContain(
      'HTTP_PORT="eighty" (from the environment): must be a whole number from 0 to 65535',
    );
    expect(r.err).toContain('LOG_LEVEL="loud" (from the environment): must be one of fatal | error');
    expect(r.out).toBe('');
  });
});

// Closing drains and closes the store, so the gateway is stopped on each dialect (the rest of this file opens none).
describe.each(DIALECTS)('signals, on %s', { timeout: 90_000 }, (dialect) => {
  afterEach(cleanUp);
  async function started(r: Run, pattern: RegExp): Promise<void> {
    await expect.poll(() => pattern.test(r.out()), { timeout: 60_000, interval: 100 }).toBe(true);
  }
  const env = async (dir: string) => {
    const store = await scratchStore(join(dir, 'data'), dialect);
    stores.push(store);
    return { HTTP_PORT: '0', MQTT_PORT: '0', ...store.env, CERTS_DIR: join(dir, 'pki') };
  };

  it('SIGTERM drains, closes and exits 0 with its last JSON log line written', async () => {
    const r = run('gateway/main.ts', [], await env(tempDir()));
    await started(r, /"event":"started"/);
    const line = r
      .out()
      .split('\n')
      .find((l) => l.includes('"event":"started"')) as string;
    const { http } = JSON.parse(line) as { http: string };
    expect((await fetch(`${http}/readyz`)).status).toBe(200);
    r.child.kill('SIGTERM');
    expect(await r.exit).toEqual({ code: 0, signal: null });
    const events = r
      .out()
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { event?: string }).event);
    // The last line is the end of the shutdown. On PostgreSQL a replica's job lease may be logged meanwhile
    // (cluster.job_taken), so the shutdown's own steps are checked in order among the rest.
    expect(events.at(-1)).toBe('shutdown.done');
    expect(events.filter((e) => e?.startsWith('shutdown')).slice(-3)).toEqual([
      'shutdown',
      'shutdown.drain',
      'shutdown.done',
    ]);
  });

  it('SIGINT does the same; LOG_PRETTY=on logs for humans', async () => {
    const r = run('gateway/main.ts', [], { ...(await env(tempDir())), LOG_PRETTY: 'on' });
    await started(r, /gateway started/);
    expect(r.out().trimStart().startsWith('{')).toBe(false);
    r.child.kill('SIGINT');
    expect(await r.exit).toEqual({ code: 0, signal: null });
    expect(r.out()).toMatch(/INFO.*stopped/);
  });
});
