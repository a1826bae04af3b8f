// Owns what makes a gateway one replica among several on one PostgreSQL store: its leases (deliveries in flight,
// background jobs), the shared rate limits, and the ack relay; null on SQLite, where the gateway is one process.
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { ReplicaError } from '../errors.ts';
import type { Config } from '../platform/config.ts';
import type { Database } from '../store/schema.ts';
import type { VehicleLimiter } from '../vehicles/limiter.ts';
import type { AckHandover } from '../vehicles/link.ts';
import { type AckRelay, createAckRelay } from './ack-relay.ts';
import { createDeliveryHolds, type DeliveryHolds } from './delivery-holds.ts';
import { createLeases, type Leases } from './leases.ts';
import { sharedRateLimitStore, sharedVehicleLimiter } from './rate-limits.ts';
import { createSingletonJobs, type SingletonJobs } from './singleton.ts';

export interface Replica {
  name: string;
  leases: Leases;
  /** The per-delivery mutex, across replicas. */
  holds: DeliveryHolds;
  jobs: SingletonJobs;
  /** How long a background job's lease lasts for a job run every periodMs. */
  jobTtlMs(periodMs: number): number;
  rateLimitStore: ReturnType<typeof sharedRateLimitStore>;
  vehicleLimiter: VehicleLimiter;
  acks: AckRelay;
  close(): Promise<void>;
}

export interface ReplicaDeps {
  config: Config;
  db: Kysely<Database>;
  link: () => AckHandover | null;
  now: () => number;
  logger: Logger;
}

/**
 * How long a delivery stays held without renewal: the longest a command takes (its ack wait, then a state query
 * for it and one for an earlier unlock) and a margin; a replica that dies leaves it to others after that.
 */
export const holdTtlMs = (config: Pick<Config, 'COMMAND_TIMEOUT_MS' | 'QUERY_TIMEOUT_MS'>): number =>
  config.COMMAND_TIMEOUT_MS + 2 * config.QUERY_TIMEOUT_MS + 5_000;

export async function joinReplicas(deps: ReplicaDeps): Promise<Replica | null> {
  const { config, db, logger } = deps;
  if (!config.DATABASE_URL) return null;
  const name = config.GATEWAY_REPLICA;
  // A replica restarted under the same name is a new holder: it must not take over what its last run held.
  const leases = createLeases(db, `${name}/${randomUUID().slice(0, 8)}`);
  // Two live replicas under one name would share a broker session (each ending the other's) and its certificate:
  // the second is refused at start. The name is held while this replica runs, and frees itself within its lease
  // when the replica dies.
  const nameLease = `replica:${name}`;
  const nameTtlMs = config.JOB_LEASE_S * 1000;
  if (!(await leases.acquire(nameLease, nameTtlMs))) {
    throw new ReplicaError(
      'REPLICA_NAME_TAKEN',
      `GATEWAY_REPLICA=${name} is already running on this database: give each replica its own name (a replica that died frees its name within JOB_LEASE_S, ${config.JOB_LEASE_S} s)`,
    );
  }
  const keepName = setInterval(
    () => void leases.acquire(nameLease, nameTtlMs).catch(() => {}),
    nameTtlMs / 3,
  );
  keepName.unref();
  const holds = createDeliveryHolds({ leases, ttlMs: holdTtlMs(config) });
  const jobs = createSingletonJobs({ leases, logger });
  const releaseName = async (): Promise<void> => {
    clearInterval(keepName);
    await leases.release(nameLease).catch(() => {});
  };
  const acks = createAckRelay({
    db,
    url: config.DATABASE_URL,
    link: deps.link,
    now: deps.now,
    logger,
    applicationName: `curbside-acks ${leases.holder}`,
  });
  try {
    await acks.start();
  } catch (err) {
    await releaseName();
    throw err;
  }
  logger.info({ event: 'cluster.joined', replica: name, holder: leases.holder }, 'replica joined');
  return {
    name,
    leases,
    holds,
    jobs,
    jobTtlMs: (periodMs) => Math.max(config.JOB_LEASE_S * 1000, 2 * periodMs),
    rateLimitStore: sharedRateLimitStore(db),
    vehicleLimiter: sharedVehicleLimiter(db, {
      burst: config.VEHICLE_COMMAND_BURST,
      perMinute: config.VEHICLE_COMMANDS_PER_MIN,
      holdMs: holdTtlMs(config),
      holder: leases.holder,
    }),
    acks,
    async close() {
      await jobs.releaseAll();
      await acks.close();
      await releaseName();
    },
  };
}
