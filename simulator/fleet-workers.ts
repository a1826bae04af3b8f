// Owns a fleet spread over worker threads: how many workers, which worker holds which car, starting and stopping
// them, and routing each control request to the worker that holds the car.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Catalog } from '../protocols/catalog.ts';
import { loadSeeds, type SeedVehicle } from '../seeds/index.ts';
import { SimulatorError, type SimulatorErrorCode } from './errors.ts';
import { createFleetFaults, type FleetFaultPlan } from './faults.ts';
import type { Flaw } from './flaws.ts';
import { type Persistence, type SkippedVehicle, selectVehicles, startFleet } from './fleet.ts';
import {
  type CarView,
  type FaultReport,
  type FleetControl,
  localFleetControl,
  sumCounts,
} from './fleet-control.ts';
import { readFleetPki } from './fleet-pki.ts';
import type { Operation } from './operations.ts';
import { type Backoff, type Logger, silentLogger } from './transport.ts';

/** Above this many workers the simulator refuses: threads beyond the core count only add switching. */
export const MAX_WORKERS = 256;
/** How long a worker has to close its cars' sessions and end before it is terminated. */
const STOP_GRACE_MS = 10_000;

/**
 * Everything a worker needs to run its share of the fleet. It crosses a thread boundary, so it holds data
 * only: paths instead of loaded material, names instead of functions.
 */
export interface FleetWorkerSettings {
  brokerUrl: string;
  /** The dev-PKI folder (certs/dev-pki.ts layout): ca.crt, trusted-keys.json, vehicles/<VIN>.crt|.key. */
  certsDir: string;
  /** Each car's state files (simulator/fleet.ts), as with startFleet. */
  dataDir: string;
  /** Fault injection: every worker builds the same seeded plan, so a car's faults do not depend on its worker. */
  faults?: { seed: number; plan?: FleetFaultPlan | undefined } | null;
  flaws?: readonly Flaw[];
  /** Whether the workers send their cars' log lines to the main thread (only when it has a logger). */
  forwardLogs?: boolean;
  /** Where each car keeps its replay guard, state and command outcomes (StartFleetDeps.persistence). */
  persistence?: Persistence;
  replayCapacity?: number;
  reportIntervalMs?: number;
  failsafeRelockMs?: number;
  tickIntervalMs?: number;
  /** Cars connecting at once over the whole fleet; each worker gets its share. */
  connectConcurrency?: number;
  servername?: string;
  issuer?: string;
  backoff?: Backoff;
}

export interface StartFleetRunDeps extends FleetWorkerSettings {
  vehicles: readonly SeedVehicle[];
  /** Worker threads; 1 runs the cars in this thread as startFleet does. Default: the core count. */
  workers?: number;
  /** Defaults to the seed catalog. */
  catalog?: Catalog;
  includeIncompatible?: boolean;
  /** Every worker's log lines arrive here, in this thread. */
  logger?: Logger;
  onConnected?: (connected: number, total: number) => void;
}

/** A running fleet, in this thread or over worker threads; the control API and scenarios drive it. */
export interface FleetRun extends FleetControl {
  /** The threads the cars run on (1: this one). */
  readonly workers: number;
  readonly skipped: readonly SkippedVehicle[];
  /** The worker (0-based) that holds this car. */
  workerOf(vin: string): number;
  /** Cars whose MQTT session is up now. */
  connected(): Promise<number>;
  /** The worker threads, in worker order (none when the cars run in this thread); for diagnostics and tests. */
  threads(): readonly Worker[];
  /**
   * Settles with SIM_WORKER_CRASHED when a worker ends while the fleet runs (its cars are gone with it); stays
   * pending otherwise. The simulator then stops the other workers and exits 1: it does not restart a worker.
   */
  readonly crashed: Promise<SimulatorError>;
  /** Closes every car's session and ends every worker. */
  stop(): Promise<void>;
}

/**
 * The worker count for this many cars: the requested count (default: the core count), at most one worker per
 * car. Refuses a count that is not a whole number from 1 to MAX_WORKERS (SIM_ARGS_INVALID).
 */
