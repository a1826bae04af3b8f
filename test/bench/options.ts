// Owns the bench's command line: the flags that size every phase, the --quick preset, and the usage text.
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { DEFAULT_PG_POOL_SIZE } from '../../gateway/store/store.ts';
import { MAX_WORKERS } from '../../simulator/fleet-workers.ts';

export const USAGE = `Usage: npm run bench -- [options]

Phases: 1 identity provisioning, 2 connect storm (embedded broker), 3 unlock round trip (closed loop at
saturation, then an open loop at half that rate), on each store of --store, 4 phase 3 through Mosquitto,
5 the floor (MQTT over TLS + Ed25519 only), 6 token mint/verify vs jose.

Phase 3's open loop issues cycles at half the closed-loop cycles/s of the same store whatever the completions,
at most C outstanding (the rest are dropped and counted). PostgreSQL: a fresh schema of TEST_DATABASE_URL
(default postgres://postgres@127.0.0.1:5432/test), dropped afterwards; skipped with a note when unreachable.

Options (defaults: the full run; --quick: small sizes, under two minutes):
  --quick                     small sizes for every phase
  --cars N                    simulated cars connected for phases 2-4          10000  (quick 300)
  --couriers C                concurrent couriers in phases 3-5                64     (quick 16)
  --cycles K                  unlock+lock cycles per repeat                    10000  (quick 800)
  --warmup W                  cycles run before measuring, per broker          10×C
  --latency-cycles L          cycles of one lone courier, after the loaded runs 200    (quick 50)
  --repeat R                  repeats of phases 3-6 (medians are reported)     3      (quick 1)
  --identities M              identities issued in phase 1 (memory and disk)   10000  (quick 300)
  --floor-cars F              cars connected in phase 5                        = --cars
  --token-ops T               mints and verifies per repeat in phase 6         20000  (quick 3000)
  --connect-concurrency K     cars connecting at once                          64
  --sim-workers N             worker threads of the simulated fleet (1-256)    the core count
  --sim-state memory|files    where the cars keep replay guard, state, outcomes memory
  --tick-ms MS                each car's fail-safe tick                        250    (simulator default)
  --report-interval-ms MS     each car's periodic state report                 30000  (simulator default)
  --log-level LEVEL           gateway log level (logs go to the run folder)    warn
  --mosquitto PATH|off        Mosquitto binary for phase 4                     /usr/sbin/mosquitto
  --store LIST                stores phase 3 runs on, one after the other      sqlite,postgres
  --pg-pool N                 the PostgreSQL gateway's connections (1-100)     8      (DATABASE_POOL_SIZE)
  --open-loop-cycles K        arrivals of phase 3's open loop (0: none)        4000   (quick 400)
  --open-loop-seconds S       no open-loop arrival after S seconds             60     (quick 20)
  --arrivals poisson|uniform  how open-loop arrivals are spaced                poisson
  --profile on|off            one extra, unmeasured phase 3 pass under the CPU profiler   on
  --phases LIST               which phases to run, e.g. 1,2,3                  1,2,3,4,5,6
  --out DIR                   where results (JSON, profiles, logs) go          bench-results
  -h, --help                  this text`;

export interface BenchOptions {
  quick: boolean;
  cars: number;
  couriers: number;
  cycles: number;
  warmup: number;
  /** Cycles one courier runs alone: the round trip without queueing. */
  latencyCycles: number;
  repeat: number;
  identities: number;
  floorCars: number;
  tokenOps: number;
  connectConcurrency: number;
  /** Worker threads the simulated cars are spread over (simulator --workers). */
  simWorkers: number;
  /** Where the simulated cars keep their replay guard, state and command outcomes (StartFleetDeps.persistence). */
  simState: 'memory' | 'files';
  tickMs: number;
  reportIntervalMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  mosquitto: string | null;
  profile: boolean;
  /** The stores phase 3 runs on, SQLite first. */
  stores: readonly Store[];
  /** The PostgreSQL gateway's connections (DATABASE_POOL_SIZE). */
  pgPool: number;
  /** Arrivals of phase 3's open loop (0: none), and the time after which no more are issued. */
  openLoopCycles: number;
  openLoopSeconds: number;
  arrivals: Arrivals;
  phases: ReadonlySet<number>;
  out: string;
}

export const STORES = ['sqlite', 'postgres'] as const;
export type Store = (typeof STORES)[number];
export const ARRIVALS = ['poisson', 'uniform'] as const;
export type Arrivals = (typeof ARRIVALS)[number];

export type BenchCommand = { kind: 'help' } | { kind: 'run'; options: BenchOptions };

