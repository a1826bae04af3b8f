// Owns the delivery lifecycle: scheduling, the driver checks before an unlock, commands to the car, the timeline.
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import {
  type Ack,
  buildClaims,
  type Command,
  mintAccessToken,
  PROTOCOL_VERSION,
  type TokenAction,
} from '../protocols/index.ts';
import { type AckRefusal, checkSignedAck } from './acks.ts';
import { ApiError, type ErrorCode } from './errors.ts';
import { distanceM } from './geo.ts';
import type { SigningKeyRing } from './signing-keys.ts';
import {
  appendEvent,
  type Db,
  type DeliveryRecord,
  findDelivery,
  findLocation,
  findVehicle,
  insertCommand,
  insertDelivery,
  insertVehicleAck,
  settleCommand,
  type TimelineEntry,
  timelineOf,
  updateDelivery,
} from './store/records.ts';
import type { Database } from './store/schema.ts';
import type { VehicleLink } from './vehicle-link.ts';

export interface DeliveryPolicy {
  /** Longest delivery window. */
  maxWindowMs: number;
  /** How many unlocks one delivery may use. */
  maxUnlocks: number;
  /** Requested lifetime of a command token (capped by the protocol maximum and the window end). */
  tokenTtlS: number;
  /** How long an HTTP request waits for the car's ack. */
  commandTimeoutMs: number;
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
  db: Kysely<Database>;
  link: () => VehicleLink | null;
  signer: Signer;
  policy: DeliveryPolicy;
  now: () => number;
  newId: () => string;
  logger: Logger;
  observer?: DeliveryObserver;
  /** The VIN's currently issued certificate, for acks signed after a rotation (acks.ts). */
  currentCertificate?: (vin: string, at: number) => string | null;
}

export interface ScheduleInput {
  vin: string;
  locationId: string;
  driverId: string;
  packageIds: string[];
  window: { start: number; end: number };
}

export interface UnlockInput {
  driverId: string;
  position: { lat: number; lon: number };
  packageId: string;
}

export interface DeliveryView extends DeliveryRecord {
  timeline: TimelineEntry[];
}

/**
 * The outcome of revoking a delivery. The delivery is cancelled at the gateway either way (no token is minted for
 * it again); `vehicle` says whether the car confirmed, with a signed ack, that it refuses the delivery's tokens.
 */
export type RevokeResult =
  | { status: 'cancelled'; vehicle: 'revoked'; locked: boolean }
  | { status: 'cancelled'; vehicle: 'refused'; reason: string | null }
  /** No verified ack in time: the revoke stays queued for the car, and its tokens expire on their own. */
  | { status: 'cancelled'; vehicle: 'unconfirmed' };

/** What came back for a command: a verified ack, or why there is none. */
type Exchange =
  | { kind: 'ack'; ack: Ack; at: number; roundTripMs: number; record: (trx: Db) => Promise<void> }
  | { kind: 'no_link' }
  | { kind: 'timeout' }
  | { kind: 'ack_invalid'; code: AckRefusal };

const tokenHash = (token: string): string => createHash('sha256').update(token).digest('base64url');

