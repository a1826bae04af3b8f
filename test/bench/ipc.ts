// Owns the bench's parent/child plumbing: forking a TypeScript child, request/response calls and events over IPC.
import { type ChildProcess, fork } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

type Message =
  | { kind: 'call'; id: number; method: string; params: unknown }
  | { kind: 'result'; id: number; ok: true; value: unknown }
  | { kind: 'result'; id: number; ok: false; error: string }
  | { kind: 'event'; name: string; data: unknown };

export interface Child {
  readonly pid: number;
  call<T>(method: string, params?: unknown): Promise<T>;
  onEvent(name: string, listener: (data: unknown) => void): void;
  /** Asks the child to exit, and kills it if it has not within timeoutMs. */
  close(timeoutMs?: number): Promise<void>;
}

export interface ForkOptions {
  /** The child's stdout and stderr (gateway logs, crashes) go here. */
  logFile: string;
  /** Node flags after the parent's own (which carry --import tsx and --expose-gc). */
  execArgv?: string[];
  args?: string[];
}

/** Forks a child module that calls serve(); resolves once it reports ready. */
export async function forkChild(modulePath: string, options: ForkOptions): Promise<Child> {
  const log = openSync(options.logFile, 'a');
  const child: ChildProcess = fork(modulePath, options.args ?? [], {
    execArgv: [...process.execArgv, ...(options.execArgv ?? [])],
    stdio: ['ignore', log, log, 'ipc'],
    serialization: 'advanced',
  });
  closeSync(log);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const listeners = new Map<string, Array<(data: unknown) => void>>();
  let nextId = 1;
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      for (const p of pending.values()) {
        p.reject(new Error(`child ${modulePath} exited (${signal ?? code}); see ${options.logFile}`));
      }
      pending.clear();
      resolve();
    });
  });
  child.on('message', (raw) => {
    const message = raw as Message;
    if (message.kind === 'result') {
      const p = pending.get(message.id);
      pending.delete(message.id);
      if (!p) return;
      if (message.ok) p.resolve(message.value);
      else p.reject(new Error(message.error));
    } else if (message.kind === 'event') {
      for (const listener of listeners.get(message.name) ?? []) listener(message.data);
    }
  });
  const handle: Child = {
    pid: child.pid as number,
    call<T>(method: string, params?: unknown): Promise<T> {
      if (exited) return Promise.reject(new Error(`child ${modulePath} has exited`));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.send({ kind: 'call', id, method, params } satisfies Message);
      });
    },
    onEvent(name, listener) {
      listeners.set(name, [...(listeners.get(name) ?? []), listener]);
    },
    async close(timeoutMs = 5_000) {
      if (exited) return;
      handle.call('exit').catch(() => undefined);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exitedPromise;
      clearTimeout(timer);
    },
  };
  await new Promise<void>((resolve, reject) => {
    handle.onEvent('ready', () => resolve());
    exitedPromise.then(() => reject(new Error(`child ${modulePath} died at start; see ${options.logFile}`)));
  });
  return handle;
}

export type Handlers = Record<string, (params: never) => unknown>;

/** The child side: answers calls with the handlers, and gives a way to send events. 'exit' is built in. */
export function serve(handlers: Handlers): { emit(name: string, data?: unknown): void } {
  const send = (message: Message): void => {
    process.send?.(message);
  };
  process.on('message', (raw) => {
    const message = raw as Message;
    if (message.kind !== 'call') return;
    if (message.method === 'exit') {
      process.exit(0);
    }
    const handler = handlers[message.method];
    if (!handler) {
      send({ kind: 'result', id: message.id, ok: false, error: `no method ${message.method}` });
      return;
    }
    Promise.resolve()
      .then(() => handler(message.params as never))
      .then(
        (value) => send({ kind: 'result', id: message.id, ok: true, value }),
        (err: unknown) =>
          send({
            kind: 'result',
            id: message.id,
            ok: false,
            error: err instanceof Error ? `${err.message}\n${err.stack ?? ''}` : String(err),
          }),
      );
  });
  // The parent going away must not leave a 10,000-connection child behind.
  process.on('disconnect', () => process.exit(0));
  const emit = (name: string, data?: unknown): void => send({ kind: 'event', name, data });
  emit('ready');
  return { emit };
}

/** Memory after two full collections and a pause, so the figure is what the process holds while idle. */
export async function idleMemory(): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run node with --expose-gc');
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return process.memoryUsage();
}
