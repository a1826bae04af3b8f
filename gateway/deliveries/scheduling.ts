// Owns a delivery before its car opens: scheduling it at a public location of the owner, confirming the
// car is parked there (asked of the car itself), refusing unconsented actions, and reading it with its timeline.
import { ApiError } from '../errors.ts';
import { type DeliveryRecord, insertDelivery, updateDelivery } from '../store/deliveries.ts';
import { findLocation } from '../store/locations.ts';
import { appendEvent, type TimelineEntry, timelineOf } from '../store/timeline.ts';
import { findVehicle } from '../store/vehicles.ts';
import type { DeliveryContext } from './context.ts';
import { distanceM } from './geo.ts';

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

export interface DeliveryView extends DeliveryRecord {
  timeline: TimelineEntry[];
}

export function createScheduling(ctx: DeliveryContext) {
  const { deps, db, write, policy, now, newId, emit, deny, load, exclusive, linked, certificateRevoked } =
    ctx;

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
      // A revoked car's answer could not be trusted, and the broker would not carry the query anyway.
      if (await certificateRevoked(d.vin)) {
        return deny(
          d,
          kind,
          'VEHICLE_CERTIFICATE_REVOKED',
          {},
          { ...info, error: { mayHaveSucceeded: false } },
        );
      }
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

  async function view(id: string): Promise<DeliveryView> {
    const d = await load(id);
    return { ...d, timeline: await timelineOf(db, id) };
  }

  return { schedule, confirmParking, requestAction, view };
}
