// Runs the verifiers and the simulated car against every published test vector (protocols/vectors/), and RFC 8037.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CompactSign, compactVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  AckSchema,
  keyRingFrom,
  kidFor,
  type ReplayGuard,
  TOKEN_ISSUER,
  TOKEN_STEPS,
  verifyAccessToken,
  verifyAckSignature,
  verifyKeyAnnouncement,
} from '../protocols/index.ts';
import { buildVectors, TestKeysFileSchema, type Vectors } from '../protocols/test-vectors.ts';
import { carRig } from './helpers/car-rig.ts';

const DIR = join(import.meta.dirname, '..', 'protocols', 'vectors');
const load = <T>(name: string): T => JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8')) as T;
const testKeys = TestKeysFileSchema.parse(load('test-keys'));
const tokens = load<Vectors['tokens']>('tokens');
const announcements = load<Vectors['announcements']>('announcements');
const commands = load<Vectors['commands']>('commands');
const acks = load<Vectors['acks']>('acks');

function replayFor(seen: string[], full: boolean): ReplayGuard {
  return { claim: (jti) => (seen.includes(jti) ? 'replayed' : full ? 'full' : 'ok') };
}

describe('token vectors', () => {
  const keys = keyRingFrom(tokens.trustedKeys);
  it('cover every step of the pipeline, and every refusal code', () => {
    const refused = tokens.cases.flatMap((c) => (c.expect.ok ? [] : [c.expect]));
    expect(new Set(refused.map((e) => e.step))).toEqual(new Set(TOKEN_STEPS.map((s) => s.step)));
    expect(new Set(refused.map((e) => e.code))).toEqual(new Set(TOKEN_STEPS.flatMap((s) => s.codes)));
  });

  it.each(tokens.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const verdict = await verifyAccessToken(c.token, {
      keys,
      issuer: tokens.issuer,
      vin: tokens.vin,
      action: c.action,
      commandId: c.commandId,
      deliveryId: c.deliveryId,
      now: c.now,
      replay: replayFor(c.seenJtis, c.replayFull),
      isRevoked: (id) => c.revoked.includes(id),
    });
    if (c.expect.ok) {
      expect(verdict).toMatchObject({ ok: true });
      expect(verdict.steps).toHaveLength(TOKEN_STEPS.length);
      return;
    }
    expect(verdict.ok ? 'accepted' : verdict.code).toBe(c.expect.code);
    // Every step before the failing one passed, in the documented order, and nothing ran after it.
    const failing = c.expect.step;
    const at = TOKEN_STEPS.findIndex((s) => s.step === failing);
    expect(verdict.steps.map((s) => s.step)).toEqual(TOKEN_STEPS.slice(0, at + 1).map((s) => s.step));
    expect(verdict.steps.slice(0, -1).every((s) => s.ok)).toBe(true);
  });
});

describe('key announcement vectors', () => {
  const keys = keyRingFrom(announcements.trustedKeys);
  it.each(announcements.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const verdict = await verifyKeyAnnouncement(c.announcement, {
      keys,
      issuer: announcements.issuer,
      seq: c.seq,
      now: c.now,
    });
    if (c.expect.ok) {
      expect(verdict.ok).toBe(true);
      return;
    }
    expect(verdict.ok ? 'accepted' : verdict.code).toBe(c.expect.code);
    expect(verdict.steps.at(-1)).toMatchObject({ step: c.expect.step, ok: false });
  });
});

describe('command vectors through a car', () => {
  const carKey = createPrivateKey({ key: testKeys.keys['car-a'] as never, format: 'jwk' });
  it.each(commands.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const rig = carRig({
      vin: commands.vin,
      now: commands.now,
      trustedKeys: commands.trustedKeys,
      signingKey: carKey,
    });
    const { ack } = await rig.car.handleCommand(Buffer.from(c.payload, 'utf8'));
    if (c.expect === null) {
      expect(ack).toBeNull();
      expect(rig.car.snapshot().locked).toBe(true);
      return;
    }
    const valid = AckSchema.parse(ack);
    expect({ outcome: valid.outcome, reason: valid.reason, locked: valid.locked }).toEqual({
      reason: undefined,
      ...c.expect,
    });
    expect(verifyAckSignature(valid, createPublicKey(carKey))).toEqual({ ok: true });
  });
});

describe('signed ack vectors', () => {
  it.each(acks.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const pinned = createPublicKey({ key: acks.publicKeys[c.pinned] as never, format: 'jwk' });
    expect(verifyAckSignature(AckSchema.parse(c.ack), pinned)).toEqual(c.expect);
  });
});

describe('the vector files', () => {
  it('are what the generator builds from the test keys (npm run vectors)', async () => {
    const built = await buildVectors(testKeys);
    // Ed25519 is deterministic; acks.json (ECDSA) is checked by verdict above instead.
    expect(tokens).toEqual(JSON.parse(JSON.stringify(built.tokens)));
    expect(announcements).toEqual(JSON.parse(JSON.stringify(built.announcements)));
    expect(commands).toEqual(JSON.parse(JSON.stringify(built.commands)));
  });

  it('label the private keys as public test keys', () => {
    expect(testKeys.warning).toMatch(/PUBLIC TEST KEYS/);
    for (const file of [tokens, announcements, commands, acks]) expect(file.warning).toBe(testKeys.warning);
  });
});

describe('RFC 8037 Appendix A (outside reference)', () => {
  const rfc = load<{
    privateJwk: { kty: string; crv: string; d: string; x: string };
    thumbprint: string;
    protectedHeader: string;
    payload: string;
    jws: string;
  }>('rfc8037');
  const privateKey = createPrivateKey({ key: rfc.privateJwk, format: 'jwk' });
  const publicKey = createPublicKey(privateKey);

  it('A.3: the key thumbprint, which is how kids are made, matches', async () => {
    expect(await kidFor(publicKey)).toBe(rfc.thumbprint);
  });

  it('A.4: signing "Example of Ed25519 signing" gives the RFC signature, and it verifies', async () => {
    const jws = await new CompactSign(new TextEncoder().encode(rfc.payload))
      .setProtectedHeader(JSON.parse(rfc.protectedHeader))
      .sign(privateKey);
    expect(jws).toBe(rfc.jws);
    const { payload } = await compactVerify(rfc.jws, publicKey, { algorithms: ['EdDSA'] });
    expect(new TextDecoder().decode(payload)).toBe(rfc.payload);
  });

  it('A.4: the RFC JWS is a valid signature but not an access token: refused at typ', async () => {
    const verdict = await verifyAccessToken(rfc.jws, {
      keys: keyRingFrom({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: rfc.privateJwk.x, kid: rfc.thumbprint }] }),
      issuer: TOKEN_ISSUER,
      vin: tokens.vin,
      action: 'unlock',
      commandId: 'cmd_1',
      deliveryId: 'dlv_1',
      now: tokens.now,
      replay: replayFor([], false),
      isRevoked: () => false,
    });
    expect(verdict.ok ? 'accepted' : verdict.code).toBe('TOKEN_TYP_INVALID');
  });
});
