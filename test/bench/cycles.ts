// Owns running unlock+lock cycles with C concurrent couriers and measuring them; the transport is a driver.
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
