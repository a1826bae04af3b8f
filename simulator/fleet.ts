// Owns a fleet of simulated cars: picks the compatible vehicles, gives each its state files and MQTT session.
import { createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import type { Catalog } from '../protocols/catalog.ts';
import { findCompatible } from '../protocols/catalog.ts';
import type { TrustedKeysFile } from '../protocols/keys.ts';
import { loadSeeds, type SeedVehicle } from '../seeds/index.ts';
import { createSimulatedCar, type ExecutedCommand, type SimulatedCar } from './car.ts';
import { type CarStore, createFileCarStore, createMemoryCarStore } from './car-store.ts';
import { SimulatorError } from './errors.ts';
import type { CarFaults, FleetFaults } from './faults.ts';
import { type Flaw, flawedOutcomeMemory } from './flaws.ts';
import { createFileKeyStore, type KeyStore } from './key-store.ts';
import { createOutcomeMemory } from './outcome-memory.ts';
import { createFileReplayStore, createMemoryReplayStore, type ReplayStore } from './replay-store.ts';
import { createFileRevocationStore, type RevocationStore } from './revocation-store.ts';
import {
  type Backoff,
  type CarConnection,
  type ClientFactory,
  connectCar,
  DEFAULT_BACKOFF,
  type Logger,
  reconnectDelay,
  silentLogger,
} from './transport.ts';

export const DEFAULT_REPORT_INTERVAL_MS = 30_000;
export type Persistence = 'files' | 'memory';
/** Tokens live at most 330 s with skew, so this allows a sustained 30 commands a second per car. */
export const DEFAULT_REPLAY_CAPACITY = 10_000;
/** Revocations live 360 s each; a car is not expected to see more than a few in that time. */
export const DEFAULT_REVOCATION_CAPACITY = 1_000;

export interface FleetPki {
  ca: string | Buffer;
  certFor(vin: string): { cert: string | Buffer; key: string | Buffer };
}

export interface StartFleetDeps {
  brokerUrl: string;
  vehicles: SeedVehicle[];
  pki: FleetPki;
  /** The gateway keys every car pins at enrollment (TrustedKeysFileSchema, already parsed). */
  trustedKeys: TrustedKeysFile;
  /**
   * Holds each car's state files: `<VIN>.replay.json`, `<VIN>.revoked.json`, `<VIN>.keys.json`,
   * `<VIN>.state.json` (lock, fail-safe deadline, position…) and `<VIN>.outcomes.json` (recent command outcomes).
   */
  dataDir: string;
  /** The cars' raw clock; defaults to Date.now. */
  now?: () => number | null;
  failsafeRelockMs?: number;
  reportIntervalMs?: number;
  /** How often each car checks its fail-safe relock; the transport's default (250 ms) when unset. */
  tickIntervalMs?: number;
  /** Cars connecting at once; unbounded by default. A large fleet keeps this near the broker's accept backlog. */
  connectConcurrency?: number;
  /** Told after each car has connected and subscribed. */
  onConnected?: (connected: number, total: number) => void;
  /** Builds each car's replay guard; by default a file `<VIN>.replay.json` in dataDir, fsynced per claim. */
  replayStoreFor?: (vin: string) => ReplayStore;
  /**
   * files (default): each car's replay guard, state and command outcomes are files in dataDir, each change
   * fsynced before the car goes on. memory: those three live in memory for the life of the process (a reboot
   * keeps them, an exit forgets them): the bench's choice, where an fsync per change would make the simulator,
   * not the gateway, the thing measured. Keys and revocations (rarely written) stay files either way.
   */
  persistence?: Persistence;
  /** Defaults to the seed catalog. */
  catalog?: Catalog;
  /** Simulate vehicles the catalog does not support too (to exercise the gateway's refusals). */
  includeIncompatible?: boolean;
  replayCapacity?: number;
  issuer?: string;
  servername?: string;
  logger?: Logger;
  random?: () => number;
  backoff?: Backoff;
  createClient?: ClientFactory;
  /** Fault injection; each car gets its own injector from it, and its clock through it. */
  faults?: FleetFaults;
  /**
   * Deliberate flaws every car of the fleet has (simulator/flaws.ts), for running the conformance kit against
   * a car it must fail. None unless named: `npm run simulator -- --flaw NAME` is the only other way in.
   */
  flaws?: readonly Flaw[];
}

/** One simulated car. After a reboot `car`, `connection` and its stores are new objects in the same record. */
export interface FleetCar {
  vehicle: SeedVehicle;
  car: SimulatedCar;
  connection: CarConnection;
  replay: ReplayStore;
  revocations: RevocationStore;
  keys: KeyStore;
  faults: CarFaults | null;
  /** Every command this car executed (across reboots), in order: the audit log tests check tokens against. */
  executed: ExecutedCommand[];
  /** The deliberate flaws it runs with; empty for a correct car. */
  flaws: readonly Flaw[];
}

export interface SkippedVehicle {
  vin: string;
  reason: 'INCOMPATIBLE';
}

export interface Fleet {
  cars: ReadonlyMap<string, FleetCar>;
  skipped: SkippedVehicle[];
  /** The car with this VIN; throws SIM_UNKNOWN_VIN when the fleet does not simulate it. */
  car(vin: string): FleetCar;
  /**
   * Power-cycles a car: the link drops without a goodbye (the broker publishes the will), nothing runs for
   * downMs, then the unit boots from its files (state, seen jtis) with the same keys and reconnects.
   */
  reboot(vin: string, downMs: number): Promise<void>;
  stop(): Promise<void>;
}

export const replayFileFor = (dataDir: string, vin: string): string => join(dataDir, `${vin}.replay.json`);
export const stateFileFor = (dataDir: string, vin: string): string => join(dataDir, `${vin}.state.json`);
export const outcomesFileFor = (dataDir: string, vin: string): string =>
  join(dataDir, `${vin}.outcomes.json`);
export const revocationFileFor = (dataDir: string, vin: string): string =>
  join(dataDir, `${vin}.revoked.json`);
export const keyFileFor = (dataDir: string, vin: string): string => join(dataDir, `${vin}.keys.json`);

/** Runs work over items with at most `limit` in flight; settles every item like Promise.allSettled. */
async function settleAll<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      try {
        results[index] = { status: 'fulfilled', value: await work(items[index] as T) };
      } catch (reason) {
        results[index] = { status: 'rejected', reason };
      }
    }
  };
  const lanes = Math.max(1, Math.min(limit, items.length));
  await Promise.all(Array.from({ length: lanes }, lane));
  return results;
}

