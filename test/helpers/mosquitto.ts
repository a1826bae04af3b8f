// Test harness: a real Mosquitto on a free loopback port, configured by `certs mosquitto`, stopped by the test.
import { type ChildProcess, spawn } from 'node:child_process';
import { userInfo } from 'node:os';
import { type DevPkiPaths, writeMosquittoFiles } from '../../certs/index.ts';
import { mosquittoBinary as findMosquitto } from '../../cluster/mosquitto.ts';
import { freePort } from '../../cluster/ports.ts';

export interface Mosquitto {
  url: string;
  port: number;
  /** Everything Mosquitto logged so far. */
  log(): string;
  /** Resolves once a log line written after `since` characters matches. */
  waitForLog(pattern: RegExp, since?: number): Promise<void>;
  /** SIGHUP: Mosquitto re-reads its configuration, the CRL included; resolves once it has. */
  reload(): Promise<void>;
  close(): Promise<void>;
}

/** MOSQUITTO_BIN, else mosquitto on PATH, else Debian's /usr/sbin/mosquitto. .ci/run installs it. */
export const mosquittoBinary = (): string => findMosquitto(process.env);

const running = new Set<ChildProcess>();
// A worker that dies without its afterAll still takes its brokers with it.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

async function startOnce(pki: DevPkiPaths, dir: string): Promise<Mosquitto | 'PORT_TAKEN'> {
  const port = await freePort();
  const { conf } = await writeMosquittoFiles({
    pki,
    outDir: dir,
    host: '127.0.0.1',
    port,
    // Run as root, Mosquitto would switch to its own account and could not read the 0600 broker key.
    ...(userInfo().uid === 0 ? { user: userInfo().username } : {}),
  });
  const child = spawn(mosquittoBinary(), ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  let log = '';
  const waiters = new Set<() => void>();
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    log += chunk;
    for (const wake of waiters) wake();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  exited.then(() => {
    running.delete(child);
    for (const wake of waiters) wake();
  });

  const waitForLog = (pattern: RegExp, since = 0): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (pattern.test(log.slice(since))) {
          waiters.delete(check);
          resolve();
        } else if (child.exitCode !== null || child.signalCode !== null) {
          waiters.delete(check);
          reject(new Error(`mosquitto exited before logging ${pattern}:\n${log}`));
        }
      };
      waiters.add(check);
      check();
    });

  try {
    await waitForLog(/mosquitto version \S+ running/);
  } catch (err) {
    if (/Address already in use/.test(log)) return 'PORT_TAKEN';
    throw err;
  }
  return {
    url: `mqtts://127.0.0.1:${port}`,
    port,
    log: () => log,
    waitForLog,
    async reload() {
      const since = log.length;
      child.kill('SIGHUP');
      await waitForLog(/Reloading config/, since);
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Starts Mosquitto with the generated config in dir; retries when another process took the port first. */
export async function startMosquitto(pki: DevPkiPaths, dir: string): Promise<Mosquitto> {
  for (let i = 0; i < 3; i++) {
    const started = await startOnce(pki, dir);
    if (started !== 'PORT_TAKEN') return started;
  }
  throw new Error('mosquitto: no free port after 3 tries');
}
