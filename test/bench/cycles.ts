// Owns running unlock+lock cycles and measuring them: closed loop (C couriers, each starting its next cycle when
// the last one ends) and open loop (cycles arriving at a set rate whatever the completions); the transport is a
// driver, and the open loop's time is an injected clock.
import { Agent, request } from 'node:http';
import { type LatencySummary, summarize } from './stats.ts';

/** Does one action for courier i's j-th cycle and resolves when it succeeded; rejects with why it did not. */
export interface CycleDriver {
  unlock(courier: number, cycle: number): Promise<void>;
  lock(courier: number, cycle: number): Promise<void>;
}

export interface CycleRun {
  couriers: number;
  cycles: number;
  completed: number;
  errors: number;
  /** The first few error messages, for the report. */
  errorSamples: string[];
  elapsedMs: number;
  cyclesPerSecond: number;
  unlock: LatencySummary;
  lock: LatencySummary;
  cycle: LatencySummary;
}

/** How many cycles courier i runs when `cycles` are spread over `couriers` as evenly as possible. */
export const cyclesOf = (courier: number, couriers: number, cycles: number): number =>
  Math.floor(cycles / couriers) + (courier < cycles % couriers ? 1 : 0);

export async function runCycles(input: {
  couriers: number;
  cycles: number;
  driver: CycleDriver;
  onProgress?: (done: number) => void;
}): Promise<CycleRun> {
  const { couriers, cycles, driver } = input;
  const unlockMs: number[] = [];
  const lockMs: number[] = [];
  const cycleMs: number[] = [];
  const errorSamples: string[] = [];
  let errors = 0;
  let done = 0;
  const fail = (err: unknown): void => {
    errors++;
    if (errorSamples.length < 5) errorSamples.push(err instanceof Error ? err.message : String(err));
  };
  const courier = async (i: number): Promise<void> => {
    const mine = cyclesOf(i, couriers, cycles);
    for (let j = 0; j < mine; j++) {
      const t0 = performance.now();
      try {
        await driver.unlock(i, j);
        const t1 = performance.now();
        await driver.lock(i, j);
        const t2 = performance.now();
        unlockMs.push(t1 - t0);
        lockMs.push(t2 - t1);
        cycleMs.push(t2 - t0);
      } catch (err) {
        fail(err);
      }
      input.onProgress?.(++done);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: couriers }, (_, i) => courier(i)));
  const elapsedMs = performance.now() - started;
  return {
    couriers,
    cycles,
    completed: cycleMs.length,
    errors,
    errorSamples,
    elapsedMs,
    cyclesPerSecond: (cycleMs.length * 1000) / elapsedMs,
    unlock: summarize(unlockMs),
    lock: summarize(lockMs),
    cycle: summarize(cycleMs),
  };
}

/** The open loop's time, in ms on a monotonic clock: real in the bench, simulated in its tests. */
export interface OpenLoopClock {
  now(): number;
  /** Resolves once now() has reached t; at once when it already has. */
  until(t: number): Promise<void>;
}

export const realClock: OpenLoopClock = {
  now: () => performance.now(),
  async until(t) {
    // Timers are whole milliseconds and may fire a fraction early: wait again until the time has come.
    for (let wait = t - performance.now(); wait > 0; wait = t - performance.now()) {
      await new Promise((resolve) => setTimeout(resolve, Math.ceil(wait)));
    }
  },
};

/** Gaps between arrivals of a Poisson process (exponential, mean 1000/rate ms); random() in [0, 1). */
export const poissonGaps =
  (ratePerSecond: number, random: () => number): (() => number) =>
  () =>
    (Math.log(1 / (1 - random())) * 1000) / ratePerSecond;

/** Evenly spaced arrivals. */
export const uniformGaps =
  (ratePerSecond: number): (() => number) =>
  () =>
    1000 / ratePerSecond;

export interface OpenLoopRun {
  ratePerSecond: number;
  /** Arrivals issued: at most the count asked, fewer when the time bound came first. */
  offered: number;
  stoppedByTime: boolean;
  /** Arrivals that found `cap` cycles outstanding, and were not issued. */
  dropped: number;
  /** Arrivals that found a free slot missing only because every idle slot had used up its cycles. */
  exhausted: number;
  cap: number;
  maxOutstanding: number;
  completed: number;
  errors: number;
  errorSamples: string[];
  /** From the first arrival to the last completion. */
  elapsedMs: number;
  completedPerSecond: number;
  /** How long after its scheduled time each arrival was issued (the generator's own delay). */
  lateness: LatencySummary;
  /** From the scheduled arrival, not from when it was issued: a late generator counts against the system. */
  unlock: LatencySummary;
  lock: LatencySummary;
  cycle: LatencySummary;
}

/**
 * Issues unlock+lock cycles at scheduled arrival times (gapMs() apart) whether or not earlier ones completed,
 * until `count` arrivals or `maxMs` have passed, then waits for the outstanding ones. Each cycle runs on a slot
 * (a courier with its own cars): an arrival takes the slot idle longest; with `cap` cycles outstanding it is
 * dropped and counted. Slot s's k-th cycle is driver.unlock(s, k) then driver.lock(s, k); a slot retires after
 * `perSlot` cycles (the deliveries prepared for it).
 */