/** The vehicles a fleet simulates and the ones it skips; a VIN listed twice is refused (SIM_ARGS_INVALID). */
export function selectVehicles(
  vehicles: readonly SeedVehicle[],
  catalog: Catalog,
  includeIncompatible: boolean,
): { selected: SeedVehicle[]; skipped: SkippedVehicle[] } {
  const selected: SeedVehicle[] = [];
  const skipped: SkippedVehicle[] = [];
  const seen = new Set<string>();
  for (const vehicle of vehicles) {
    // Two sessions with one client id would take each other over [MQTT-3.1.4-2].
    if (seen.has(vehicle.vin))
      throw new SimulatorError('SIM_ARGS_INVALID', `VIN ${vehicle.vin} listed twice`);
    seen.add(vehicle.vin);
    if (includeIncompatible || findCompatible(catalog, vehicle)) selected.push(vehicle);
    else skipped.push({ vin: vehicle.vin, reason: 'INCOMPATIBLE' });
  }
  return { selected, skipped };
}

/** Connects every selected car; if any fails to connect, the others are closed again and the first error thrown. */
export async function startFleet(deps: StartFleetDeps): Promise<Fleet> {
  const catalog = deps.catalog ?? loadSeeds().catalog;
  const clock = deps.now ?? Date.now;
  const log = deps.logger ?? silentLogger;
  const flaws = new Set(deps.flaws ?? []);

  const { selected, skipped } = selectVehicles(deps.vehicles, catalog, deps.includeIncompatible ?? false);

  const inMemory = deps.persistence === 'memory';
  /** With persistence: memory, what each car keeps across a reboot. */
  const memories = new Map<
    string,
    { replay: ReplayStore; store: CarStore; outcomes: ReturnType<typeof createOutcomeMemory> }
  >();
  const memoryOf = (vin: string) => {
    let kept = memories.get(vin);
    if (!kept) {
      const capacity = deps.replayCapacity ?? DEFAULT_REPLAY_CAPACITY;
      kept = {
        replay: createMemoryReplayStore({ capacity }),
        store: createMemoryCarStore(),
        outcomes: createOutcomeMemory(),
      };
      memories.set(vin, kept);
    }
    return kept;
  };

  /** Boots one car from its files (a first boot finds none) and connects it. */
  const boot = async (
    vehicle: SeedVehicle,
    faults: CarFaults | null,
    executed: ExecutedCommand[],
  ): Promise<Pick<FleetCar, 'car' | 'connection' | 'replay' | 'revocations' | 'keys'>> => {
    const carClock = faults ? () => faults.carTime() : clock;
    const onError = (what: string) => (err: unknown) =>
      log.error({ vin: vehicle.vin, err: String(err) }, `${what} not written`);
    const capacity = deps.replayCapacity ?? DEFAULT_REPLAY_CAPACITY;
    const replay =
      deps.replayStoreFor?.(vehicle.vin) ??
      // forget-replay-on-reboot: a flawed unit that keeps its used jti in RAM only (TOKEN.md §7).
      (flaws.has('forget-replay-on-reboot')
        ? createMemoryReplayStore({ capacity })
        : inMemory
          ? memoryOf(vehicle.vin).replay
          : createFileReplayStore({
              file: replayFileFor(deps.dataDir, vehicle.vin),
              capacity,
              onError: onError('replay store'),
            }));
    const revocations = createFileRevocationStore({
      file: revocationFileFor(deps.dataDir, vehicle.vin),
      capacity: DEFAULT_REVOCATION_CAPACITY,
      lastGoodTime: () => replay.lastGoodTime(),
      onError: onError('revocation store'),
    });
    const keys = createFileKeyStore({
      file: keyFileFor(deps.dataDir, vehicle.vin),
      enrolled: deps.trustedKeys,
      onError: onError('key store'),
    });
    const store = inMemory
      ? memoryOf(vehicle.vin).store
      : createFileCarStore(stateFileFor(deps.dataDir, vehicle.vin), onError('car state'));
    const { cert, key } = deps.pki.certFor(vehicle.vin);
    // Reports' seq must keep increasing across a restart too (PROTOCOL.md §3.3): the saved seq, or the boot
    // time in ms if larger, which also covers a lost file as long as a car sends under one report per ms.
    const bootSeq = Math.max(0, Math.floor(clock() ?? 0));
    const restored = store.load(bootSeq);
    const car = createSimulatedCar({
      vin: vehicle.vin,
      make: vehicle.make,
      model: vehicle.model,
      year: vehicle.year,
      provider: vehicle.provider,
      initial: { position: vehicle.position, seq: bootSeq, ...(restored ? { state: restored } : {}) },
      keys,
      replay,
      revocations,
      signingKey: createPrivateKey(key),
      clock: carClock,
      failsafeRelockMs: deps.failsafeRelockMs,
      issuer: deps.issuer,
      ...(faults ? { faults } : {}),
      onExecuted: (e) => executed.push(e),
      flaws,
    });
    car.onChange((change) => store.save(change.state));
    store.save(car.snapshot());
    const connection = await connectCar({
      car,
      brokerUrl: deps.brokerUrl,
      ca: deps.pki.ca,
      cert,
      key,
      reportIntervalMs: deps.reportIntervalMs ?? DEFAULT_REPORT_INTERVAL_MS,
      tickIntervalMs: deps.tickIntervalMs,
      backoff: deps.backoff,
      logger: log,
      servername: deps.servername,
      random: deps.random,
      createClient: deps.createClient,
      ...(faults ? { faults } : {}),
      outcomes: flawedOutcomeMemory(
        inMemory
          ? memoryOf(vehicle.vin).outcomes
          : createOutcomeMemory({
              file: outcomesFileFor(deps.dataDir, vehicle.vin),
              onError: onError('command outcomes'),
            }),
        flaws,
      ),
    });
    return { car, connection, replay, revocations, keys };
  };

  let connected = 0;
  const started = await settleAll(
    selected,
    deps.connectConcurrency ?? Number.POSITIVE_INFINITY,
    async (vehicle): Promise<FleetCar> => {
      const faults = deps.faults?.forCar(vehicle.vin) ?? null;
      const executed: ExecutedCommand[] = [];
      const booted = await boot(vehicle, faults, executed);
      deps.onConnected?.(++connected, selected.length);
      return { vehicle, faults, executed, flaws: [...flaws], ...booted };
    },
  );

  const cars = new Map<string, FleetCar>();
  const failures: unknown[] = [];
  for (const result of started) {
    if (result.status === 'fulfilled') cars.set(result.value.vehicle.vin, result.value);
    else failures.push(result.reason);
  }
  let stopping = false;
  const rebooting = new Set<Promise<unknown>>();
  const stop = async (): Promise<void> => {
    stopping = true;
    await Promise.allSettled([...rebooting]);
    await Promise.all([...cars.values()].map((c) => c.connection.close()));
  };
  if (failures.length > 0) {
    await stop();
    throw failures[0];
  }

  const car = (vin: string): FleetCar => {
    const found = cars.get(vin);
    if (!found) throw new SimulatorError('SIM_UNKNOWN_VIN', `the fleet does not simulate ${vin}`);
    return found;
  };

  return {
    cars,
    skipped,
    car,
    async reboot(vin, downMs) {
      const entry = car(vin);
      entry.faults?.note('reboot', { downMs });
      log.info({ vin, downMs }, 'rebooting');
      if (entry.faults) {
        // Power loss: no DISCONNECT, so the broker publishes the will.
        entry.faults.cutPower();
        const deadline = Date.now() + 1_000;
        while (entry.connection.connected && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 5));
      }
      await entry.connection.close();
      const back = (async () => {
        await new Promise((resolve) => setTimeout(resolve, downMs));
        // A unit that boots while the broker is away keeps trying, with the same backoff as a reconnect.
        for (let attempt = 0; !stopping; attempt++) {
          try {
            Object.assign(entry, await boot(entry.vehicle, entry.faults, entry.executed));
            return;
          } catch (err) {
            if (!(err instanceof SimulatorError) || err.code !== 'SIM_CONNECT_FAILED') throw err;
            const delayMs = reconnectDelay(
              attempt,
              deps.backoff ?? DEFAULT_BACKOFF,
              deps.random ?? Math.random,
            );
            log.warn({ vin, delayMs }, 'boot: broker unreachable; retrying');
            await new Promise((resolve) => setTimeout(resolve, delayMs));
          }
        }
      })();
      rebooting.add(back);
      try {
        await back;
      } finally {
        rebooting.delete(back);
      }
    },
    stop,
  };
}