export function workerCount(
  requested: number | undefined,
  cars: number,
  cores = availableParallelism(),
): number {
  const wanted = requested ?? cores;
  if (!Number.isInteger(wanted) || wanted < 1 || wanted > MAX_WORKERS) {
    throw new SimulatorError('SIM_ARGS_INVALID', `workers must be a whole number from 1 to ${MAX_WORKERS}`);
  }
  return Math.max(1, Math.min(wanted, cars));
}

/** Car i goes to worker i mod n: each worker gets an even share, whatever order the VINs come in. */
export function partition<T>(items: readonly T[], workers: number): T[][] {
  const shares: T[][] = Array.from({ length: workers }, () => []);
  items.forEach((item, i) => {
    (shares[i % workers] as T[]).push(item);
  });
  return shares;
}

/** Starts the fleet on `workers` threads (this one when 1); rejects, with every car closed, if any car fails. */
export async function startFleetRun(deps: StartFleetRunDeps): Promise<FleetRun> {
  const catalog = deps.catalog ?? loadSeeds().catalog;
  const { selected, skipped } = selectVehicles(deps.vehicles, catalog, deps.includeIncompatible ?? false);
  const workers = workerCount(deps.workers, selected.length);
  return workers === 1
    ? startInThisThread(deps, selected, skipped)
    : startWorkers(deps, selected, skipped, workers);
}

async function startInThisThread(
  deps: StartFleetRunDeps,
  selected: SeedVehicle[],
  skipped: SkippedVehicle[],
): Promise<FleetRun> {
  const faults = deps.faults ? createFleetFaults(deps.faults) : null;
  const fleet = await startFleet({
    ...fleetDeps(deps, deps.connectConcurrency),
    vehicles: selected,
    ...readFleetPki(deps.certsDir),
    includeIncompatible: true,
    logger: deps.logger ?? silentLogger,
    ...(faults ? { faults } : {}),
    ...(deps.onConnected ? { onConnected: deps.onConnected } : {}),
  });
  return {
    ...localFleetControl(fleet, faults),
    workers: 1,
    skipped,
    workerOf: (vin) => {
      fleet.car(vin);
      return 0;
    },
    connected: async () => [...fleet.cars.values()].filter((c) => c.connection.connected).length,
    threads: () => [],
    crashed: new Promise<never>(() => undefined),
    stop: () => fleet.stop(),
  };
}

/** The startFleet options a worker's settings stand for (PKI, faults and stores are made by the caller). */
export function fleetDeps(settings: FleetWorkerSettings, connectConcurrency: number | undefined) {
  return {
    brokerUrl: settings.brokerUrl,
    dataDir: settings.dataDir,
    flaws: settings.flaws ?? [],
    persistence: settings.persistence ?? 'files',
    ...(settings.replayCapacity !== undefined ? { replayCapacity: settings.replayCapacity } : {}),
    ...(settings.reportIntervalMs !== undefined ? { reportIntervalMs: settings.reportIntervalMs } : {}),
    ...(settings.failsafeRelockMs !== undefined ? { failsafeRelockMs: settings.failsafeRelockMs } : {}),
    ...(settings.tickIntervalMs !== undefined ? { tickIntervalMs: settings.tickIntervalMs } : {}),
    ...(connectConcurrency !== undefined ? { connectConcurrency } : {}),
    ...(settings.servername !== undefined ? { servername: settings.servername } : {}),
    ...(settings.issuer !== undefined ? { issuer: settings.issuer } : {}),
    ...(settings.backoff !== undefined ? { backoff: settings.backoff } : {}),
  };
}

// ---------------------------------------------------------------- the messages between the threads

/** What the main thread sends a worker once it has started. */
export interface WorkerStart {
  index: number;
  settings: FleetWorkerSettings;
  vehicles: SeedVehicle[];
  connectConcurrency?: number;
}

export type WorkerRequest =
  | { kind: 'view'; vin: string }
  | { kind: 'views' }
  | { kind: 'apply'; vin: string | undefined; op: Operation }
  | { kind: 'faults' }
  | { kind: 'connected' }
  | { kind: 'stop' };

