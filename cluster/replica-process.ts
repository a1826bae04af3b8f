// Owns one gateway replica as a process of its own (npm run gateway's program), so that it can be killed -9: its
// start on a port chosen beforehand, waiting until it answers /readyz, and its end.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from './ports.ts';

export interface ReplicaProcess {
  name: string;
  pid: number;
  url: string;
  /** Whether the process is still running. */
  alive(): boolean;
  /** kill -9: no shutdown code runs. Resolves when the process is gone. */
  kill9(): Promise<void>;
  /** SIGTERM (drain, then stop) and wait for it to exit. */
  stop(): Promise<void>;
  /** What the process wrote to stderr, and its log lines at warn and above. */
  problems(): string[];
}

const ROOT = join(import.meta.dirname, '..');

export async function startReplicaProcess(options: {
  name: string;
  env: Record<string, string>;
  startTimeoutMs?: number;
}): Promise<ReplicaProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'gateway', 'main.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...options.env,
      HOST: '127.0.0.1',
      HTTP_PORT: String(port),
      GATEWAY_REPLICA: options.name,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const problems: string[] = [];
  proc.stderr?.on('data', (chunk: Buffer) => problems.push(chunk.toString()));
  // Its log lines (JSON on stdout): warn and above are kept for whoever asks.
  let partial = '';
  proc.stdout?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (/"level":(40|50|60)/.test(line)) problems.push(line);
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  for (;;) {
    if (!alive()) throw new Error(`replica ${options.name} exited before it was ready: ${problems.join('')}`);
    const ready = await fetch(`${url}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      // Not left running behind a start that failed.
      proc.kill('SIGKILL');
      await exited;
      throw new Error(`replica ${options.name} not ready in time: ${problems.join('')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    name: options.name,
    pid: proc.pid ?? -1,
    url,
    alive,
    async kill9() {
      if (alive()) proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (alive()) proc.kill('SIGTERM');
      await exited;
    },
    problems: () => [...problems],
  };
}
