// Owns what the delivery service's parts share: its dependencies, policy, and the refusal, load and
// per-delivery exclusion every decision uses.
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { TokenAction } from '../../protocols/index.ts';
import { ApiError, type ApiErrorOptions, type ErrorCode } from '../errors.ts';
import type { Config } from '../platform/config.ts';
import {
  type DeliveryPatch,
  type DeliveryRecord,
  findDelivery,
  updateDelivery,
} from '../store/deliveries.ts';
import type { Write } from '../store/group-commit.ts';
import type { Database } from '../store/schema.ts';
import { appendEvent } from '../store/timeline.ts';
import type { VehicleRecord } from '../store/vehicles.ts';
import type { VehicleLimiter } from '../vehicles/limiter.ts';
import type { VehicleLink } from '../vehicles/link.ts';
import type { SigningKeyRing } from '../vehicles/signing-keys.ts';
import { createKeyedMutex, type KeyedMutex } from './keyed-mutex.ts';
import type { Notify } from './notifications.ts';
import { createDeliveryOutcomes } from './outcomes.ts';
import type { Reconciler } from './reconcile.ts';

export interface DeliveryPolicy {
  /** Longest delivery window. */
  maxWindowMs: number;
  /** The window when only its start is given. */
  defaultWindowMs: number;
  /** How many unlocks one delivery may use. */
  maxUnlocks: number;
  /** Requested lifetime of a command token (capped by the protocol maximum and the window end). */
  tokenTtlS: number;
  /** How long an HTTP request waits for the car's ack or state report. */
  commandTimeoutMs: number;
  /** How long after an unlock the watchdog locks the car if nobody did; also the retry interval after that. */
  relockAfterMs: number;
  /** How far the car may drift from its confirmed parking position (GPS noise) and still count as not moved. */
  parkingToleranceM: number;
}

export interface Signer {
  /** Tokens are signed with the ring's active key (TOKEN.md §8.3). */
  keys: SigningKeyRing;
  issuer: string;
}

export type CommandOutcome = 'executed' | 'refused' | 'timeout' | 'not_sent';

export interface CommandSettlement {
  action: TokenAction;
  outcome: CommandOutcome;
  /** Publish to ack; null without an ack. */
  roundTripMs: number | null;
  /** The car's reason for a refusal, or why nothing was sent. */
  reason: string | null;
}

/** Hears the service's decisions as they are made (metrics); it must not throw. */
export interface DeliveryObserver {
  /** A gateway check refused a request; no command was sent. */
  denied(code: ErrorCode): void;
  commandSettled(settlement: CommandSettlement): void;
}

export interface DeliveryServiceDeps {
  /** For reads. */
  db: Kysely<Database>;
  /**
   * Every write of this service goes through here (store.write): atomic per unit, durable before it resolves,
   * concurrent units sharing one commit. A unit uses only the transaction it is given.
   */
  write: Write;
  link: () => VehicleLink | null;
  signer: Signer;
  policy: DeliveryPolicy;
  now: () => number;
  newId: () => string;
  logger: Logger;
  /** Called in the transaction of each decision an owner or carrier hears about (gateway/deliveries/notifications.ts). */
  notify?: Notify;
  observer?: DeliveryObserver;
  /** The VIN's currently issued certificate, for acks signed after a rotation (acks.ts). */
  currentCertificate?: (vin: string, at: number) => string | null;
  /** One command at a time per delivery; shared with the reconciler so it leaves held deliveries alone. */
  mutex?: KeyedMutex;
  /** Settles commands whose ack never came (PROTOCOL.md §6.3); without it a timeout is only reported. */
  reconciler?: Pick<Reconciler, 'afterTimeout' | 'settleOutstandingUnlock'>;
  /** Per-vehicle command budget; without it commands are not limited per VIN. */
  limiter?: VehicleLimiter;
  /**
   * Whether the VIN's certificate is on the CA's revocation list (vehicles/revocation.ts): such a car gets no command
   * and no query. Without it no car counts as revoked.
   */
  certificateRevoked?: (vin: string) => Promise<boolean>;
}

/** The car may still be open for this delivery: it acked an unlock and was not confirmed locked since. */
export const carMayBeOpen = (d: DeliveryRecord): boolean => d.unlockedAt !== null && d.relockedAt === null;

/** The delivery service's shared state and helpers, built once per service. */
export function createDeliveryContext(deps: DeliveryServiceDeps) {
  const { db, write, policy, now, newId, logger } = deps;
  // Commands to one delivery never interleave in this process; conditional updates guard across replicas.
  const mutex = deps.mutex ?? createKeyedMutex();
  const outcomes = createDeliveryOutcomes({ now, ...(deps.notify ? { notify: deps.notify } : {}) });
  const { emit, confirmLocked } = outcomes;

  interface DenyOptions {
    /** A request for access to the car (unlock, lock, another action): also raises access.denied. */
    accessRequest?: boolean;
    /** A change to the delivery that belongs to the same decision. */
    patch?: DeliveryPatch;
    error?: ApiErrorOptions;
  }

  /** Records a refusal (and, for a request for access, access.denied) in one transaction, then throws it. */
  async function deny(
    d: DeliveryRecord,
    kind: string,
    code: ErrorCode,
    detail: Record<string, unknown>,
    options: DenyOptions = {},
  ): Promise<never> {
    const t = now();
    await write(async (trx) => {
      if (options.patch) await updateDelivery(trx, d.id, options.patch);
      await appendEvent(trx, d.id, { at: t, kind, outcome: 'denied', code, detail });
      if (options.accessRequest ?? true) {
        await emit(trx, d, 'access.denied', { request: kind, code, ...detail }, t);
      }
    });
    deps.observer?.denied(code);
    throw new ApiError(code, options.error);
  }

  async function load(id: string): Promise<DeliveryRecord> {
    const d = await findDelivery(db, id);
    if (!d) throw new ApiError('NOT_FOUND', { detail: `no delivery ${id}` });
    return d;
  }

  /** HTTP requests do not queue behind another command for the same delivery: they are refused at once. */
  async function exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const busy = (): ApiError =>
      new ApiError('DELIVERY_NOT_ACTIVE', { detail: 'another command for this delivery is in flight' });
    if (mutex.held(id)) throw busy();
    // Another replica's command for it (a lease in the shared store) is refused the same way.
    return mutex.run(id, fn, { busy });
  }

  const linked = (v: VehicleRecord | null): v is VehicleRecord => v !== null && v.unlinkedAt === null;
  const certificateRevoked = deps.certificateRevoked ?? (async () => false);

  return {
    deps,
    db,
    write,
    policy,
    now,
    newId,
    logger,
    mutex,
    outcomes,
    emit,
    confirmLocked,
    deny,
    load,
    exclusive,
    linked,
    certificateRevoked,
  };
}

export type DeliveryContext = ReturnType<typeof createDeliveryContext>;

/** The delivery policy the settings give (units as the settings name them: hours, seconds). */
export function deliveryPolicyOf(config: Config): DeliveryPolicy {
  return {
    maxWindowMs: config.MAX_WINDOW_H * 3_600_000,
    defaultWindowMs: config.DEFAULT_WINDOW_H * 3_600_000,
    maxUnlocks: config.MAX_UNLOCKS,
    tokenTtlS: config.TOKEN_TTL_S,
    commandTimeoutMs: config.COMMAND_TIMEOUT_MS,
    relockAfterMs: config.RELOCK_AFTER_S * 1000,
    parkingToleranceM: config.PARKING_TOLERANCE_M,
  };
}
