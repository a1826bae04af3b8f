// Key rotation (TOKEN.md §8): signed announcements the car trusts, an overlap, retirement, and the gateway's key ring.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyRingError } from '../gateway/errors.ts';
import type { Command } from '../protocols/index.ts';
import { createFileKeyStore } from '../simulator/key-store.ts';
import { type CarRig, carRig } from './helpers/car-rig.ts';
import { enrolled, forgeAnnouncement, forgeCommand, kidOf, NOW, publicJwk, VIN } from './helpers/forge.ts';
import { LOOP_NOW, type Loopback, scheduleDelivery, startLoopback, unlockInput } from './helpers/loopback.ts';

const outcome = async (r: CarRig, raw: Buffer) => {
  const { ack } = await r.car.handleCommand(raw);
  return ack?.outcome === 'executed' ? 'executed' : ack?.reason;
};

describe('at the car', () => {
  it('announce B signed by A: tokens under B are accepted, and under A too (the overlap)', async () => {
    const r = carRig({ vin: VIN, now: NOW, trustedKeys: await enrolled() });
    expect(await outcome(r, (await forgeCommand({ key: 'gateway-b' })).raw)).toBe('TOKEN_KID_UNKNOWN');
    const keys = [await publicJwk('gateway-a'), await publicJwk('gateway-b')];
    expect(await outcome(r, (await forgeAnnouncement(keys, 1)).raw)).toBe('executed');
    expect(r.keys.seq()).toBe(1);
    expect(await outcome(r, (await forgeCommand({ key: 'gateway-b', action: 'lock' })).raw)).toBe('executed');
    expect(await outcome(r, (await forgeCommand({ key: 'gateway-a', action: 'lock' })).raw)).toBe('executed');
  });

  it('retire A after an overlap: A works until retiredAt, then TOKEN_KID_RETIRED; B keeps working', async () => {
    const r = carRig({ vin: VIN, now: NOW, trustedKeys: await enrolled() });
    const retireAt = NOW + 330_000;
    await r.car.handleCommand(
      (await forgeAnnouncement([await publicJwk('gateway-a'), await publicJwk('gateway-b')], 1)).raw,
    );
    const retiring = [await publicJwk('gateway-a', retireAt), await publicJwk('gateway-b')];
    // Signed by the new key: B is trusted now, so it may announce.
    expect(await outcome(r, (await forgeAnnouncement(retiring, 2, { key: 'gateway-b' })).raw)).toBe(
      'executed',
    );

    r.setTime(retireAt - 1_000);
    expect(
      await outcome(r, (await forgeCommand({ key: 'gateway-a', at: retireAt - 1_000, action: 'lock' })).raw),
    ).toBe('executed');
    r.setTime(retireAt);
    expect(
      await outcome(r, (await forgeCommand({ key: 'gateway-a', at: retireAt, action: 'lock' })).raw),
    ).toBe('TOKEN_KID_RETIRED');
    expect(
      await outcome(r, (await forgeCommand({ key: 'gateway-b', at: retireAt, action: 'lock' })).raw),
    ).toBe('executed');
    // A retired key can no longer announce either.
    expect(await outcome(r, (await forgeAnnouncement(retiring, 3)).raw)).toBe('TOKEN_KID_RETIRED');
  });

  it('a replayed or rolled-back announcement is refused (KEYS_STALE) and changes nothing', async () => {
    const r = carRig({ vin: VIN, now: NOW, trustedKeys: await enrolled() });
    const first = await forgeAnnouncement([await publicJwk('gateway-a'), await publicJwk('gateway-b')], 5);
    await r.car.handleCommand(first.raw);
    const before = r.keys.ring();
    const replayed = Buffer.from(
      JSON.stringify({ v: 1, type: 'keys', commandId: 'cmd_again', announcement: first.announcement }),
    );
    expect(await outcome(r, replayed)).toBe('KEYS_STALE');
    expect(await outcome(r, (await forgeAnnouncement([await publicJwk('gateway-a')], 4)).raw)).toBe(
      'KEYS_STALE',
    );
    expect(r.keys.ring()).toBe(before);
    expect(r.keys.seq()).toBe(5);
  });

  it('an announcement cannot lift or postpone a retirement, nor leave the car without an active key', async () => {
    const retireAt = NOW + 60_000;
    const r = carRig({
      vin: VIN,
      now: NOW,
      trustedKeys: { keys: [await publicJwk('gateway-a', retireAt), await publicJwk('gateway-b')] },
    });
    expect(
      await outcome(
        r,
        (
          await forgeAnnouncement([await publicJwk('gateway-a'), await publicJwk('gateway-b')], 1, {
            key: 'gateway-b',
          })
        ).raw,
      ),
    ).toBe('KEYS_RETIREMENT_LIFTED');
    expect(
      await outcome(
        r,
        (
          await forgeAnnouncement(
            [await publicJwk('gateway-a', retireAt + 1), await publicJwk('gateway-b')],
            1,
            { key: 'gateway-b' },
          )
        ).raw,
      ),
    ).toBe('KEYS_RETIREMENT_LIFTED');
    expect(
      await outcome(
        r,
        (await forgeAnnouncement([await publicJwk('gateway-b', NOW)], 1, { key: 'gateway-b' })).raw,
      ),
    ).toBe('KEYS_NO_ACTIVE_KEY');
    expect(r.keys.seq()).toBe(0);
  });

  it('an announcement from a key the car does not trust, or forged under one it does, is refused', async () => {
    const r = carRig({ vin: VIN, now: NOW, trustedKeys: await enrolled() });
    const evil = [await publicJwk('attacker')];
    expect(await outcome(r, (await forgeAnnouncement(evil, 1, { key: 'attacker' })).raw)).toBe(
      'TOKEN_KID_UNKNOWN',
    );
    expect(
      await outcome(
        r,
        (await forgeAnnouncement(evil, 1, { key: 'attacker', kid: await kidOf('gateway-a') })).raw,
      ),
    ).toBe('TOKEN_SIGNATURE_INVALID');
    expect([...r.keys.ring().keys()]).toEqual([await kidOf('gateway-a')]);
  });

  it('announced keys and retirements survive a restart (a reboot cannot bring a retired key back)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keys-restart-'));
    try {
      const boot = async () =>
        carRig({
          vin: VIN,
          now: NOW,
          trustedKeys: await enrolled(),
          keys: createFileKeyStore({ file: join(dir, 'keys.json'), enrolled: await enrolled() }),
        });
      const first = await boot();
      await first.car.handleCommand(
        (await forgeAnnouncement([await publicJwk('gateway-a', NOW), await publicJwk('gateway-b')], 1)).raw,
      );
      const restarted = await boot();
      expect(restarted.keys.seq()).toBe(1);
      expect(await outcome(restarted, (await forgeCommand({ key: 'gateway-a' })).raw)).toBe(
        'TOKEN_KID_RETIRED',
      );
      expect(await outcome(restarted, (await forgeCommand({ key: 'gateway-b' })).raw)).toBe('executed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('at the gateway: a key ring with one active kid', () => {
  let loop: Loopback;
  beforeAll(async () => {
    loop = await startLoopback();
  });
  afterAll(async () => {
    await loop?.close();
  });
  const kidOfLastToken = (): string => {
    const token = (loop.sent.at(-1) as Command).token;
    return JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString()).kid;
  };

  it('a whole rotation: add, announce, activate, retire with an overlap, remove', async () => {
    const oldKid = loop.signingKeys.active().kid;
    const added = await loop.signingKeys.add(generateKeyPairSync('ed25519').privateKey);
    expect(loop.signingKeys.active().kid).toBe(oldKid);

    const first = await scheduleDelivery(loop);
    // 1. Cars learn the new key while the old one still signs.
    const announced = await loop.rotation.announce(
      [loop.rig.car.vin],
      await loop.rotation.sign({ seq: LOOP_NOW }),
    );
    expect(announced).toEqual([{ vin: loop.rig.car.vin, result: 'accepted' }]);
    await loop.deliveries.unlock(first, unlockInput);
    expect(kidOfLastToken()).toBe(oldKid);

    // 2. The gateway signs with the new key; the car accepts it.
    loop.signingKeys.activate(added.kid);
    await loop.deliveries.lock(first, { driverId: 'driver-7' });
    expect(kidOfLastToken()).toBe(added.kid);

    // 3. The old key retires after an overlap covering every token it signed (lifetime + skew).
    const retireAt = LOOP_NOW + 330_000;
    const retire = await loop.rotation.sign({ seq: LOOP_NOW + 1, retire: { [oldKid]: retireAt } });
    expect(await loop.rotation.announce([loop.rig.car.vin], retire)).toEqual([
      { vin: loop.rig.car.vin, result: 'accepted' },
    ]);
    expect(loop.rig.keys.ring().get(oldKid)?.retiredAt).toBe(retireAt);
    // Sending it again is harmless: the car already holds it.
    expect(await loop.rotation.announce([loop.rig.car.vin], retire)).toEqual([
      { vin: loop.rig.car.vin, result: 'already-current' },
    ]);

    // 4. After the overlap the old key can go; the active key never can.
    expect(() => loop.signingKeys.remove(added.kid)).toThrow(KeyRingError);
    loop.signingKeys.remove(oldKid);
    expect(loop.signingKeys.kids()).toEqual([added.kid]);
  });

  it('refuses to activate a key it does not hold, and keys that are not Ed25519', async () => {
    expect(() => loop.signingKeys.activate('no-such-kid-000')).toThrow(
      expect.objectContaining({ code: 'SIGNING_KEY_UNKNOWN' }),
    );
    await expect(
      loop.signingKeys.add(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey),
    ).rejects.toMatchObject({
      code: 'SIGNING_KEY_NOT_ED25519',
    });
  });
});
