// Owns one gateway replica as a process of its own (npm run gateway's program), so that it can be killed -9: its
// start, where it listens (from its "started" log line), and its end.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

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
  const proc: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'gateway', 'main.ts')], {
    cwd: ROOT,
    env: { ...process.env, ...options.env, GATEWAY_REPLICA: options.name },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const problems: string[] = [];
  proc.stderr?.on('data', (chunk: Buffer) => problems.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
    const timer = setTimeout(() => {
      // Not left running behind a start that failed.
      proc.kill('SIGKILL');
      reject(new Error(`replica ${options.name} not started in time: ${problems.join('')}`));
    }, options.startTimeoutMs ?? 60_000);
    lines.on('line', (line) => {
      let entry: { event?: string; http?: string; level?: number };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if ((entry.level ?? 0) >= 40) problems.push(line);
      if (entry.event === 'started' && entry.http) {
        clearTimeout(timer);
        resolve(entry.http);
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(
          `replica ${options.name} exited (${code ?? signal}) before it started: ${problems.join('')}`,
        ),
      );
    });
  });
  const alive = () => proc.exitCode === null && proc.signalCode === null;
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