export interface WorkerError {
  code: SimulatorErrorCode | null;
  message: string;
}

export type FromWorker =
  | { kind: 'started' }
  | { kind: 'start-failed'; error: WorkerError }
  | { kind: 'progress' }
  | { kind: 'log'; level: keyof Logger; fields: Record<string, unknown>; msg: string }
  | { kind: 'reply'; id: number; ok: true; value: unknown }
  | { kind: 'reply'; id: number; ok: false; error: WorkerError };

export type ToWorker = { kind: 'request'; id: number; request: WorkerRequest };

/** An error as it crosses back to the main thread: its code when it is ours, its message either way. */
export function toWorkerError(err: unknown): WorkerError {
  return {
    code: err instanceof SimulatorError ? err.code : null,
    message: err instanceof Error ? err.message : String(err),
  };
}

/** The main thread's error for a worker's; names the car when the message does not already. */
export function fromWorkerError(error: WorkerError, vin?: string): Error {
  const message =
    vin === undefined || error.message.includes(vin) ? error.message : `${vin}: ${error.message}`;
  return error.code ? new SimulatorError(error.code, message) : new Error(message);
}

const WORKER_URL = new URL('./fleet-worker.ts', import.meta.url);

interface WorkerHandle {
  index: number;
  vins: string[];
  worker: Worker;
  call(request: WorkerRequest, vin?: string): Promise<unknown>;
  ended: Promise<void>;
}

