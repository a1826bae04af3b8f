// The gateway keeps a car's ack only when the car's pinned certificate signed it for this very command (TOKEN.md §9).
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../gateway/errors.ts';
import { findVehicleAck } from '../gateway/store/commands.ts';
import { type Ack, AckSchema, signAck, verifyAckSignature } from '../protocols/index.ts';
import {
  CAR_VIN,
  type Loopback,
  OTHER_CAR_VIN,
  scheduleDelivery,
  startLoopback,
  unlockInput,
} from './helpers/loopback.ts';
import { DIALECTS } from './helpers/temp-store.ts';

let loop: Loopback;

const resign = (ack: Ack, key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey): Ack => {
  const { sig: _sig, ...unsigned } = ack;
  return signAck(unsigned, key);
};

/** Runs fn and returns the ApiError code it threw. */
async function codeOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'NO_ERROR';
  } catch (err) {
    if (err instanceof ApiError) return err.code;
    throw err;
  }
}

const lastCommandId = (): string => (loop.sent.at(-1) as { commandId: string }).commandId;

describe.each(DIALECTS)('on %s', (dialect) => {
  beforeAll(async () => {
    loop = await startLoopback({ dialect });
  });
  afterAll(async () => {
    await loop?.close();
  });

  describe('signed acks as evidence', () => {
    it('a verified ack is stored with the bytes it signs, and re-verifies offline against the pinned certificate', async () => {
      const id = await scheduleDelivery(loop);
      expect(await loop.deliveries.unlock(id, unlockInput)).toEqual({ status: 'unlocked' });
      const unlockEvidence = await findVehicleAck(loop.store.db, lastCommandId());
      expect(await loop.deliveries.lock(id, { driverId: 'driver-7' })).toEqual({ status: 'locked' });
      const lockEvidence = await findVehicleAck(loop.store.db, lastCommandId());
      expect(unlockEvidence).toMatchObject({
        vin: CAR_VIN,
        deliveryId: id,
        action: 'unlock',
        outcome: 'executed',
        locked: false,
      });
      expect(lockEvidence).toMatchObject({ action: 'lock', outcome: 'executed', locked: true });

      // An auditor needs only the row and the certificate: "the car reported locked" is checkable by anyone.
      const cert = new X509Certificate(readFileSync(loop.pki.vehicleCert(CAR_VIN), 'utf8'));
      const row = lockEvidence as NonNullable<typeof lockEvidence>;
      const ack = AckSchema.parse({ ...JSON.parse(row.payload), sig: row.sig });
      expect(verifyAckSignature(ack, cert.publicKey)).toEqual({ ok: true });
      expect(row.certSha256).toBe(cert.fingerprint256.replaceAll(':', '').toLowerCase());
      expect(verifyAckSignature({ ...ack, locked: false }, cert.publicKey)).toEqual({
        ok: false,
        code: 'ACK_SIGNATURE_INVALID',
      });
    });

    const forgeries: Array<{ name: string; code: string; forge: (ack: Ack) => Ack }> = [
      {
        name: 'signed by another car (its certified key)',
        code: 'ACK_SIGNATURE_INVALID',
        forge: (ack) => resign(ack, loop.otherCarKey),
      },
      {
        name: 'signed by a key nobody certified',
        code: 'ACK_SIGNATURE_INVALID',
        forge: (ack) => resign(ack),
      },
      {
        name: 'lock state altered by the broker',
        code: 'ACK_SIGNATURE_INVALID',
        forge: (ack) => ({ ...ack, locked: !ack.locked }),
      },
      {
        name: 'turned into a refusal by the broker',
        code: 'ACK_SIGNATURE_INVALID',
        forge: (ack) => ({ ...ack, outcome: 'refused', reason: 'TOKEN_EXPIRED' }),
      },
      {
        name: 'naming another car, signed by it',
        code: 'ACK_BINDING_MISMATCH',
        forge: (ack) => resign({ ...ack, vin: OTHER_CAR_VIN }, loop.otherCarKey),
      },
    ];
    it.each(forgeries)(
      'a forged ack ($name) is refused with $code: 502, no evidence kept, nothing applied',
      async ({ forge, code }) => {
        const id = await scheduleDelivery(loop);
        loop.network.tamper = (ack) => forge(ack);
        try {
          expect(await codeOf(() => loop.deliveries.unlock(id, unlockInput))).toBe('VEHICLE_ACK_INVALID');
        } finally {
          loop.network.tamper = null;
        }
        expect(await findVehicleAck(loop.store.db, lastCommandId())).toBeNull();
        const view = await loop.deliveries.view(id);
        expect(view.status).toBe('scheduled');
        expect(view.timeline.at(-1)).toMatchObject({ kind: 'ack_rejected', outcome: 'denied', code });
      },
    );

    it('an old ack re-sent for a new command is refused (ACK_BINDING_MISMATCH), and so is one re-labelled (ACK_SIGNATURE_INVALID)', async () => {
      const id = await scheduleDelivery(loop);
      await loop.deliveries.unlock(id, unlockInput);
      const old = (await findVehicleAck(loop.store.db, lastCommandId())) as NonNullable<
        Awaited<ReturnType<typeof findVehicleAck>>
      >;
      const oldAck = AckSchema.parse({ ...JSON.parse(old.payload), sig: old.sig });

      // The lock's real ack is swapped for the unlock's genuine, correctly signed ack (which says locked: false)…
      loop.network.tamper = (_ack, command) => ({ ...oldAck, commandId: command.commandId, action: 'lock' });
      expect(await codeOf(() => loop.deliveries.lock(id, { driverId: 'driver-7' }))).toBe(
        'VEHICLE_ACK_INVALID',
      );
      loop.network.tamper = () => oldAck;
      expect(await codeOf(() => loop.deliveries.lock(id, { driverId: 'driver-7' }))).toBe(
        'VEHICLE_ACK_INVALID',
      );
      const timeline = (await loop.deliveries.view(id)).timeline.filter((e) => e.kind === 'ack_rejected');
      expect(timeline.map((e) => e.code)).toEqual(['ACK_SIGNATURE_INVALID', 'ACK_BINDING_MISMATCH']);

      // …and with the genuine ack of this command the lock goes through.
      loop.network.tamper = null;
      expect(await loop.deliveries.lock(id, { driverId: 'driver-7' })).toEqual({ status: 'locked' });
    });

    it('a car without a certificate from the CA cannot be linked (VEHICLE_NOT_ENROLLED)', async () => {
      expect(
        await codeOf(() =>
          loop.vehicles.link({
            vin: 'YV1A22MK3F1900345',
            make: 'Volvo',
            model: 'XC90',
            year: 2015,
            provider: 'volvo-on-call',
            ownerId: 'o',
            consent: ['unlock', 'lock'],
          }),
        ),
      ).toBe('VEHICLE_NOT_ENROLLED');
    });
  });

  describe('vehicles linked before acks were signed', () => {
    it('get their certificate pinned at start, with the link-time checks, and never replaced', async () => {
      await scheduleDelivery(loop);
      const db = loop.store.db;
      const pinned = (
        await db.selectFrom('vehicles').select('cert_pem').where('vin', '=', CAR_VIN).executeTakeFirst()
      )?.cert_pem;
      await db.updateTable('vehicles').set({ cert_pem: null }).where('vin', '=', CAR_VIN).execute();
      expect(await loop.vehicles.pinMissingCertificates()).toEqual({ pinned: [CAR_VIN], unpinned: [] });
      expect(await loop.vehicles.pinMissingCertificates()).toEqual({ pinned: [], unpinned: [] });
      const after = (
        await db.selectFrom('vehicles').select('cert_pem').where('vin', '=', CAR_VIN).executeTakeFirst()
      )?.cert_pem;
      expect(after).toBe(pinned);
    });
  });
});
