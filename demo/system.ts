// Owns running the whole system in one process for the demo programs: the gateway, the simulated fleet once
// the broker answers, the demo delivery when asked for, and the order of shutdown. Nothing here fails the start
// after the gateway is up: a fleet or demo that fails is said on stdout and the gateway keeps serving.
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { type Booted, bootGateway } from '../gateway/platform/bootstrap.ts';
import type { Config } from '../gateway/platform/config.ts';
import type { StopSignals } from '../gateway/platform/program.ts';
import { openDeliveriesOf } from '../gateway/store/deliveries.ts';
import type { Database } from '../gateway/store/schema.ts';
import type { Seeds } from '../seeds/index.ts';
import {
  type ControlServer,
  type Fleet,
  type FleetFaults,
  readFleetPki,
  startFleet,
} from '../simulator/index.ts';
import { DemoError, playDemoDelivery } from './script.ts';

export interface DemoSystemDeps {
  config: Config;
  /** The fleet's fault injection (the console drives it through the control API). */
  faults?: FleetFaults;
  /** The simulator's control API, attached to the fleet once it is up; closed after the gateway drained. */
  control?: ControlServer | null;
  seeds: Seeds;
  logger: Logger;
  print: (line: string) => void;
  /** Installed before the gateway's HTTP port opens (watchStopSignals). */
  stop: StopSignals;
  /** Say where the development API key is (not for a store that is removed at the end). */
  showApiKey: boolean;
  /**
   * Runs once the fleet is up: whether to play the demo is the program's call. `freshStore` says whether the
   * store had never had a vehicle linked when this start opened it.
   */
  demo: (ctx: DemoContext) => Promise<void>;
}

export interface DemoContext {
  booted: Booted;
  fleet: Fleet;
  seeds: Seeds;
  freshStore: boolean;
}

/** How start-up ended: everything ran, a stop signal cut it short, or the fleet or the demo failed. */
export type StartUpOutcome = 'done' | 'stopped' | 'failed';

export interface DemoSystem {
  booted: Booted;
  /** Settles (never rejects) once start-up is over. */
  startUp: Promise<StartUpOutcome>;
  /**
   * Drain first, while the cars are still there to ack what is in flight; let start-up settle (a demo step
   * after the drain is refused with 503), then the cars sign off through the broker, then the broker and the
   * store close.
   */
  shutdown(): Promise<void>;
}

/** True while nothing was ever linked: unlinked vehicles keep their rows, so one unlinked counts too. */
async function neverLinked(booted: Booted): Promise<boolean> {
  const row = await booted.gateway.store.db.selectFrom('vehicles').select('vin').limit(1).executeTakeFirst();
  return row === undefined;
}

