// Revoking a scheduled or in-progress delivery: cancelled at the gateway, refused and relocked at the car (TOKEN.md §10).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../gateway/errors.ts';
import { findVehicleAck } from '../gateway/store/commands.ts';
import { type Command, encodeMessage } from '../protocols/index.ts';
import { type Loopback, scheduleDelivery, startLoopback, unlockInput } from './helpers/loopback.ts';
import { DIALECTS } from './helpers/temp-store.ts';

let loop: Loopback;

async function codeOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'NO_ERROR';
  } catch (err) {
    if (err instanceof ApiError) return err.code;
    throw err;
  }
}

const kinds = async (id: string) => (await loop.deliveries.view(id)).timeline.map((e) => e.kind);

describe.each(DIALECTS)('on %s', (dialect) => {
  beforeAll(async () => {
    loop = await startLoopback({ dialect });
  });
  afterAll(async () => {
    await loop?.close();
  });

  describe('revokeDelivery', () => {
    it('a scheduled delivery: cancelled, the car confirms with a signed ack, and no unlock is sent afterwards', async () => {
      const id = await scheduleDelivery(loop);
      expect(await loop.deliveries.revokeDelivery(id)).toEqual({
        status: 'cancelled',
        vehicle: 'revoked',
        locked: true,
      });
      const revoke = loop.sent.at(-1) as Command;
      expect(revoke).toMatchObject({ type: 'command', action: 'revoke', deliveryId: id });
      expect(await findVehicleAck(loop.store.db, revoke.commandId)).toMatchObject({
        action: 'revoke',
        outcome: 'executed',
      });
      expect(loop.rig.revocations.isRevoked(id)).toBe(true);

      const sent = loop.sent.length;
      expect(await codeOf(() => loop.deliveries.unlock(id, unlockInput))).toBe('DELIVERY_NOT_ACTIVE');
      expect(loop.sent.length).toBe(sent);
      expect(await kinds(id)).toEqual([
        'delivery_scheduled',
        'parking_confirmed',
        'delivery_revoked',
        'command_sent',
        'vehicle_revoked',
        'unlock_requested',
      ]);
    });

    it('an in-progress delivery: the open car locks at once, and the driver can no longer lock or unlock', async () => {
      const id = await scheduleDelivery(loop);
      await loop.deliveries.unlock(id, unlockInput);
      expect(loop.rig.car.snapshot().locked).toBe(false);
      expect(await loop.deliveries.revokeDelivery(id)).toEqual({
        status: 'cancelled',
        vehicle: 'revoked',
        locked: true,
      });
      expect(loop.rig.car.snapshot()).toMatchObject({ locked: true, relockDeadline: null });
      expect(await codeOf(() => loop.deliveries.lock(id, { driverId: 'driver-7' }))).toBe(
        'DELIVERY_NOT_ACTIVE',
      );
      expect((await loop.deliveries.view(id)).status).toBe('cancelled');
    });

    it('a token already out (its unlock timed out) that reaches the car after the revoke is refused: TOKEN_REVOKED', async () => {
      const id = await scheduleDelivery(loop);
      loop.network.deliver = false;
      try {
        expect(await codeOf(() => loop.deliveries.unlock(id, unlockInput))).toBe('VEHICLE_UNREACHABLE');
      } finally {
        loop.network.deliver = true;
      }
      const late = loop.sent.at(-1) as Command;
      await loop.deliveries.revokeDelivery(id);
      // The broker delivers the queued unlock late, within its token's lifetime.
      const { ack } = await loop.rig.car.handleCommand(Buffer.from(encodeMessage(late)));
      expect(ack).toMatchObject({ outcome: 'refused', reason: 'TOKEN_REVOKED', locked: true });
      expect(loop.rig.car.snapshot().locked).toBe(true);
    });

    it('with the car unreachable: cancelled, unconfirmed; revoking again once it is back is confirmed', async () => {
      const id = await scheduleDelivery(loop);
      loop.network.deliver = false;
      try {
        expect(await loop.deliveries.revokeDelivery(id)).toEqual({
          status: 'cancelled',
          vehicle: 'unconfirmed',
        });
      } finally {
        loop.network.deliver = true;
      }
      expect((await loop.deliveries.view(id)).status).toBe('cancelled');
      expect(await loop.deliveries.revokeDelivery(id)).toEqual({
        status: 'cancelled',
        vehicle: 'revoked',
        locked: true,
      });
      // A third revoke reaches a car that already holds it: TOKEN_REVOKED still counts as confirmed.
      expect(await loop.deliveries.revokeDelivery(id)).toMatchObject({ vehicle: 'revoked' });
      expect((await kinds(id)).filter((k) => k === 'delivery_revoked')).toHaveLength(1);
    });

    it('a revoke that overtakes an unlock in flight keeps the delivery cancelled and the car locked', async () => {
      const id = await scheduleDelivery(loop);
      loop.network.meanwhile = () => loop.deliveries.revokeDelivery(id);
      expect(await loop.deliveries.unlock(id, unlockInput)).toEqual({ status: 'unlocked' });
      expect((await loop.deliveries.view(id)).status).toBe('cancelled');
      expect(loop.rig.car.snapshot().locked).toBe(true);
    });

    it('a completed delivery has nothing to revoke: DELIVERY_NOT_ACTIVE', async () => {
      const id = await scheduleDelivery(loop);
      await loop.deliveries.unlock(id, unlockInput);
      await loop.deliveries.lock(id, { driverId: 'driver-7' });
      expect(await codeOf(() => loop.deliveries.revokeDelivery(id))).toBe('DELIVERY_NOT_ACTIVE');
    });
  });
});
