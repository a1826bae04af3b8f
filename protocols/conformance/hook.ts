// Owns the state hook: how the kit asks for an endpoint state it cannot bring about over the protocol (doors
// closed, a reboot, a lost clock), with three ways to do it: the simulator's control API, a script, or a person.
import { execFile } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { ConformanceError } from './errors.ts';

/**
 * What the kit may ask for. `baseline`: parked with the ignition off, all four doors and the trunk closed (the
 * kit locks the car itself). `reboot`: a power cycle; the hook returns once the unit is powered again (the
 * kit then waits for it to answer). `clock`: the unit loses its time (known: false) or gets it back.
 */
export type HookRequest = { kind: 'baseline' } | { kind: 'reboot' } | { kind: 'clock'; known: boolean };

/** done: the state is there (the kit checks what it can). declined: the hook cannot; those cases are skipped. */
export type HookAnswer = { done: true } | { done: false; reason: string };

export interface StateHook {
  /** How the run's header names it. */
  readonly name: string;
  /** Throws CONFORMANCE_HOOK_FAILED when the hook broke (not when it declines). */
  request(request: HookRequest): Promise<HookAnswer>;
  /** Lets go of what it holds (standard input). */
  close?(): void;
}

/** The request's name as a script receives it: baseline, reboot, clock-unknown, clock-known. */
export const requestName = (r: HookRequest): string =>
  r.kind === 'clock' ? (r.known ? 'clock-known' : 'clock-unknown') : r.kind;

/** What a person at the bench is asked to do. */
export function instructions(r: HookRequest): string {
  switch (r.kind) {
    case 'baseline':
      return 'Park the unit with the ignition off, all four doors and the trunk closed (the kit locks it itself).';
    case 'reboot':
      return 'Power-cycle the unit: cut its power, restore it. The kit then waits for it to reconnect.';
    case 'clock':
      return r.known
        ? 'Give the unit its time back (GNSS or network time).'
        : 'Make the unit lose the time: take away its time sources (GNSS, network time) and its RTC.';
  }
}

const failed = (message: string, cause?: unknown): ConformanceError =>
  new ConformanceError('CONFORMANCE_HOOK_FAILED', message, cause === undefined ? undefined : { cause });

/** Declines everything: the kit then runs only what needs no help (and checks the baseline as it finds it). */
export const noHook: StateHook = {
  name: 'none',
  request: async (r) => ({ done: false, reason: `no state hook (--hook) to ask for ${requestName(r)}` }),
};

/** Operations of simulator/operations.ts, sent to the simulator's control API (loopback HTTP, JSON). */
export function simulatorHook(baseUrl: string, vin: string, rebootDownMs = 500): StateHook {
  const base = baseUrl.replace(/\/+$/, '');
  const op = async (body: Record<string, unknown>): Promise<void> => {
    let res: Response;
    try {
      res = await fetch(`${base}/cars/${vin}/ops`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    } catch (err) {
      throw failed(`simulator control API ${base}: ${(err as Error).message}`, err);
    }
    if (!res.ok) {
      throw failed(`simulator control API ${base}: ${res.status} ${(await res.text()).trim().slice(0, 200)}`);
    }
  };
  return {
    name: `simulator control API ${base}`,
    async request(r) {
      switch (r.kind) {
        case 'baseline':
          for (const door of ['driver', 'passenger', 'rearLeft', 'rearRight']) {
            await op({ op: 'door', door, to: 'closed' });
          }
          await op({ op: 'trunk', to: 'closed' });
          await op({ op: 'ignition', to: 'off' });
          break;
        case 'reboot':
          // Resolves once the simulated unit is back on the broker.
          await op({ op: 'reboot', downMs: rebootDownMs });
          break;
        case 'clock':
          await op({ op: 'clock', known: r.known });
          break;
      }
      return { done: true };
    },
  };
}

/** Exit status of a hook script that cannot do what was asked: the cases that need it are skipped. */
export const HOOK_DECLINED_EXIT = 3;

/**
 * Runs `<script> <request> <VIN>` (request: baseline, reboot, clock-unknown, clock-known) and waits for it.
 * Exit 0: done. Exit 3: declined. Anything else: the hook failed.
 */
export function commandHook(script: string, vin: string, timeoutMs = 600_000): StateHook {
  return {
    name: `script ${script}`,
    request(r) {
      return new Promise((resolve, reject) => {
        execFile(
          script,
          [requestName(r), vin],
          { timeout: timeoutMs, env: { ...process.env, CONFORMANCE_VIN: vin } },
          (err, _stdout, stderr) => {
            if (!err) return resolve({ done: true });
            // A script that ran and exited: code is its exit status (a number); otherwise why it did not run.
            const code: unknown = (err as { code?: unknown }).code;
            const why = stderr.trim().split('\n').at(-1) || err.message;
            if (code === HOOK_DECLINED_EXIT) return resolve({ done: false, reason: `${script}: ${why}` });
            reject(failed(`${script} ${requestName(r)}: ${why}`, err));
          },
        );
      });
    },
  };
}

/** Prints what to do and waits for Enter ("skip" declines). */
export function interactiveHook(input: Readable, output: Writable): StateHook {
  const lines = createInterface({ input, terminal: false });
  const pending: Array<(line: string | null) => void> = [];
  const buffered: string[] = [];
  let ended = false;
  lines.on('line', (line) => {
    const waiter = pending.shift();
    if (waiter) waiter(line);
    else buffered.push(line);
  });
  lines.on('close', () => {
    ended = true;
    for (const waiter of pending.splice(0)) waiter(null);
  });
  const nextLine = (): Promise<string | null> => {
    const line = buffered.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (ended) return Promise.resolve(null);
    return new Promise((resolve) => pending.push(resolve));
  };
  return {
    name: 'interactive (you, at the bench)',
    async request(r) {
      output.write(
        `\n>>> ${instructions(r)}\n>>> Press Enter when done, or type skip and Enter to skip what needs it: `,
      );
      const answer = await nextLine();
      output.write('\n');
      if (answer === null) return { done: false, reason: 'no answer (standard input closed)' };
      if (/^\s*s(kip)?\s*$/i.test(answer))
        return { done: false, reason: `${requestName(r)} skipped at the bench` };
      return { done: true };
    },
    close: () => lines.close(),
  };
}

export type HookSpec =
  | { kind: 'sim'; url: string }
  | { kind: 'command'; script: string }
  | { kind: 'interactive' }
  | { kind: 'none' };

/** `sim:<control API URL>`, `command:<script>`, `interactive` or `none`; null when it is none of them. */
export function parseHookSpec(spec: string): HookSpec | null {
  if (spec === 'interactive' || spec === 'none') return { kind: spec };
  if (spec.startsWith('sim:')) {
    const url = spec.slice('sim:'.length);
    try {
      const parsed = new URL(url);
      if (parsed.protocol !== 'http:') return null;
    } catch {
      return null;
    }
    return { kind: 'sim', url };
  }
  if (spec.startsWith('command:') && spec.length > 'command:'.length) {
    return { kind: 'command', script: spec.slice('command:'.length) };
  }
  return null;
}