export async function startDemoSystem(deps: DemoSystemDeps): Promise<DemoSystem> {
  const { config, seeds, print, stop } = deps;
  const booted = await bootGateway({
    config,
    catalog: seeds.catalog,
    seededVins: seeds.vehicles.map((v) => v.vin),
    logger: deps.logger,
    print,
  });
  const link = booted.gateway.link;
  const broker = config.MQTT_URL
    ? `external MQTT broker (MQTT_URL) ${booted.gateway.brokerUrl} (mutual TLS)`
    : `embedded MQTT broker on ${booted.gateway.brokerUrl} (TLS 1.3, mutual TLS)`;
  print(`Gateway HTTP API on ${booted.baseUrl}, ${broker}.`);
  const keyFile = join(config.CERTS_DIR, 'api-key');
  if (deps.showApiKey && booted.apiKey)
    print(`API key: in ${keyFile} (use: Authorization: Bearer $(cat ${keyFile})).`);
  const freshStore = await neverLinked(booted);
  let fleet: Fleet | null = null;

  const run = async (): Promise<StartUpOutcome> => {
    if (!link.connected()) {
      print(
        `The MQTT broker does not answer yet: ${link.problem() ?? 'no session'}. /readyz answers 503 until it does; ` +
          'trying again with backoff (at most 30 s apart). The simulated fleet starts once it answers.',
      );
      const answered = await Promise.race([
        link.untilConnected().then(() => true),
        stop.first.then(() => false),
      ]);
      if (!answered) return 'stopped';
      print(`The MQTT broker answers: ${booted.gateway.brokerUrl}.`);
    }
    if (config.SIMULATOR === 'off' || stop.received()) return stop.received() ? 'stopped' : 'done';
    try {
      fleet = await startFleet({
        brokerUrl: booted.gateway.brokerUrl,
        vehicles: seeds.vehicles,
        ...readFleetPki(booted.pki.dir),
        dataDir: join(config.DATA_DIR, 'simulator'),
        failsafeRelockMs: config.FAILSAFE_RELOCK_S * 1000,
        ...(deps.faults ? { faults: deps.faults } : {}),
      });
      deps.control?.attach(fleet);
    } catch (err) {
      print(`The simulated fleet did not start: ${(err as Error).message}. The gateway keeps serving.`);
      return 'failed';
    }
    print(
      `Simulated fleet: ${fleet.cars.size} cars connected; skipped as incompatible: ${fleet.skipped.map((s) => s.vin).join(', ') || 'none'}.`,
    );
    if (stop.received()) return 'stopped';
    try {
      await deps.demo({ booted, fleet, seeds, freshStore });
    } catch (err) {
      // A demo that fails is the demo's problem: the gateway keeps serving (or goes on stopping).
      const what = err instanceof DemoError ? err.message : `${(err as Error).message}`;
      print(`\nThe demo stopped: ${what}.${stop.received() ? '' : ' The gateway keeps serving.'}`);
      return stop.received() ? 'stopped' : 'failed';
    }
    return stop.received() ? 'stopped' : 'done';
  };
  const startUp = run().catch((err: unknown) => {
    print(`Start-up stopped: ${(err as Error).message}. The gateway keeps serving.`);
    return 'failed' as const;
  });

  return {
    booted,
    startUp,
    async shutdown() {
      await booted.gateway.drain();
      // Bounded: a fleet still connecting to a broker that went away must not hold the stop forever.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        startUp,
        new Promise((resolve) => {
          timer = setTimeout(resolve, config.SHUTDOWN_DRAIN_MS);
        }),
      ]);
      clearTimeout(timer);
      await (fleet as Fleet | null)?.stop();
      await booted.stop();
    },
  };
}

/** Why the demo must leave a car alone: another delivery may have it open (unlocked, not yet relocked). */
export const openedByAnother =
  (db: Kysely<Database>) =>
  async (vin: string, ownDeliveryId: string): Promise<string | null> => {
    const others = (await openDeliveriesOf(db, vin)).filter((d) => d.id !== ownDeliveryId);
    return others.length === 0 ? null : `delivery ${others.map((d) => d.id).join(', ')} has it open`;
  };

/**
 * Plays the demo delivery into the fleet's first car, at its owner's location, leaving the car alone if another
 * delivery has it open (the demo's lock would end that delivery's opening). Throws DemoError.
 */
export async function playDemo(ctx: DemoContext, print: (line: string) => void): Promise<void> {
  const { booted, fleet, seeds } = ctx;
  const vehicle = [...fleet.cars.values()][0]?.vehicle;
  const location = seeds.locations.find((l) => l.ownerId === vehicle?.ownerId);
  if (!vehicle || !location)
    throw new DemoError('DEMO_STEP_FAILED', 'no simulated car with a seeded location');
  if (!booted.apiKey) throw new DemoError('DEMO_STEP_FAILED', 'no development API key (production mode)');
  await playDemoDelivery({
    baseUrl: booted.baseUrl,
    apiKey: booted.apiKey,
    vehicle,
    location,
    print,
    carInUse: openedByAnother(booted.gateway.store.db),
  });
  print(`\nThe simulated car now reports locked=${fleet.car(vehicle.vin).car.snapshot().locked}.`);
}
