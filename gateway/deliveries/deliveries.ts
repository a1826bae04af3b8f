// Owns the delivery lifecycle: scheduling, parking confirmation, the checks before an unlock, commands to the
// car, relocking (driver, watchdog, block, cancel, unlink, the car itself), the timeline and its events.
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import {
  type Ack,
  buildClaims,
  type Command,
  mintAccessToken,
  PROTOCOL_VERSION,
  type StateMessage,
  type TokenAction,
} from '../../protocols/index.ts';
import { ApiError, type ApiErrorOptions, type ErrorCode } from '../errors.ts';
import { insertCommand, insertVehicleAck, settleCommand } from '../store/commands.ts';
import type { Db } from '../store/db.ts';
import {
  type DeliveryPatch,
  type DeliveryRecord,
  deliveriesOf,
  findDelivery,
  insertDelivery,
  openDeliveriesOf,
  updateDelivery,
} from '../store/deliveries.ts';
import type { Write } from '../store/group-commit.ts';
import { findLocation } from '../store/locations.ts';
import type { Database } from '../store/schema.ts';
import { appendEvent, type TimelineEntry, timelineOf } from '../store/timeline.ts';
import { findVehicle, type VehicleRecord } from '../store/vehicles.ts';
import { type AckRefusal, checkSignedAck } from '../vehicles/acks.ts';
import type { VehicleLimiter } from '../vehicles/limiter.ts';
import type { VehicleLink } from '../vehicles/link.ts';
import type { SigningKeyRing } from '../vehicles/signing-keys.ts';
import { distanceM } from './geo.ts';
import { createKeyedMutex, type KeyedMutex } from './keyed-mutex.ts';
import type { Notify } from './notifications.ts';
import { createDeliveryOutcomes, type RelockCause } from './outcomes.ts';
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
}

export interface ScheduleInput {
  vin: string;
  locationId: string;
  driverId: string;
  packageIds: string[];
  /** `end` defaults to start + policy.defaultWindowMs. */
  window: { start: number; end?: number };
  /** The carrier whose backend schedules it (from its API key). */
  carrierId?: string | null;
}

export interface UnlockInput {
  driverId: string;
  position: { lat: number; lon: number };
  packageId: string;
}

export interface DeliveryView extends DeliveryRecord {
  timeline: TimelineEntry[];
}

export type { RelockCause } from './outcomes.ts';
/** `skipped`: the car may be open but gets no command (vehicle unlinked, or lock not consented). */
export type RelockOutcome = 'locked' | 'unconfirmed' | 'not_open' | 'skipped';

export interface RelockOptions {
  /** When to try again if this lock cannot be confirmed (default: now + relockAfterMs). */
  retryAt?: number;
}

const LOCKED_KIND: Record<RelockCause, string> = {
  driver: 'vehicle_locked',
  watchdog: 'relocked_by_watchdog',
  block: 'relocked_on_block',
  cancel: 'relocked_on_cancel',
  unlink: 'relocked_on_unlink',
};

/** What happened to one command on the wire, after it was settled in the store. */
/**
 * The outcome of revoking a delivery. The delivery is cancelled at the gateway either way (no token is minted for
 * it again); `vehicle` says whether the car confirmed, with a signed ack, that it refuses the delivery's tokens.
 */
export type RevokeResult =
  | { status: 'cancelled'; vehicle: 'revoked'; locked: boolean }
  | { status: 'cancelled'; vehicle: 'refused'; reason: string | null }
  /** No verified ack in time: the revoke stays queued for the car, and its tokens expire on their own. */
  | { status: 'cancelled'; vehicle: 'unconfirmed' };

type Sent =
  | { kind: 'executed'; ack: Ack; roundTripMs: number }
  | { kind: 'refused'; ack: Ack }
  | { kind: 'timeout' }
  | { kind: 'broker_unavailable' }
  /** An ack came but did not verify against the car's certificate (TOKEN.md §9): treated as no ack. */
  | { kind: 'ack_invalid'; code: AckRefusal }
  /**
   * No ack in time, but the car's answer to a state query (or a late ack) settled the command meanwhile
   * (PROTOCOL.md §6.3); `locked` is the car's lock state that evidence showed.
   */
  | { kind: 'reconciled'; status: 'executed' | 'refused' | 'not_executed'; locked: boolean | null };

const tokenHash = (token: string): string => createHash('sha256').update(token).digest('base64url');

interface BlockedOrCancelled {
  blocked: boolean;
  cancelled: boolean;
}

/** The car may still be open for this delivery: it acked an unlock and was not confirmed locked since. */
export const carMayBeOpen = (d: DeliveryRecord): boolean => d.unlockedAt !== null && d.relockedAt === null;