export async function runOpenLoop(input: {
  ratePerSecond: number;
  count: number;
  maxMs: number;
  cap: number;
  perSlot: number;
  gapMs: () => number;
  clock: OpenLoopClock;
  driver: CycleDriver;
  /** Arrivals dealt with so far: completed, failed, dropped or exhausted. */
  onProgress?: (done: number) => void;
}): Promise<OpenLoopRun> {
  const { clock, driver, cap, perSlot } = input;
  const idle = Array.from({ length: cap }, (_, i) => i);
  const used = new Array<number>(cap).fill(0);
  const unlockMs: number[] = [];
  const lockMs: number[] = [];
  const cycleMs: number[] = [];
  const lateMs: number[] = [];
  const errorSamples: string[] = [];
  const inFlight = new Set<Promise<void>>();
  let offered = 0;
  let dropped = 0;
  let exhausted = 0;
  let errors = 0;
  let outstanding = 0;
  let maxOutstanding = 0;
  let done = 0;
  const cycle = async (slot: number, k: number, due: number): Promise<void> => {
    try {
      await driver.unlock(slot, k);
      const t1 = clock.now();
      await driver.lock(slot, k);
      const t2 = clock.now();
      unlockMs.push(t1 - due);
      lockMs.push(t2 - t1);
      cycleMs.push(t2 - due);
    } catch (err) {
      errors++;
      if (errorSamples.length < 5) errorSamples.push(err instanceof Error ? err.message : String(err));
    } finally {
      outstanding--;
      if ((used[slot] as number) < perSlot) idle.push(slot);
      input.onProgress?.(++done);
    }
  };
  const started = clock.now();
  let due = started;
  let stoppedByTime = false;
  for (let n = 0; n < input.count; n++) {
    if (n > 0) due += input.gapMs();
    if (due - started >= input.maxMs) {
      stoppedByTime = true;
      break;
    }
    await clock.until(due);
    offered++;
    lateMs.push(clock.now() - due);
    if (outstanding >= cap) {
      dropped++;
      input.onProgress?.(++done);
      continue;
    }
    const slot = idle.shift();
    if (slot === undefined) {
      exhausted++;
      input.onProgress?.(++done);
      continue;
    }
    const k = used[slot] as number;
    used[slot] = k + 1;
    outstanding++;
    maxOutstanding = Math.max(maxOutstanding, outstanding);
    const running = cycle(slot, k, due);
    inFlight.add(running);
    void running.then(() => inFlight.delete(running));
  }
  await Promise.all(inFlight);
  const elapsedMs = clock.now() - started;
  return {
    ratePerSecond: input.ratePerSecond,
    offered,
    stoppedByTime,
    dropped,
    exhausted,
    cap,
    maxOutstanding,
    completed: cycleMs.length,
    errors,
    errorSamples,
    elapsedMs,
    completedPerSecond: elapsedMs > 0 ? (cycleMs.length * 1000) / elapsedMs : Number.NaN,
    lateness: summarize(lateMs),
    unlock: summarize(unlockMs),
    lock: summarize(lockMs),
    cycle: summarize(cycleMs),
  };
}

export class HttpStatusError extends Error {}

/** Couriers calling the gateway's HTTP API, each over its own keep-alive connection. */
export function httpDriver(input: {
  baseUrl: string;
  apiKey: string;
  couriers: number;
  /** deliveries[i][j]: the delivery courier i works on in its j-th cycle. */
  deliveries: string[][];
  driverId: (courier: number) => string;
  position: { lat: number; lon: number };
  packageId: (courier: number, cycle: number) => string;
}): CycleDriver & { close(): void } {
  const url = new URL(input.baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: input.couriers });
  const auth = `Bearer ${input.apiKey}`;
  const post = (path: string, body: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          method: 'POST',
          path,
          headers: {
            authorization: auth,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            if (res.statusCode === 200) resolve();
            else {
              const text = Buffer.concat(chunks).toString('utf8').slice(0, 300);
              reject(new HttpStatusError(`${path.split('/').at(-1)} → ${res.statusCode} ${text}`));
            }
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const delivery = (i: number, j: number): string => {
    const id = input.deliveries[i]?.[j];
    if (id === undefined) throw new Error(`no delivery prepared for courier ${i}, cycle ${j}`);
    return id;
  };
  return {
    unlock: (i, j) =>
      post(
        `/v1/deliveries/${delivery(i, j)}/unlock`,
        JSON.stringify({
          driverId: input.driverId(i),
          position: input.position,
          packageId: input.packageId(i, j),
        }),
      ),
    lock: (i, j) =>
      post(`/v1/deliveries/${delivery(i, j)}/lock`, JSON.stringify({ driverId: input.driverId(i) })),
    close: () => agent.destroy(),
  };
}
