// Owns locking the car again: the driver's lock, relocks for the watchdog, a block, a cancel or an unlink,
// and recording a lock the car could not confirm (with a retry later).
import { ApiError } from '../errors.ts';
import { type DeliveryRecord, findDelivery, updateDelivery } from '../store/deliveries.ts';
import { appendEvent } from '../store/timeline.ts';
import { findVehicle, findVehicleWithCertificate } from '../store/vehicles.ts';
import type { Commands, Sent } from './commands.ts';
import type { DeliveryContext } from './context.ts';
import { carMayBeOpen } from './context.ts';
import type { RelockCause } from './outcomes.ts';

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

export function createRelocking(ctx: DeliveryContext, commands: Commands) {
  const {
    db,
    write,
    policy,
    now,
    logger,
    mutex,
    emit,
    confirmLocked,
    deny,
    load,
    exclusive,
    certificateRevoked,
  } = ctx;
  const { prepareCommand, send, commandError } = commands;

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
    /** The car's pinned certificate, when the caller read it with the vehicle. */
    pinnedPem?: string | null,
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
    const sent = await send(
      d,
      command,
      async (trx, executed) => {
        if (!executed.ack.locked) return;
        await confirmLocked(trx, d, LOCKED_KIND[cause], cause, {
          commandId: command.commandId,
          locked: true,
          carTime: executed.ack.at,
          roundTripMs: executed.roundTripMs,
        });
      },
      pinnedPem,
    );
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
    if (await certificateRevoked(d.vin)) {
      // Nothing is sent to a revoked car: the car may be open, so the owner hears lock_unconfirmed, and the watchdog
      // tries again later (a new certificate may be issued meanwhile). The car's own fail-safe still relocks it.
      logger.warn(
        { event: 'relock.refused', deliveryId: id, cause, code: 'VEHICLE_CERTIFICATE_REVOKED' },
        'no lock sent: the vehicle certificate is revoked',
      );
      await lockUnconfirmed(d, cause, 'VEHICLE_CERTIFICATE_REVOKED', {}, options.retryAt);
      return 'unconfirmed';
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
      const found = await findVehicleWithCertificate(db, d.vin);
      if (!found?.vehicle.consent.includes('lock'))
        return deny(d, kind, 'ACTION_NOT_CONSENTED', { action: 'lock' });
      if (await certificateRevoked(d.vin)) return deny(d, kind, 'VEHICLE_CERTIFICATE_REVOKED', input);
      const sent = await lockHeld(d, 'driver', input, undefined, found.certPem);
      if (lockedBy(sent)) return { status: 'locked' };
      if (sent.kind === 'executed')
        throw new ApiError('VEHICLE_REFUSED', { detail: 'the car acknowledged but reports unlocked' });
      throw commandError(sent);
    });
  }

  return { lock, relock, relockHeld };
}

export type Relocking = ReturnType<typeof createRelocking>;
