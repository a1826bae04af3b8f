// Owns the delivery lifecycle: scheduling, the driver checks before an unlock, commands to the car, the timeline.
import { createHash, type KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import {
  type Action,
  buildClaims,
  type Command,
  mintAccessToken,
  PROTOCOL_VERSION,
} from '../protocols/index.ts';
import { ApiError, type ErrorCode } from './errors.ts';
import { distanceM } from './geo.ts';
import { type DomainEvent, type Notify, noopNotify } from './notifications.ts';
import {
  appendEvent,
  type Db,
  type DeliveryRecord,
  findDelivery,
  findLocation,
  findVehicle,
  insertCommand,
  insertDelivery,
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
  privateKey: KeyObject;
  kid: string;
  issuer: string;
}

export interface DeliveryServiceDeps {
  db: Kysely<Database>;
  link: () => VehicleLink | null;
  signer: Signer;
  policy: DeliveryPolicy;
  now: () => number;
  newId: () => string;
  logger: Logger;
  /** Called inside the transaction of each decision it reports (the webhook outbox); a no-op by default. */
  notify?: Notify;
}

export interface ScheduleInput {
  vin: string;
  locationId: string;
  driverId: string;
  packageIds: string[];
  window: { start: number; end: number };
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

const tokenHash = (token: string): string => createHash('sha256').update(token).digest('base64url');

export function createDeliveryService(deps: DeliveryServiceDeps) {
  const { db, policy, now, newId, logger } = deps;
  // One command at a time per delivery in this process; the conditional update below guards across replicas.
  const busy = new Set<string>();
  const notify = deps.notify ?? noopNotify;

  /** Emits an event about a delivery, in the caller's transaction, with the car and its owner. */
  async function emit(
    trx: Db,
    deliveryId: string,
    type: DomainEvent['type'],
    data: Record<string, unknown>,
  ): Promise<void> {
    const d = await findDelivery(trx, deliveryId);
    const v = d ? await findVehicle(trx, d.vin) : null;
    if (!d || !v) return;
    await notify(trx, { type, deliveryId, vin: d.vin, ownerId: v.ownerId, at: now(), data });
  }

  async function deny(
    deliveryId: string,
    kind: string,
    code: ErrorCode,
    detail: Record<string, unknown>,
  ): Promise<never> {
    await db.transaction().execute(async (trx) => {
      await appendEvent(trx, deliveryId, { at: now(), kind, outcome: 'denied', code, detail });
      await emit(trx, deliveryId, 'access.denied', { kind, code });
    });
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
      carrierId: input.carrierId ?? null,
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
      await emit(trx, delivery.id, 'delivery.scheduled', {
        locationId: delivery.locationId,
        driverId: delivery.driverId,
        window: { start: new Date(start).toISOString(), end: new Date(end).toISOString() },
      });
    });
    return delivery;
  }

  /** Mints a token bound to a fresh command id, records the command, and returns what to publish. */
  async function prepareCommand(
    trx: Db,
    d: DeliveryRecord,
    action: Action,
    notAfterMs: number,
  ): Promise<Command> {
    const t = now();
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
    const token = await mintAccessToken({ privateKey: deps.signer.privateKey, kid: deps.signer.kid, claims });
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
        kid: deps.signer.kid,
      },
    });
    return { v: PROTOCOL_VERSION, type: 'command', commandId, deliveryId: d.id, action, token };
  }

  /** Sends a prepared command and settles it from the car's ack; returns the ack's lock state. */
  async function dispatch(d: DeliveryRecord, command: Command): Promise<{ locked: boolean }> {
    const link = deps.link();
    if (!link?.connected()) {
      await settleCommand(db, command.commandId, {
        status: 'timeout',
        reason: 'BROKER_UNAVAILABLE',
        ackedAt: null,
      });
      throw new ApiError('BROKER_UNAVAILABLE', { mayHaveSucceeded: false });
    }
    const started = now();
    const result = await link.send(d.vin, command, policy.commandTimeoutMs);
    const t = now();
    if (result.kind === 'timeout') {
      await db.transaction().execute(async (trx) => {
        await settleCommand(trx, command.commandId, { status: 'timeout', reason: 'NO_ACK', ackedAt: null });
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'command_timeout',
          outcome: 'denied',
          code: 'VEHICLE_UNREACHABLE',
          detail: { commandId: command.commandId, action: command.action, waitedMs: t - started },
        });
      });
      throw new ApiError('VEHICLE_UNREACHABLE', {
        mayHaveSucceeded: true,
        detail: `no ack within ${policy.commandTimeoutMs} ms; the car may have acted (the token expires on its own)`,
      });
    }
    const { ack } = result;
    if (ack.outcome === 'refused') {
      await db.transaction().execute(async (trx) => {
        await settleCommand(trx, command.commandId, {
          status: 'refused',
          reason: ack.reason ?? null,
          ackedAt: t,
        });
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
      await settleCommand(trx, command.commandId, { status: 'executed', reason: null, ackedAt: t });
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
          roundTripMs: t - started,
        },
      });
      if (command.action === 'unlock') {
        await updateDelivery(trx, d.id, { status: 'unlocked', updatedAt: t });
        await emit(trx, d.id, 'vehicle.unlocked', { commandId: command.commandId });
      } else if (ack.locked) {
        await updateDelivery(trx, d.id, { status: 'completed', updatedAt: t });
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'delivery_completed',
          outcome: 'info',
          code: null,
          detail: {},
        });
        await emit(trx, d.id, 'delivery.completed', { commandId: command.commandId });
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
        if (Number(reserved.numUpdatedRows) !== 1) throw new ApiError('UNLOCK_LIMIT_REACHED');
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
        { event: 'command.sent', deliveryId: d.id, commandId: command.commandId, action: 'lock', vin: d.vin },
        'lock sent',
      );
      const { locked } = await dispatch(d, command);
      if (!locked)
        throw new ApiError('VEHICLE_REFUSED', { detail: 'the car acknowledged but reports unlocked' });
      return { status: 'locked' };
    });
  }

  async function view(id: string): Promise<DeliveryView> {
    const d = await load(id);
    return { ...d, timeline: await timelineOf(db, id) };
  }

  return { schedule, unlock, lock, view };
}

export type DeliveryService = ReturnType<typeof createDeliveryService>;
