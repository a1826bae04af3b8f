// npm run cluster as a user runs it: on the 3-node nats-server cluster by default (one Mosquitto with --broker
// mosquitto), it prints where each part listens, every part answers, and Ctrl-C (SIGINT) stops every process it
// started, drops the schema it made and removes its folder.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { TEST_DATABASE_URL } from '../helpers/pg-schema.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let proc: ChildProcess | null = null;

afterAll(() => {
  if (proc && proc.exitCode === null) proc.kill('SIGKILL');
});

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Runs `npm run cluster -- …args` until it prints its summary; then the summary and how to stop it. */
async function startProgram(args: string[]): Promise<{ out: string; stop(): Promise<number | null> }> {
  const { DATABASE_URL: _unset, ...env } = process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', 'cluster/main.ts', ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc = child;
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  let err = '';
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  await expect.poll(() => out, { timeout: 90_000, interval: 200 }).toMatch(/Ctrl-C stops everything/);
  expect(err).toBe('');
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    out,
    stop: async () => {
      child.kill('SIGINT');
      return exited;
    },
  };
}

describe('npm run cluster', () => {
  it('prints where each part and each broker node listens, serves through its entry point, and Ctrl-C stops and removes everything', async () => {
    const program = await startProgram(['--replicas', '2']);
    const { out } = program;
    const replicas = [
      ...out.matchAll(
        /^replica (r\d)\s+(http:\/\/127\.0\.0\.1:\d+) \(pid (\d+), MQTT session gateway-r\d\)$/gm,
      ),
    ];
    expect(replicas.map((m) => m[1])).toEqual(['r1', 'r2']);
    const entry = /^entry point {2}(http:\/\/127\.0\.0\.1:\d+)/m.exec(out)?.[1];
    const keyFile = /^API key {6}in (\S+)$/m.exec(out)?.[1];
    const schema = /\(schema (cluster_[0-9a-f]+), dropped at the end\)/.exec(out)?.[1];
    // The default broker: three nats-server nodes, each with its MQTT URL, and the fleet given all of them.
    expect(out).toMatch(/^broker {7}nats, a cluster of 3 nodes/m);
    const nodes = [
      ...out.matchAll(
        /^broker (n\d) {4}(mqtts:\/\/127\.0\.0\.1:\d+) \(pid (\d+), routes on port \d+, NATS port \d+ refuses every client\)$/gm,
      ),
    ];
    expect(nodes.map((m) => m[1])).toEqual(['n1', 'n2', 'n3']);
    expect(out).toContain(`fleet        11 simulated cars on ${nodes.map((m) => m[2]).join(',')}`);
    // The API key itself is never printed, only where it is.
    expect(entry && keyFile && schema).toBeTruthy();
    const key = readFileSync(keyFile as string, 'utf8').trim();
    expect(out).not.toContain(key);
    const res = await fetch(`${entry}/v1/vehicles`, { headers: { authorization: `Bearer ${key}` } });
    expect(res.status).toBe(200);

    expect(await program.stop()).toBe(0);
    for (const m of [...replicas, ...nodes]) expect(alive(Number(m[3])), m[1]).toBe(false);
    expect(existsSync(keyFile as string)).toBe(false);
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    const { rows } = await client.query('select 1 from pg_namespace where nspname = $1', [schema]);
    await client.end();
    expect(rows).toEqual([]);
  });

  it('runs on one Mosquitto with --broker mosquitto', async () => {
    const program = await startProgram(['--replicas', '1', '--broker', 'mosquitto']);
    expect(program.out).toMatch(/^broker {7}mosquitto mqtts:\/\/127\.0\.0\.1:\d+$/m);
    expect(program.out).not.toMatch(/^broker n\d/m);
    const entry = /^entry point {2}(http:\/\/127\.0\.0\.1:\d+)/m.exec(program.out)?.[1];
    expect((await fetch(`${entry}/readyz`)).status).toBe(200);
    expect(await program.stop()).toBe(0);
  });

  it('refuses bad arguments with usage and exit 2', async () => {
    for (const args of [
      ['--replicas', '0'],
      ['--replicas', 'x'],
      ['--broker', 'rabbitmq'],
      ['--port', '70000'],
      ['--bogus'],
    ]) {
      const child = spawn(process.execPath, ['--import', 'tsx', 'cluster/main.ts', ...args], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr?.on('data', (c: Buffer) => {
        stderr += c.toString();
      });
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      expect(code, args.join(' ')).toBe(2);
      expect(stderr).toMatch(/^cluster: /);
    }
  });
});