async function startWorkers(
  deps: StartFleetRunDeps,
  selected: SeedVehicle[],
  skipped: SkippedVehicle[],
  count: number,
): Promise<FleetRun> {
  const log = deps.logger ?? silentLogger;
  const shares = partition(selected, count);
  const owner = new Map<string, number>();
  shares.forEach((share, index) => {
    for (const v of share) owner.set(v.vin, index);
  });
  const settings: FleetWorkerSettings = {
    ...fleetDeps(deps, undefined),
    certsDir: deps.certsDir,
    faults: deps.faults ?? null,
    // A line posted across threads costs a structured clone; none is sent that would be dropped.
    forwardLogs: deps.logger !== undefined,
  };
  const perWorker =
    deps.connectConcurrency === undefined
      ? undefined
      : Math.max(1, Math.ceil(deps.connectConcurrency / count));

  let stopping = false;
  let reportCrash: (err: SimulatorError) => void = () => undefined;
  const crashed = new Promise<SimulatorError>((resolve) => {
    reportCrash = resolve;
  });
  let connected = 0;

  const spawn = (index: number): { handle: WorkerHandle; started: Promise<void> } => {
    const vins = (shares[index] as SeedVehicle[]).map((v) => v.vin);
    const start: WorkerStart = {
      index,
      settings,
      vehicles: shares[index] as SeedVehicle[],
      ...(perWorker !== undefined ? { connectConcurrency: perWorker } : {}),
    };
    const worker = new Worker(WORKER_URL, {
      workerData: start,
      // The OS thread name too: `ps -L`, /proc/PID/task/*/comm show fleet-worker-K.
      name: `fleet-worker-${index + 1}`,
      // Node's own type stripping, not the parent's tsx loader: a worker is up in about half the CPU time
      // (0.4 s against 0.7 s measured), which matters when a storm starts one per core.
      execArgv: [],
    });
    const pending = new Map<
      number,
      { resolve: (v: unknown) => void; reject: (e: Error) => void; vin?: string }
    >();
    let nextId = 1;
    let gone: Error | null = null;
    let settleStart: { resolve: () => void; reject: (e: Error) => void } | null = null;
    const started = new Promise<void>((resolve, reject) => {
      settleStart = { resolve, reject };
    });
    const label = `worker ${index + 1} of ${count} (${vins.length} cars, ${vins[0]}…${vins.at(-1)})`;
    worker.on('message', (message: FromWorker) => {
      switch (message.kind) {
        case 'started':
          settleStart?.resolve();
          return;
        case 'start-failed':
          settleStart?.reject(fromWorkerError(message.error));
          return;
        case 'progress':
          deps.onConnected?.(++connected, selected.length);
          return;
        case 'log':
          log[message.level]({ ...message.fields, worker: index + 1 }, message.msg);
          return;
        case 'reply': {
          const p = pending.get(message.id);
          pending.delete(message.id);
          if (!p) return;
          if (message.ok) p.resolve(message.value);
          else p.reject(fromWorkerError(message.error, p.vin));
        }
      }
    });
    let lastError: unknown = null;
    worker.on('error', (err) => {
      lastError = err;
    });
    const ended = new Promise<void>((resolve) => {
      worker.once('exit', (exitCode) => {
        const why = lastError ? String(lastError) : `exit code ${exitCode}`;
        gone = new SimulatorError('SIM_WORKER_CRASHED', `${label} ended: ${why}`);
        settleStart?.reject(gone);
        for (const p of pending.values()) p.reject(gone);
        pending.clear();
        if (!stopping) reportCrash(gone as SimulatorError);
        resolve();
      });
    });
    const call = (request: WorkerRequest, vin?: string): Promise<unknown> => {
      if (gone) return Promise.reject(gone);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject, ...(vin !== undefined ? { vin } : {}) });
        worker.postMessage({ kind: 'request', id, request } satisfies ToWorker);
      });
    };
    return { handle: { index, vins, worker, call, ended }, started };
  };

  const spawned = Array.from({ length: count }, (_, i) => spawn(i));
  const handles = spawned.map((s) => s.handle);

  const stopAll = async (): Promise<void> => {
    stopping = true;
    await Promise.all(
      handles.map(async (h) => {
        let timer: NodeJS.Timeout | undefined;
        const grace = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, STOP_GRACE_MS);
        });
        // A worker closes its cars' sessions, then ends on its own; one that does not is terminated.
        await Promise.race([h.call({ kind: 'stop' }).catch(() => undefined), grace]);
        await Promise.race([h.ended, grace]);
        clearTimeout(timer);
        await h.worker.terminate();
        await h.ended;
      }),
    );
  };

  const results = await Promise.allSettled(spawned.map((s) => s.started));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await stopAll();
    throw failure.reason;
  }

  const holder = (vin: string): WorkerHandle => {
    const index = owner.get(vin);
    if (index === undefined)
      throw new SimulatorError('SIM_UNKNOWN_VIN', `the fleet does not simulate ${vin}`);
    return handles[index] as WorkerHandle;
  };
  const allVins = selected.map((v) => v.vin);

  return {
    workers: count,
    skipped,
    vins: () => allVins,
    has: (vin) => owner.has(vin),
    workerOf: (vin) => holder(vin).index,
    async view(vin) {
      return (await holder(vin).call({ kind: 'view', vin }, vin)) as CarView;
    },
    async views() {
      const parts = (await Promise.all(handles.map((h) => h.call({ kind: 'views' })))) as CarView[][];
      const byVin = new Map(parts.flat().map((view) => [view.vin, view]));
      return allVins.flatMap((vin) => byVin.get(vin) ?? []);
    },
    async apply(vin, op) {
      if (vin !== undefined) return (await holder(vin).call({ kind: 'apply', vin, op }, vin)) as string[];
      const parts = (await Promise.all(
        handles.map((h) => h.call({ kind: 'apply', vin: undefined, op })),
      )) as string[][];
      return parts.flat();
    },
    async faultReport(): Promise<FaultReport> {
      const parts = (await Promise.all(handles.map((h) => h.call({ kind: 'faults' })))) as FaultReport[];
      return {
        seed: deps.faults?.seed ?? null,
        counts: sumCounts(parts.map((p) => p.counts)),
        cars: Object.assign({}, ...parts.map((p) => p.cars)),
      };
    },
    async connected() {
      const counts = (await Promise.all(handles.map((h) => h.call({ kind: 'connected' })))) as number[];
      return counts.reduce((a, b) => a + b, 0);
    },
    threads: () => handles.map((h) => h.worker),
    crashed,
    stop: stopAll,
  };
}
