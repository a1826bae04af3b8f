// Owns opening the car: every check before an unlock (status, link, certificate, block, consent, driver, window,
// package, location, parking, unlocks, the vehicle's budget), then reserving the unlock and sending it.
import { ApiError, type ErrorCode } from '../errors.ts';
import type { Db } from '../store/db.ts';
import { type DeliveryRecord, findDelivery, updateDelivery } from '../store/deliveries.ts';
import { findLocation, type LocationRecord } from '../store/locations.ts';
import { appendEvent } from '../store/timeline.ts';
import { findVehicleWithCertificate, type VehicleRecord } from '../store/vehicles.ts';
import type { Commands } from './commands.ts';
import type { DeliveryContext } from './context.ts';
import { distanceM } from './geo.ts';
import type { Relocking } from './relock.ts';

export interface UnlockInput {
  driverId: string;
  position: { lat: number; lon: number };
  packageId: string;
}

/** Locations the unlock check keeps in memory; the oldest go first. */
const KEPT_LOCATIONS = 10_000;

interface BlockedOrCancelled {
  blocked: boolean;
  cancelled: boolean;
}

export function createUnlocking(
  ctx: DeliveryContext,
  commands: Commands,
  relocking: Pick<Relocking, 'relockHeld'>,
) {
  const { deps, db, write, policy, now, outcomes, deny, load, exclusive, linked, certificateRevoked } = ctx;
  const { prepareCommand, send, commandError } = commands;
  const { relockHeld } = relocking;

  /**
   * A location, kept after its first read: a location is registered once and never changed or removed (the store
   * has no such write), so what is kept cannot go stale, on this replica or another. Were locations ever made
   * editable, this must go: the radius is one of the unlock's checks.
   */
  const locations = new Map<string, LocationRecord>();
  async function locationOf(id: string): Promise<LocationRecord | null> {
    const kept = locations.get(id);
    if (kept) return kept;
    const location = await findLocation(db, id);
    if (!location) return null;
    if (locations.size >= KEPT_LOCATIONS) locations.delete(locations.keys().next().value as string);
    locations.set(id, location);
    return location;
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
      const found = await findVehicleWithCertificate(db, d.vin);
      const vehicle = found?.vehicle ?? null;
      if (!linked(vehicle)) return deny(d, kind, 'VEHICLE_NOT_LINKED', ctx);
      // The broker refuses this car's certificate: nothing is sent to it, and nothing it says is trusted.
      if (await certificateRevoked(d.vin)) return deny(d, kind, 'VEHICLE_CERTIFICATE_REVOKED', ctx);
      if (d.blocked || vehicle.blocked) {
        return deny(d, kind, 'ACCESS_BLOCKED', { ...ctx, by: d.blocked ? 'delivery' : 'vehicle' });
      }
      if (!vehicle.consent.includes('unlock'))
        return deny(d, kind, 'ACTION_NOT_CONSENTED', { ...ctx, action: 'unlock' });
      if (input.driverId !== d.driverId) return deny(d, kind, 'DRIVER_NOT_ASSIGNED', ctx);
      if (t < d.windowStart || t >= d.windowEnd) return deny(d, kind, 'OUTSIDE_WINDOW', { ...ctx, at: t });
      if (!d.packageIds.includes(input.packageId)) return deny(d, kind, 'PACKAGE_NOT_IN_DELIVERY', ctx);
      const location = await locationOf(d.locationId);
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
        return await sendUnlock(d, ctx, distance, found?.certPem ?? null);
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
    const slot = (await deps.limiter?.acquire(d.vin)) ?? { ok: true as const, release() {} };
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
    pinnedPem: string | null,
  ): Promise<{ status: 'unlocked' }> {
    const t = now();
    const prepared = await prepareCommand(d, 'unlock', d.windowEnd);
    const command = await write(async (trx) => {
      // Reserve the unlock only if nobody else used it meanwhile (another replica, say), and only if the delivery
      // did not expire meanwhile (its window ended while the checks ran: expiry.ts).
      const reserved = await trx
        .updateTable('deliveries')
        .set({ unlocks_used: d.unlocksUsed + 1, updated_at: t })
        .where('id', '=', d.id)
        .where('unlocks_used', '=', d.unlocksUsed)
        .where('status', '<>', 'expired')
        .executeTakeFirst();
      if (Number(reserved.numUpdatedRows) !== 1) {
        const current = await findDelivery(trx, d.id);
        throw current?.status === 'expired'
          ? new ApiError('DELIVERY_NOT_ACTIVE', { detail: 'the delivery expired', mayHaveSucceeded: false })
          : new ApiError('UNLOCK_LIMIT_REACHED');
      }
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
            'certificate',
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
    const sent = await send(
      d,
      command,
      async (trx, executed) => {
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
      },
      pinnedPem,
    );
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
    // One read: the delivery's block and status, and its vehicle's block.
    const row = await from
      .selectFrom('deliveries as d')
      .leftJoin('vehicles as v', 'v.vin', 'd.vin')
      .select(['d.blocked as delivery_blocked', 'd.status', 'v.blocked as vehicle_blocked'])
      .where('d.id', '=', d.id)
      .executeTakeFirst();
    return {
      blocked: row?.delivery_blocked === 1 || row?.vehicle_blocked === 1,
      cancelled: row?.status === 'cancelled',
    };
  }

  return { unlock };
}