export function createDeliveryService(deps: DeliveryServiceDeps) {
  const { db, policy, now, newId, logger } = deps;
  // One command at a time per delivery in this process; the conditional update below guards across replicas.
  const busy = new Set<string>();

  async function deny(
    deliveryId: string,
    kind: string,
    code: ErrorCode,
    detail: Record<string, unknown>,
  ): Promise<never> {
    await appendEvent(db, deliveryId, { at: now(), kind, outcome: 'denied', code, detail });
    deps.observer?.denied(code);
    throw new ApiError(code);
  }

  async function load(id: string): Promise<DeliveryRecord> {
    const d = await findDelivery(db, id);
    if (!d) throw new ApiError('NOT_FOUND', { detail: `no delivery ${id}` });
    return d;
  }

  async function schedule(input: ScheduleInput): Promise<DeliveryRecord> {
    const t = now();
    const { start, end } = input.window;
    if (!(end > start) || end - start > policy.maxWindowMs || end <= t) {
      throw new ApiError('WINDOW_INVALID', {
        detail: `window must end after it starts, in the future, and last at most ${policy.maxWindowMs / 3_600_000} h`,
      });
    }
    const vehicle = await findVehicle(db, input.vin);
    if (!vehicle) throw new ApiError('VEHICLE_NOT_LINKED');
    const location = await findLocation(db, input.locationId);
    if (!location) throw new ApiError('NOT_FOUND', { detail: `no location ${input.locationId}` });
    if (location.ownerId !== vehicle.ownerId) throw new ApiError('LOCATION_NOT_OWNED');
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
    };
    await db.transaction().execute(async (trx) => {
      await insertDelivery(trx, delivery);
      await appendEvent(trx, delivery.id, {
        at: t,
        kind: 'delivery_scheduled',
        outcome: 'info',
        code: null,
        detail: {
          vin: delivery.vin,
          locationId: delivery.locationId,
          driverId: delivery.driverId,
          window: input.window,
        },
      });
    });
    return delivery;
  }

  /** Mints a token bound to a fresh command id, records the command, and returns what to publish. */
  async function prepareCommand(
    trx: Db,
    d: DeliveryRecord,
    action: TokenAction,
    notAfterMs: number,
  ): Promise<Command> {
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
    return { v: PROTOCOL_VERSION, type: 'command', commandId, deliveryId: d.id, action, token };
  }

  /**
   * Sends a prepared command and waits for its ack. A missing link or a timeout is settled here; an ack is
   * accepted only when it is bound to this command and signed by the car's pinned certificate (TOKEN.md §9), and
   * then the caller settles it with `record`, in the transaction that applies it, which also keeps the evidence.
   */
  async function exchange(d: DeliveryRecord, command: Command): Promise<Exchange> {
    const ids = { deliveryId: d.id, commandId: command.commandId, action: command.action, vin: d.vin };
    const settled = (outcome: CommandOutcome, reason: string | null, roundTripMs: number | null): void =>
      deps.observer?.commandSettled({ action: command.action, outcome, reason, roundTripMs });
    const link = deps.link();
    if (!link?.connected()) {
      logger.warn(
        { event: 'command.not_sent', ...ids, reason: 'BROKER_UNAVAILABLE' },
        'broker not connected',
      );
      settled('not_sent', 'BROKER_UNAVAILABLE', null);
      await settleCommand(db, command.commandId, {
        status: 'timeout',
        reason: 'BROKER_UNAVAILABLE',
        ackedAt: null,
      });
      return { kind: 'no_link' };
    }
    const started = now();
    const result = await link.send(d.vin, command, policy.commandTimeoutMs);
    const t = now();
    const detail = { commandId: command.commandId, action: command.action };
    if (result.kind === 'timeout') {
      await db.transaction().execute(async (trx) => {
        await settleCommand(trx, command.commandId, { status: 'timeout', reason: 'NO_ACK', ackedAt: null });
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'command_timeout',
          outcome: 'denied',
          code: 'VEHICLE_UNREACHABLE',
          detail: { ...detail, waitedMs: t - started },
        });
      });
      logger.warn({ event: 'command.timeout', ...ids, waitedMs: t - started }, 'no ack in time');
      settled('timeout', null, null);
      return { kind: 'timeout' };
    }
    const expected = { vin: d.vin, commandId: command.commandId, action: command.action, deliveryId: d.id };
    const check = await checkSignedAck(db, expected, result.ack, t, deps.currentCertificate);
    if (!check.ok) {
      logger.warn({ event: 'ack.rejected', ...ids, code: check.code }, 'ack refused');
      settled('timeout', check.code, null);
      await db.transaction().execute(async (trx) => {
        await settleCommand(trx, command.commandId, { status: 'timeout', reason: check.code, ackedAt: null });
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'ack_rejected',
          outcome: 'denied',
          code: check.code,
          detail,
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
    return {
      kind: 'ack',
      ack,
      at: t,
      roundTripMs: t - started,
      async record(trx) {
        const status = ack.outcome === 'executed' ? 'executed' : 'refused';
        await settleCommand(trx, command.commandId, { status, reason: ack.reason ?? null, ackedAt: t });
        await insertVehicleAck(trx, check.evidence);
      },
    };
  }

  /** Sends a door command and applies the car's verified ack; returns the ack's lock state. */
  async function dispatch(d: DeliveryRecord, command: Command): Promise<{ locked: boolean }> {
    const x = await exchange(d, command);
    if (x.kind === 'no_link') throw new ApiError('BROKER_UNAVAILABLE', { mayHaveSucceeded: false });
    if (x.kind === 'timeout') {
      throw new ApiError('VEHICLE_UNREACHABLE', {
        mayHaveSucceeded: true,
        detail: `no ack within ${policy.commandTimeoutMs} ms; the car may have acted (the token expires on its own)`,
      });
    }
    if (x.kind === 'ack_invalid') {
      throw new ApiError('VEHICLE_ACK_INVALID', {
        mayHaveSucceeded: true,
        detail: `the ack did not verify (${x.code}); the car may have acted (the token expires on its own)`,
      });
    }
    const { ack, at: t } = x;
    if (ack.outcome === 'refused') {
      await db.transaction().execute(async (trx) => {
        await x.record(trx);
        if (command.action === 'unlock') {
          // The car did not open: the reserved unlock is given back (d holds the count from before it).
          await updateDelivery(trx, d.id, { unlocksUsed: d.unlocksUsed, updatedAt: t });
        }
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'vehicle_refused',
          outcome: 'denied',
          code: ack.reason ?? 'UNSPECIFIED',
          detail: { commandId: command.commandId, action: command.action, locked: ack.locked },
        });
      });
      throw new ApiError('VEHICLE_REFUSED', {
        mayHaveSucceeded: false,
        detail: `the vehicle refused: ${ack.reason ?? 'unspecified'}`,
        extra: { vehicleReason: ack.reason ?? null },
      });
    }
    await db.transaction().execute(async (trx) => {
      await x.record(trx);
      const kind = command.action === 'unlock' ? 'vehicle_unlocked' : 'vehicle_locked';
      await appendEvent(trx, d.id, {
        at: t,
        kind,
        outcome: 'granted',
        code: null,
        detail: {
          commandId: command.commandId,
          locked: ack.locked,
          carTime: ack.at,
          roundTripMs: x.roundTripMs,
          signedAck: true,
        },
      });
      // A delivery revoked meanwhile stays cancelled, whatever the car reported for an earlier command.
      if (command.action === 'unlock') {
        await updateDelivery(trx, d.id, { status: 'unlocked', updatedAt: t, unlessStatus: 'cancelled' });
      } else if (
        ack.locked &&
        (await updateDelivery(trx, d.id, { status: 'completed', updatedAt: t, unlessStatus: 'cancelled' }))
      ) {
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'delivery_completed',
          outcome: 'info',
          code: null,
          detail: {},
        });
      }
    });
    return { locked: ack.locked };
  }

  async function exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    if (busy.has(id))
      throw new ApiError('DELIVERY_NOT_ACTIVE', { detail: 'another command for this delivery is in flight' });
    busy.add(id);
    try {
      return await fn();
    } finally {
      busy.delete(id);
    }
  }

  async function unlock(id: string, input: UnlockInput): Promise<{ status: 'unlocked' }> {
    return exclusive(id, async () => {
      const d = await load(id);
      const t = now();
      const kind = 'unlock_requested';
      const ctx = { driverId: input.driverId, packageId: input.packageId, position: input.position };
      if (d.status !== 'scheduled' && d.status !== 'unlocked') {
        return deny(d.id, kind, 'DELIVERY_NOT_ACTIVE', { ...ctx, status: d.status });
      }
      if (input.driverId !== d.driverId) return deny(d.id, kind, 'DRIVER_NOT_ASSIGNED', ctx);
      if (t < d.windowStart || t >= d.windowEnd) return deny(d.id, kind, 'OUTSIDE_WINDOW', { ...ctx, at: t });
      if (!d.packageIds.includes(input.packageId)) return deny(d.id, kind, 'PACKAGE_NOT_IN_DELIVERY', ctx);
      const location = await findLocation(db, d.locationId);
      const distance = location ? distanceM(input.position, location) : Number.POSITIVE_INFINITY;
      if (!location || distance > location.radiusM) {
        return deny(d.id, kind, 'DRIVER_NOT_AT_LOCATION', { ...ctx, distanceM: Math.round(distance) });
      }
      if (d.unlocksUsed >= policy.maxUnlocks) return deny(d.id, kind, 'UNLOCK_LIMIT_REACHED', ctx);

      const command = await db.transaction().execute(async (trx) => {
        // Reserve the unlock only if nobody else used it meanwhile (another replica, say).
        const reserved = await trx
          .updateTable('deliveries')
          .set({ unlocks_used: d.unlocksUsed + 1, updated_at: t })
          .where('id', '=', d.id)
          .where('unlocks_used', '=', d.unlocksUsed)
          .executeTakeFirst();
        if (Number(reserved.numUpdatedRows) !== 1) {
          deps.observer?.denied('UNLOCK_LIMIT_REACHED');
          throw new ApiError('UNLOCK_LIMIT_REACHED');
        }
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'unlock_granted',
          outcome: 'granted',
          code: null,
          detail: {
            ...ctx,
            distanceM: Math.round(distance),
            checks: ['driver', 'window', 'package', 'location', 'unlocks'],
          },
        });
        return prepareCommand(trx, d, 'unlock', d.windowEnd);
      });
      logger.info(
        {
          event: 'command.sent',
          deliveryId: d.id,
          commandId: command.commandId,
          action: 'unlock',
          vin: d.vin,
          tokenSha256: tokenHash(command.token),
        },
        'unlock sent',
      );
      await dispatch(d, command);
      return { status: 'unlocked' };
    });
  }

  async function lock(id: string, input: { driverId: string }): Promise<{ status: 'locked' }> {
    return exclusive(id, async () => {
      const d = await load(id);
      const kind = 'lock_requested';
      if (input.driverId !== d.driverId)
        return deny(d.id, kind, 'DRIVER_NOT_ASSIGNED', { driverId: input.driverId });
      if (d.status !== 'unlocked') return deny(d.id, kind, 'DELIVERY_NOT_ACTIVE', { status: d.status });
      // A lock token is not capped by the window: re-locking must stay possible after it ends.
      const command = await db.transaction().execute(async (trx) => {
        await appendEvent(trx, d.id, {
          at: now(),
          kind: 'lock_granted',
          outcome: 'granted',
          code: null,
          detail: input,
        });
        return prepareCommand(trx, d, 'lock', Number.MAX_SAFE_INTEGER);
      });
      logger.info(
        {
          event: 'command.sent',
          deliveryId: d.id,
          commandId: command.commandId,
          action: 'lock',
          vin: d.vin,
          tokenSha256: tokenHash(command.token),
        },
        'lock sent',
      );
      const { locked } = await dispatch(d, command);
      if (!locked)
        throw new ApiError('VEHICLE_REFUSED', { detail: 'the car acknowledged but reports unlocked' });
      return { status: 'locked' };
    });
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
    const command = await db.transaction().execute(async (trx) => {
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
      // Like a lock, a revoke is not capped by the window: it must reach the car after the window too.
      return prepareCommand(trx, d, 'revoke', Number.MAX_SAFE_INTEGER);
    });
    logger.info(
      {
        event: 'command.sent',
        deliveryId: d.id,
        commandId: command.commandId,
        action: 'revoke',
        vin: d.vin,
        tokenSha256: tokenHash(command.token),
      },
      'revoke sent',
    );
    const x = await exchange(d, command);
    if (x.kind !== 'ack') return { status: 'cancelled', vehicle: 'unconfirmed' };
    const { ack } = x;
    // TOKEN_REVOKED: the car already holds this delivery as revoked (an earlier revoke reached it).
    const confirmed = ack.outcome === 'executed' || ack.reason === 'TOKEN_REVOKED';
    await db.transaction().execute(async (trx) => {
      await x.record(trx);
      await appendEvent(trx, d.id, {
        at: x.at,
        kind: confirmed ? 'vehicle_revoked' : 'vehicle_refused',
        outcome: confirmed ? 'granted' : 'denied',
        code: confirmed ? null : (ack.reason ?? 'UNSPECIFIED'),
        detail: { commandId: command.commandId, action: 'revoke', locked: ack.locked, carTime: ack.at },
      });
    });
    return confirmed
      ? { status: 'cancelled', vehicle: 'revoked', locked: ack.locked }
      : { status: 'cancelled', vehicle: 'refused', reason: ack.reason ?? null };
  }

  async function view(id: string): Promise<DeliveryView> {
    const d = await load(id);
    return { ...d, timeline: await timelineOf(db, id) };
  }

  return { schedule, unlock, lock, revokeDelivery, view };
}

export type DeliveryService = ReturnType<typeof createDeliveryService>;