export function createDeliveryService(deps: DeliveryServiceDeps) {
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
    if (mutex.held(id))
      throw new ApiError('DELIVERY_NOT_ACTIVE', { detail: 'another command for this delivery is in flight' });
    return mutex.run(id, fn);
  }

  const linked = (v: VehicleRecord | null): v is VehicleRecord => v !== null && v.unlinkedAt === null;

  async function schedule(input: ScheduleInput): Promise<DeliveryRecord> {
    const t = now();
    const start = input.window.start;
    const end = input.window.end ?? start + policy.defaultWindowMs;
    if (!(end > start) || end - start > policy.maxWindowMs || end <= t) {
      throw new ApiError('WINDOW_INVALID', {
        detail: `window must end after it starts, in the future, and last at most ${policy.maxWindowMs / 3_600_000} h`,
      });
    }
    const vehicle = await findVehicle(db, input.vin);
    if (!linked(vehicle)) throw new ApiError('VEHICLE_NOT_LINKED');
    const location = await findLocation(db, input.locationId);
    if (!location) throw new ApiError('NOT_FOUND', { detail: `no location ${input.locationId}` });
    if (location.ownerId !== vehicle.ownerId) throw new ApiError('LOCATION_NOT_OWNED');
    // Also refuses locations stored before access was asked for ('unknown'): deny by default.
    if (location.access !== 'public') {
      throw new ApiError('LOCATION_NOT_PUBLIC', { detail: `location access is ${location.access}` });
    }
    const delivery: DeliveryRecord = {
      id: `dlv_${newId()}`,
      vin: input.vin,
      locationId: input.locationId,
      driverId: input.driverId,
      packageIds: [...new Set(input.packageIds)],
      windowStart: start,
      windowEnd: end,
      status: 'scheduled',
      unlocksUsed: 0,
      createdAt: t,
      updatedAt: t,
      blocked: false,
      parking: null,
      unlockedAt: null,
      unlockedCarAt: null,
      relockedAt: null,
      relockRetryAt: null,
      lockUnconfirmedAt: null,
      carrierId: input.carrierId ?? null,
    };
    const detail = {
      vin: delivery.vin,
      locationId: delivery.locationId,
      driverId: delivery.driverId,
      window: { start, end },
    };
    await write(async (trx) => {
      await insertDelivery(trx, delivery);
      await appendEvent(trx, delivery.id, {
        at: t,
        kind: 'delivery_scheduled',
        outcome: 'info',
        code: null,
        detail,
      });
      await emit(trx, delivery, 'delivery.scheduled', detail, t);
    });
    return delivery;
  }

  /**
   * Asks the car itself where it is and whether its ignition is off (PROTOCOL.md §3.5), and records the
   * answer as the delivery's parking confirmation when it is parked within the location's radius.
   */
  async function confirmParking(id: string): Promise<{ status: 'parking_confirmed'; distanceM: number }> {
    return exclusive(id, async () => {
      const d = await load(id);
      const kind = 'parking_requested';
      const info = { accessRequest: false };
      if (d.status !== 'scheduled') return deny(d, kind, 'DELIVERY_NOT_ACTIVE', { status: d.status }, info);
      if (now() >= d.windowEnd) return deny(d, kind, 'OUTSIDE_WINDOW', { at: now() }, info);
      const vehicle = await findVehicle(db, d.vin);
      if (!linked(vehicle)) return deny(d, kind, 'VEHICLE_NOT_LINKED', {}, info);
      const location = await findLocation(db, d.locationId);
      if (!location) throw new ApiError('NOT_FOUND', { detail: `no location ${d.locationId}` });
      const link = deps.link();
      if (!link?.connected()) throw new ApiError('BROKER_UNAVAILABLE', { mayHaveSucceeded: false });
      const answer = await link.query(d.vin, policy.commandTimeoutMs);
      if (answer.kind === 'timeout') {
        return deny(
          d,
          kind,
          'VEHICLE_UNREACHABLE',
          { waitedMs: policy.commandTimeoutMs },
          {
            ...info,
            // A state query changes nothing at the car, so asking again is always safe.
            error: {
              mayHaveSucceeded: false,
              detail: `no state report within ${policy.commandTimeoutMs} ms`,
            },
          },
        );
      }
      const { report } = answer;
      const distance = Math.round(distanceM(report.position, location));
      const seen = {
        position: report.position,
        ignition: report.ignition,
        carTime: report.at,
        seq: report.seq,
      };
      // A failed check also withdraws an earlier confirmation: the car is not where it was.
      const withdraw = d.parking ? { patch: { parking: null, updatedAt: now() } } : {};
      if (distance > location.radiusM) {
        return deny(
          d,
          kind,
          'VEHICLE_NOT_AT_LOCATION',
          { ...seen, distanceM: distance },
          {
            ...info,
            ...withdraw,
            error: {
              detail: `the car reports itself ${distance} m from the location (radius ${location.radiusM} m)`,
              extra: { distanceM: distance, radiusM: location.radiusM },
            },
          },
        );
      }
      if (report.ignition !== 'off') {
        return deny(d, kind, 'VEHICLE_NOT_PARKED', seen, {
          ...info,
          ...withdraw,
          error: { detail: `the car reports its ignition ${report.ignition}` },
        });
      }
      const t = now();
      await write(async (trx) => {
        await updateDelivery(trx, d.id, {
          parking: { confirmedAt: t, position: report.position, invalidCode: null },
          updatedAt: t,
        });
        const detail = { ...seen, distanceM: distance };
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'parking_confirmed',
          outcome: 'granted',
          code: null,
          detail,
        });
        await emit(trx, d, 'delivery.parking_confirmed', detail, t);
      });
      return { status: 'parking_confirmed', distanceM: distance };
    });
  }

  /** Whether the parking confirmation still holds against what the car reported last. */
  function parkingProblem(
    d: DeliveryRecord,
    vehicle: VehicleRecord,
  ): { code: ErrorCode; detail: object } | null {
    if (!d.parking) return { code: 'PARKING_NOT_CONFIRMED', detail: {} };
    if (d.parking.invalidCode)
      return { code: d.parking.invalidCode as ErrorCode, detail: { since: 'report' } };
    const moved = vehicle.position
      ? distanceM(vehicle.position, d.parking.position)
      : Number.POSITIVE_INFINITY;
    if (moved > policy.parkingToleranceM)
      return { code: 'VEHICLE_MOVED', detail: { movedM: Math.round(moved) } };
    if (vehicle.ignition !== 'off')
      return { code: 'VEHICLE_NOT_PARKED', detail: { ignition: vehicle.ignition } };
    return null;
  }

  /**
   * Mints a token bound to a fresh command id; returns what to publish and how to record it. The signature is
   * made before the write starts, so the shared transaction of a group commit never waits for it.
   */
  async function prepareCommand(
    d: DeliveryRecord,
    action: TokenAction,
    notAfterMs: number,
  ): Promise<{ command: Command; record: (trx: Db) => Promise<void> }> {
    const t = now();
    const signing = deps.signer.keys.active();
    const commandId = `cmd_${newId()}`;
    const jti = newId();
    const claims = buildClaims({
      issuer: deps.signer.issuer,
      vin: d.vin,
      deliveryId: d.id,
      action,
      commandId,
      jti,
      nowMs: t,
      ttlS: policy.tokenTtlS,
      notAfterMs,
    });
    const token = await mintAccessToken({ privateKey: signing.privateKey, kid: signing.kid, claims });
    const record = async (trx: Db): Promise<void> => {
      await insertCommand(trx, {
        id: commandId,
        deliveryId: d.id,
        vin: d.vin,
        action,
        jti,
        tokenHash: tokenHash(token),
        status: 'sent',
        reason: null,
        issuedAt: t,
        expiresAt: claims.exp * 1000,
        ackedAt: null,
      });
      await appendEvent(trx, d.id, {
        at: t,
        kind: 'command_sent',
        outcome: 'info',
        code: null,
        detail: {
          commandId,
          action,
          jti,
          tokenSha256: tokenHash(token),
          exp: claims.exp,
          kid: signing.kid,
        },
      });
    };
    return {
      command: { v: PROTOCOL_VERSION, type: 'command', commandId, deliveryId: d.id, action, token },
      record,
    };
  }

  /**
   * Publishes a prepared command, waits for the ack and settles the command row; failures go on the timeline.
   * An ack counts only when it is bound to this command and signed by the car's certificate (TOKEN.md §9); the
   * verified ack is kept as evidence with the settlement.
   */
  async function send(
    d: DeliveryRecord,
    command: Command,
    /** What an executed command changes, written in the same unit as its settlement (one commit, not two). */
    onExecuted?: (trx: Db, executed: Extract<Sent, { kind: 'executed' }>) => Promise<void>,
  ): Promise<Sent> {
    const ids = { deliveryId: d.id, commandId: command.commandId, action: command.action, vin: d.vin };
    const settled = (outcome: CommandOutcome, reason: string | null, roundTripMs: number | null): void =>
      deps.observer?.commandSettled({ action: command.action, outcome, reason, roundTripMs });
    logger.info(
      { event: 'command.sent', ...ids, tokenSha256: tokenHash(command.token) },
      `${command.action} sent`,
    );
    const link = deps.link();
    if (!link?.connected()) {
      logger.warn(
        { event: 'command.not_sent', ...ids, reason: 'BROKER_UNAVAILABLE' },
        'broker not connected',
      );
      settled('not_sent', 'BROKER_UNAVAILABLE', null);
      await write((trx) =>
        settleCommand(trx, command.commandId, {
          status: 'timeout',
          reason: 'BROKER_UNAVAILABLE',
          ackedAt: null,
        }),
      );
      return { kind: 'broker_unavailable' };
    }
    const started = now();
    let result: Awaited<ReturnType<VehicleLink['send']>>;
    try {
      result = await link.send(d.vin, command, policy.commandTimeoutMs);
    } catch (err) {
      // The client refused or lost the PUBLISH; it may still have reached the broker, so nothing is ruled out.
      logger.warn({ event: 'command.publish_failed', ...ids, err }, 'publish failed');
      result = { kind: 'timeout' };
    }
    const t = now();
    if (result.kind === 'timeout') {
      logger.warn({ event: 'command.timeout', ...ids, waitedMs: t - started }, 'no ack in time');
      settled('timeout', null, null);
      return afterTimeout(d, command, t - started);
    }
    const expected = { vin: d.vin, commandId: command.commandId, action: command.action, deliveryId: d.id };
    const check = await checkSignedAck(db, expected, result.ack, t, deps.currentCertificate);
    if (!check.ok) {
      logger.warn({ event: 'ack.rejected', ...ids, code: check.code }, 'ack refused');
      settled('timeout', check.code, null);
      await write(async (trx) => {
        await settleCommand(trx, command.commandId, { status: 'timeout', reason: check.code, ackedAt: null });
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'ack_rejected',
          outcome: 'denied',
          code: check.code,
          detail: { commandId: command.commandId, action: command.action },
        });
      });
      return { kind: 'ack_invalid', code: check.code };
    }
    const { ack } = result;
    logger.info(
      {
        event: 'ack.received',
        ...ids,
        outcome: ack.outcome,
        reason: ack.reason,
        locked: ack.locked,
        roundTripMs: t - started,
      },
      `${command.action} ${ack.outcome}`,
    );
    settled(ack.outcome === 'executed' ? 'executed' : 'refused', ack.reason ?? null, t - started);
    if (ack.outcome === 'refused') {
      await write(async (trx) => {
        await settleCommand(trx, command.commandId, {
          status: 'refused',
          reason: ack.reason ?? null,
          ackedAt: t,
        });
        await insertVehicleAck(trx, check.evidence);
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'vehicle_refused',
          outcome: 'denied',
          code: ack.reason ?? 'UNSPECIFIED',
          detail: { commandId: command.commandId, action: command.action, locked: ack.locked },
        });
      });
      return { kind: 'refused', ack };
    }
    const executed = { kind: 'executed' as const, ack, roundTripMs: t - started };
    await write(async (trx) => {
      await settleCommand(trx, command.commandId, { status: 'executed', reason: null, ackedAt: t });
      await insertVehicleAck(trx, check.evidence);
      await onExecuted?.(trx, executed);
    });
    return executed;
  }

  /**
   * No ack in time (PROTOCOL.md §6.2). A PUBACK from the broker is not delivery to the car, so once published the
   * command may have run; before answering, the gateway asks the car for its state, which settles the command when
   * the car answers: executed (the ack was lost) or not executed (nothing happened, and it will not run later).
   * Only without an answer does the request end with mayHaveSucceeded: true.
   */
  async function afterTimeout(d: DeliveryRecord, command: Command, waitedMs: number): Promise<Sent> {
    await write(async (trx) => {
      // Conditional: a late ack may have settled the command since the wait ended (reconcile.ts).
      const moved = await trx
        .updateTable('commands')
        .set({ status: 'timeout', reason: 'NO_ACK' })
        .where('id', '=', command.commandId)
        .where('status', '=', 'sent')
        .executeTakeFirst();
      if (Number(moved.numUpdatedRows) !== 1) return;
      await appendEvent(trx, d.id, {
        at: now(),
        kind: 'command_timeout',
        outcome: 'denied',
        code: 'VEHICLE_UNREACHABLE',
        detail: { commandId: command.commandId, action: command.action, waitedMs },
      });
    });
    if (!deps.reconciler) return { kind: 'timeout' };
    const { status, locked } = await deps.reconciler.afterTimeout(d.vin, command.commandId, d.id);
    if (status === 'executed' || status === 'refused' || status === 'not_executed') {
      return { kind: 'reconciled', status, locked };
    }
    return { kind: 'timeout' };
  }

  function commandError(sent: Exclude<Sent, { kind: 'executed' }>): ApiError {
    if (sent.kind === 'broker_unavailable')
      return new ApiError('BROKER_UNAVAILABLE', { mayHaveSucceeded: false });
    if (sent.kind === 'ack_invalid') {
      return new ApiError('VEHICLE_ACK_INVALID', {
        mayHaveSucceeded: true,
        detail: `the ack did not verify (${sent.code}); the car may have acted (the token expires on its own)`,
      });
    }
    if (sent.kind === 'timeout') {
      return new ApiError('VEHICLE_UNREACHABLE', {
        mayHaveSucceeded: true,
        detail: `no ack within ${policy.commandTimeoutMs} ms and no answer to a state query; the car may have acted (the token expires on its own)`,
      });
    }
    if (sent.kind === 'reconciled') {
      if (sent.status === 'refused') {
        return new ApiError('VEHICLE_REFUSED', {
          mayHaveSucceeded: false,
          detail: 'the vehicle refused (its ack came late)',
        });
      }
      if (sent.status === 'not_executed') {
        return new ApiError('VEHICLE_UNREACHABLE', {
          mayHaveSucceeded: false,
          detail:
            'no ack in time; the car answered a state query without having acted, so it will not act on this command',
        });
      }
      return new ApiError('VEHICLE_REFUSED', {
        detail: 'the car acted (its ack was lost) but reports itself unlocked',
      });
    }
    return new ApiError('VEHICLE_REFUSED', {
      mayHaveSucceeded: false,
      detail: `the vehicle refused: ${sent.ack.reason ?? 'unspecified'}`,
      extra: { vehicleReason: sent.ack.reason ?? null },
    });
  }

  /** The car could not be confirmed locked: on the timeline, vehicle.lock_unconfirmed once, and a retry later. */
  async function lockUnconfirmed(
    d: DeliveryRecord,
    cause: RelockCause,
    code: string,
    detail: object,
    retryAt: number | undefined,
  ): Promise<void> {
    const t = now();
    await write(async (trx) => {
      const current = await findDelivery(trx, d.id);
      await updateDelivery(trx, d.id, {
        updatedAt: t,
        lockUnconfirmedAt: current?.lockUnconfirmedAt ?? t,
        // The driver's own attempt leaves the watchdog's schedule as it was; a gateway attempt backs off.
        ...(cause === 'driver' ? {} : { relockRetryAt: retryAt ?? t + policy.relockAfterMs }),
      });
      await appendEvent(trx, d.id, {
        at: t,
        kind: 'lock_unconfirmed',
        outcome: 'denied',
        code,
        detail: { cause, ...detail },
      });
      if (current?.lockUnconfirmedAt === null) {
        await emit(trx, d, 'vehicle.lock_unconfirmed', { cause, code, ...detail }, t);
      }
    });
  }

  /** Sends a lock for `cause` and records the outcome; the caller holds the delivery's mutex. */
  async function lockHeld(
    d: DeliveryRecord,
    cause: RelockCause,
    detail: Record<string, unknown>,
    retryAt?: number,
  ): Promise<Sent> {
    // A lock token is not capped by the window: re-locking must stay possible after it ends.
    const prepared = await prepareCommand(d, 'lock', Number.MAX_SAFE_INTEGER);
    const command = await write(async (trx) => {
      await appendEvent(trx, d.id, {
        at: now(),
        kind: 'lock_granted',
        outcome: 'granted',
        code: null,
        detail: { cause, ...detail },
      });
      await prepared.record(trx);
      return prepared.command;
    });
    const sent = await send(d, command, async (trx, executed) => {
      if (!executed.ack.locked) return;
      await confirmLocked(trx, d, LOCKED_KIND[cause], cause, {
        commandId: command.commandId,
        locked: true,
        carTime: executed.ack.at,
        roundTripMs: executed.roundTripMs,
      });
    });
    if (!lockedBy(sent)) {
      // A lock settled by the reconciler was recorded by it (vehicle_locked, settledBy).
      await lockUnconfirmed(d, cause, unconfirmedCode(sent), { commandId: command.commandId }, retryAt);
    }
    return sent;
  }

  /** Whether the car confirmed it is locked after this lock: its ack, or the evidence that settled it late. */
  const lockedBy = (sent: Sent): boolean =>
    (sent.kind === 'executed' && sent.ack.locked) ||
    (sent.kind === 'reconciled' && sent.status === 'executed' && sent.locked === true);

  function unconfirmedCode(sent: Sent): string {
    switch (sent.kind) {
      case 'executed':
        return 'ACK_REPORTS_UNLOCKED';
      case 'refused':
        return sent.ack.reason ?? 'UNSPECIFIED';
      case 'timeout':
        return 'VEHICLE_UNREACHABLE';
      case 'ack_invalid':
        return sent.code;
      case 'reconciled':
        return sent.status === 'executed' ? 'ACK_REPORTS_UNLOCKED' : sent.status.toUpperCase();
      case 'broker_unavailable':
        return 'BROKER_UNAVAILABLE';
    }
  }

  /** Locks the car for `cause` if it may be open for this delivery; the caller holds the mutex. */
  async function relockHeld(
    id: string,
    cause: Exclude<RelockCause, 'driver'>,
    options: RelockOptions = {},
  ): Promise<RelockOutcome> {
    const d = await load(id);
    if (!carMayBeOpen(d)) return 'not_open';
    const vehicle = await findVehicle(db, d.vin);
    // Securing the car is the last thing unlinking does; otherwise an unlinked vehicle gets no more commands.
    if (
      !vehicle ||
      (vehicle.unlinkedAt !== null && cause !== 'unlink') ||
      !vehicle.consent.includes('lock')
    ) {
      logger.warn(
        { event: 'relock.skipped', deliveryId: id, cause },
        'no lock sent: vehicle unlinked or lock not consented',
      );
      return 'skipped';
    }
    const sent = await lockHeld(d, cause, {}, options.retryAt);
    return lockedBy(sent) ? 'locked' : 'unconfirmed';
  }

  /** Locks the car for this delivery, after any command in flight for it (block, cancel, watchdog, unlink). */
  function relock(
    id: string,
    cause: Exclude<RelockCause, 'driver'>,
    options: RelockOptions = {},
  ): Promise<RelockOutcome> {
    return mutex.run(id, () => relockHeld(id, cause, options));
  }

  async function unlock(id: string, input: UnlockInput): Promise<{ status: 'unlocked' }> {
    return exclusive(id, async () => {
      let d = await load(id);
      const t = now();
      const kind = 'unlock_requested';
      const ctx = { driverId: input.driverId, packageId: input.packageId, position: input.position };
      // A relocked delivery (the car locked itself) may be opened again, within its unlocks.
      if (d.status !== 'scheduled' && d.status !== 'unlocked' && d.status !== 'relocked') {
        return deny(d, kind, 'DELIVERY_NOT_ACTIVE', { ...ctx, status: d.status });
      }
      const vehicle = await findVehicle(db, d.vin);
      if (!linked(vehicle)) return deny(d, kind, 'VEHICLE_NOT_LINKED', ctx);
      if (d.blocked || vehicle.blocked) {
        return deny(d, kind, 'ACCESS_BLOCKED', { ...ctx, by: d.blocked ? 'delivery' : 'vehicle' });
      }
      if (!vehicle.consent.includes('unlock'))
        return deny(d, kind, 'ACTION_NOT_CONSENTED', { ...ctx, action: 'unlock' });
      if (input.driverId !== d.driverId) return deny(d, kind, 'DRIVER_NOT_ASSIGNED', ctx);
      if (t < d.windowStart || t >= d.windowEnd) return deny(d, kind, 'OUTSIDE_WINDOW', { ...ctx, at: t });
      if (!d.packageIds.includes(input.packageId)) return deny(d, kind, 'PACKAGE_NOT_IN_DELIVERY', ctx);
      const location = await findLocation(db, d.locationId);
      const distance = location ? distanceM(input.position, location) : Number.POSITIVE_INFINITY;
      if (!location || distance > location.radiusM) {
        return deny(d, kind, 'DRIVER_NOT_AT_LOCATION', { ...ctx, distanceM: Math.round(distance) });
      }
      const parking = parkingProblem(d, vehicle);
      if (parking) return deny(d, kind, parking.code, { ...ctx, ...parking.detail });

      // A retry after a lost ack: the earlier unlock is settled from the car's answer first, never re-sent blindly
      // (PROTOCOL.md §6.3).
      const earlier = (await deps.reconciler?.settleOutstandingUnlock(d.id, d.vin)) ?? 'none';
      if (earlier === 'unreachable') {
        return deny(
          d,
          kind,
          'VEHICLE_UNREACHABLE',
          { ...ctx, reason: 'EARLIER_UNLOCK_UNSETTLED' },
          {
            error: {
              mayHaveSucceeded: true,
              detail: 'an earlier unlock is unacknowledged and the car does not answer; nothing new was sent',
            },
          },
        );
      }
      if (earlier === 'executed') {
        // The earlier unlock opened the car (its ack was lost): this retry is answered without a new command.
        const at = now();
        await write((trx) =>
          appendEvent(trx, d.id, {
            at,
            kind,
            outcome: 'info',
            code: null,
            detail: { ...ctx, alreadyUnlocked: true },
          }),
        );
        return { status: 'unlocked' };
      }
      if (earlier === 'answered') d = await load(id);
      if (d.unlocksUsed >= policy.maxUnlocks) return deny(d, kind, 'UNLOCK_LIMIT_REACHED', ctx);
      const release = await takeVehicleSlot(d, kind, ctx);
      try {
        return await sendUnlock(d, ctx, distance);
      } finally {
        release();
      }
    });
  }

  /** Takes the vehicle's command budget or refuses with 429 (and a timeline entry); nothing is published. */
  async function takeVehicleSlot(
    d: DeliveryRecord,
    kind: string,
    ctx: Record<string, unknown>,
  ): Promise<() => void> {
    const slot = deps.limiter?.acquire(d.vin) ?? { ok: true as const, release() {} };
    if (slot.ok) return () => slot.release();
    return deny(
      d,
      kind,
      'VEHICLE_RATE_LIMITED',
      { ...ctx, reason: slot.reason, retryAfterS: slot.retryAfterS },
      {
        error: {
          retryAfterS: slot.retryAfterS,
          mayHaveSucceeded: false,
          detail:
            slot.reason === 'IN_FLIGHT'
              ? 'another command to this vehicle is in flight'
              : 'too many commands to this vehicle',
        },
      },
    );
  }

  /** Reserves one unlock, records the grant, mints and sends the command; the caller holds the delivery. */
  async function sendUnlock(
    d: DeliveryRecord,
    ctx: Record<string, unknown>,
    distance: number,
  ): Promise<{ status: 'unlocked' }> {
    const t = now();
    const prepared = await prepareCommand(d, 'unlock', d.windowEnd);
    const command = await write(async (trx) => {
      // Reserve the unlock only if nobody else used it meanwhile (another replica, say).
      const reserved = await trx
        .updateTable('deliveries')
        .set({ unlocks_used: d.unlocksUsed + 1, updated_at: t })
        .where('id', '=', d.id)
        .where('unlocks_used', '=', d.unlocksUsed)
        .executeTakeFirst();
      if (Number(reserved.numUpdatedRows) !== 1) throw new ApiError('UNLOCK_LIMIT_REACHED');
      await appendEvent(trx, d.id, {
        at: t,
        kind: 'unlock_granted',
        outcome: 'granted',
        code: null,
        detail: {
          ...ctx,
          distanceM: Math.round(distance),
          checks: [
            'status',
            'linked',
            'blocked',
            'consent',
            'driver',
            'window',
            'package',
            'location',
            'parking',
            'unlocks',
          ],
        },
      });
      await prepared.record(trx);
      return prepared.command;
    });
    // Read in the unit that records the opening: whether the owner blocked, or cancelled, while the car opened.
    let after: BlockedOrCancelled | null = null;
    const sent = await send(d, command, async (trx, executed) => {
      await outcomes.opened(
        trx,
        d,
        {
          commandId: command.commandId,
          locked: executed.ack.locked,
          carTime: executed.ack.at,
          roundTripMs: executed.roundTripMs,
        },
        executed.ack.at,
      );
      after = await blockedOrCancelled(trx, d);
    });
    if (sent.kind !== 'executed' && (sent.kind !== 'reconciled' || sent.status !== 'executed')) {
      // A command the reconciler settled was recorded by it (the unlock given back when the car did not open).
      if (sent.kind === 'refused') {
        // The car did not open: the reserved unlock is given back. Relative, because the reconciler may have
        // settled an earlier unlock of this delivery meanwhile.
        const at = now();
        await write((trx) =>
          trx
            .updateTable('deliveries')
            .set((eb) => ({ unlocks_used: eb('unlocks_used', '-', 1), updated_at: at }))
            .where('id', '=', d.id)
            .where('unlocks_used', '>=', 1)
            .execute(),
        );
      } else if (sent.kind === 'timeout' || sent.kind === 'ack_invalid') {
        // No (verified) ack and no answer: the car may have opened. Count it as possibly open so the watchdog locks
        // it after the relock time (harmless if it never opened); its car time is unknown, so no report completes it.
        const at = now();
        await write((trx) =>
          updateDelivery(trx, d.id, { unlockedAt: at, unlockedCarAt: null, relockedAt: null, updatedAt: at }),
        );
      }
      throw commandError(sent);
    }
    // The owner may have blocked, or cancelled, while the car was opening: it is locked again at once. An unlock
    // the reconciler settled is read afresh.
    const seen: BlockedOrCancelled = after ?? (await blockedOrCancelled(db, d));
    if (seen.blocked) await relockHeld(d.id, 'block');
    else if (seen.cancelled) await relockHeld(d.id, 'cancel');
    return { status: 'unlocked' };
  }

  /** Whether the owner blocked the delivery or the vehicle, or cancelled the delivery, as `from` sees it now. */
  async function blockedOrCancelled(from: Db, d: DeliveryRecord): Promise<BlockedOrCancelled> {
    const fresh = await findDelivery(from, d.id);
    const owner = await findVehicle(from, d.vin);
    return { blocked: !!fresh?.blocked || !!owner?.blocked, cancelled: fresh?.status === 'cancelled' };
  }

  async function lock(id: string, input: { driverId: string }): Promise<{ status: 'locked' }> {
    return exclusive(id, async () => {
      const d = await load(id);
      const kind = 'lock_requested';
      if (input.driverId !== d.driverId)
        return deny(d, kind, 'DRIVER_NOT_ASSIGNED', { driverId: input.driverId });
      // A relocked car is locked already; the driver's lock still goes out and completes the delivery. Locks take
      // no per-vehicle budget: a relock is never delayed, and each delivery gets at most one at a time.
      if (d.status !== 'unlocked' && d.status !== 'relocked') {
        return deny(d, kind, 'DELIVERY_NOT_ACTIVE', { status: d.status });
      }
      const vehicle = await findVehicle(db, d.vin);
      if (!vehicle?.consent.includes('lock'))
        return deny(d, kind, 'ACTION_NOT_CONSENTED', { action: 'lock' });
      const sent = await lockHeld(d, 'driver', input);
      if (lockedBy(sent)) return { status: 'locked' };
      if (sent.kind === 'executed')
        throw new ApiError('VEHICLE_REFUSED', { detail: 'the car acknowledged but reports unlocked' });
      throw commandError(sent);
    });
  }

  /**
   * Any action other than those with their own route: refused unless the owner consented to it, which the
   * gateway never records (consent is exactly unlock and lock), so deny by default.
   */
  async function requestAction(id: string, action: string): Promise<never> {
    const d = await load(id);
    const vehicle = await findVehicle(db, d.vin);
    if (!vehicle?.consent.includes(action)) {
      return deny(d, 'action_requested', 'ACTION_NOT_CONSENTED', { action });
    }
    throw new ApiError('ROUTE_NOT_FOUND', { detail: `no command ${action}` });
  }

  /**
   * Applies what a car reported to its deliveries: a parking confirmation the report contradicts is
   * withdrawn, and a locked report after an unlock confirms the relock (the car's own fail-safe, a key fob).
   * Deliveries with a command in flight are left to that command.
   */
  async function observe(vin: string, message: StateMessage): Promise<void> {
    if (message.type !== 'state') return;
    const t = now();
    for (const d of await deliveriesOf(db, vin, ['scheduled'])) {
      if (!d.parking || d.parking.invalidCode) continue;
      const moved = distanceM(message.position, d.parking.position);
      const code =
        moved > policy.parkingToleranceM
          ? 'VEHICLE_MOVED'
          : message.ignition !== 'off'
            ? 'VEHICLE_NOT_PARKED'
            : null;
      if (!code) continue;
      await write(async (trx) => {
        await updateDelivery(trx, d.id, { parking: { ...d.parking!, invalidCode: code }, updatedAt: t });
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'parking_invalidated',
          outcome: 'denied',
          code,
          detail: { movedM: Math.round(moved), ignition: message.ignition, seq: message.seq },
        });
      });
    }
    if (!message.locked || message.at === null) return;
    for (const d of await openDeliveriesOf(db, vin)) {
      // Only a report the car made after it opened for this delivery (its own clock) can say it locked again.
      if (mutex.held(d.id) || d.unlockedCarAt === null || message.at <= d.unlockedCarAt) continue;
      await write((trx) =>
        confirmLocked(trx, d, 'relocked_by_car', 'car', { carTime: message.at, seq: message.seq }),
      );
    }
  }

  /**
   * Revokes a delivery that is scheduled or in progress (TOKEN.md §10): cancels it here first, so no replica mints
   * a token for it again, then sends the car a signed revoke, so the car refuses the tokens already out and locks
   * if it is open. Revoking a cancelled delivery again re-sends the revoke. Not held off by a command in flight:
   * the car handles commands in order, so a revoke behind an unlock locks again what the unlock opened.
   */
  async function revokeDelivery(id: string): Promise<RevokeResult> {
    const d = await load(id);
    if (d.status === 'completed') {
      throw new ApiError('DELIVERY_NOT_ACTIVE', {
        detail: 'a completed delivery has nothing left to revoke',
      });
    }
    const t = now();
    // Like a lock, a revoke is not capped by the window: it must reach the car after the window too.
    const prepared = await prepareCommand(d, 'revoke', Number.MAX_SAFE_INTEGER);
    const command = await write(async (trx) => {
      if (d.status !== 'cancelled') {
        await updateDelivery(trx, d.id, { status: 'cancelled', updatedAt: t });
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'delivery_revoked',
          outcome: 'info',
          code: null,
          detail: { previousStatus: d.status },
        });
      }
      await prepared.record(trx);
      return prepared.command;
    });
    const sent = await send(d, command);
    if (sent.kind === 'reconciled') {
      // The reconciler recorded what the car said of it; a lost ack of an executed revoke still confirms it.
      if (sent.status === 'executed') {
        return { status: 'cancelled', vehicle: 'revoked', locked: sent.locked ?? true };
      }
      if (sent.status === 'refused') return { status: 'cancelled', vehicle: 'refused', reason: null };
    }
    if (sent.kind !== 'executed' && sent.kind !== 'refused')
      return { status: 'cancelled', vehicle: 'unconfirmed' };
    const { ack } = sent;
    // TOKEN_REVOKED: the car already holds this delivery as revoked (an earlier revoke reached it).
    const confirmed = ack.outcome === 'executed' || ack.reason === 'TOKEN_REVOKED';
    if (confirmed) {
      const at = now();
      await write((trx) =>
        appendEvent(trx, d.id, {
          at,
          kind: 'vehicle_revoked',
          outcome: 'granted',
          code: null,
          detail: { commandId: command.commandId, action: 'revoke', locked: ack.locked, carTime: ack.at },
        }),
      );
    }
    return confirmed
      ? { status: 'cancelled', vehicle: 'revoked', locked: ack.locked }
      : { status: 'cancelled', vehicle: 'refused', reason: ack.reason ?? null };
  }

  async function view(id: string): Promise<DeliveryView> {
    const d = await load(id);
    return { ...d, timeline: await timelineOf(db, id) };
  }

  return {
    schedule,
    confirmParking,
    unlock,
    lock,
    requestAction,
    relock,
    observe,
    revokeDelivery,
    view,
    emit,
    load,
  };
}

export type DeliveryService = ReturnType<typeof createDeliveryService>;