export class BenchArgsError extends Error {
  readonly code = 'BENCH_ARGS_INVALID';
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function count(
  name: string,
  value: string | undefined,
  fallback: number,
  min = 1,
  max = Number.POSITIVE_INFINITY,
): number {
  if (value === undefined) return fallback;
  if (!/^[0-9]{1,9}$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new BenchArgsError(
      max === Number.POSITIVE_INFINITY
        ? `--${name} must be a whole number of at least ${min}`
        : `--${name} must be a whole number from ${min} to ${max}`,
    );
  }
  return Number(value);
}

function onOff(name: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (value !== 'on' && value !== 'off') throw new BenchArgsError(`--${name} must be on or off`);
  return value === 'on';
}

/** Parses argv (without node and script); throws BENCH_ARGS_INVALID with a one-line reason. */
export function parseBenchArgs(argv: readonly string[]): BenchCommand {
  let values: ReturnType<typeof parseSpec>['values'];
  try {
    ({ values } = parseSpec(argv));
  } catch (err) {
    throw new BenchArgsError((err as Error).message.split('\n')[0] ?? 'invalid arguments');
  }
  if (values.help) return { kind: 'help' };
  const quick = values.quick;
  const cars = count('cars', values.cars, quick ? 300 : 10_000);
  const couriers = count('couriers', values.couriers, quick ? 16 : 64);
  if (couriers > cars)
    throw new BenchArgsError('--couriers must not exceed --cars (one car per courier at a time)');
  const phases = new Set(
    (values.phases ?? '1,2,3,4,5,6').split(',').map((p) => {
      if (!/^[1-6]$/.test(p.trim())) throw new BenchArgsError(`--phases: ${p} is not a phase 1-6`);
      return Number(p);
    }),
  );
  const logLevel = values['log-level'] ?? 'warn';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new BenchArgsError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const mosquitto = values.mosquitto ?? '/usr/sbin/mosquitto';
  const stores = (values.store ?? STORES.join(',')).split(',').map((name) => {
    if (!(STORES as readonly string[]).includes(name.trim())) {
      throw new BenchArgsError(`--store: ${name} is not one of ${STORES.join(', ')}`);
    }
    return name.trim() as Store;
  });
  const arrivals = values.arrivals ?? 'poisson';
  if (!(ARRIVALS as readonly string[]).includes(arrivals)) {
    throw new BenchArgsError(`--arrivals must be one of ${ARRIVALS.join(', ')}`);
  }
  const simState = values['sim-state'] ?? 'memory';
  if (simState !== 'memory' && simState !== 'files') {
    throw new BenchArgsError('--sim-state must be memory or files');
  }
  const floorCars = count('floor-cars', values['floor-cars'], cars);
  if (couriers > floorCars) throw new BenchArgsError('--couriers must not exceed --floor-cars');
  return {
    kind: 'run',
    options: {
      quick,
      cars,
      couriers,
      cycles: count('cycles', values.cycles, quick ? 800 : 10_000),
      warmup: count('warmup', values.warmup, couriers * 10, 0),
      latencyCycles: count('latency-cycles', values['latency-cycles'], quick ? 50 : 200, 0),
      repeat: count('repeat', values.repeat, quick ? 1 : 3),
      identities: count('identities', values.identities, quick ? 300 : 10_000),
      floorCars,
      tokenOps: count('token-ops', values['token-ops'], quick ? 3_000 : 20_000),
      connectConcurrency: count('connect-concurrency', values['connect-concurrency'], 64),
      simWorkers: count('sim-workers', values['sim-workers'], availableParallelism(), 1, MAX_WORKERS),
      simState: simState as BenchOptions['simState'],
      tickMs: count('tick-ms', values['tick-ms'], 250),
      reportIntervalMs: count('report-interval-ms', values['report-interval-ms'], 30_000),
      logLevel: logLevel as BenchOptions['logLevel'],
      mosquitto: mosquitto === 'off' ? null : mosquitto,
      profile: onOff('profile', values.profile, true),
      stores: STORES.filter((s) => stores.includes(s)),
      pgPool: count('pg-pool', values['pg-pool'], DEFAULT_PG_POOL_SIZE, 1, 100),
      openLoopCycles: count('open-loop-cycles', values['open-loop-cycles'], quick ? 400 : 4_000, 0),
      openLoopSeconds: count('open-loop-seconds', values['open-loop-seconds'], quick ? 20 : 60),
      arrivals: arrivals as Arrivals,
      phases,
      out: values.out ?? 'bench-results',
    },
  };
}

function parseSpec(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      quick: { type: 'boolean', default: false },
      cars: { type: 'string' },
      'pg-pool': { type: 'string' },
      couriers: { type: 'string' },
      cycles: { type: 'string' },
      warmup: { type: 'string' },
      'latency-cycles': { type: 'string' },
      repeat: { type: 'string' },
      identities: { type: 'string' },
      'floor-cars': { type: 'string' },
      'token-ops': { type: 'string' },
      'connect-concurrency': { type: 'string' },
      'sim-workers': { type: 'string' },
      'sim-state': { type: 'string' },
      'tick-ms': { type: 'string' },
      'report-interval-ms': { type: 'string' },
      'log-level': { type: 'string' },
      mosquitto: { type: 'string' },
      profile: { type: 'string' },
      store: { type: 'string' },
      'open-loop-cycles': { type: 'string' },
      'open-loop-seconds': { type: 'string' },
      arrivals: { type: 'string' },
      phases: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
}
