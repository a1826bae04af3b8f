// The webhook signature (sender and receiver helper), sealed secrets and the retry backoff, with frozen time.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { backoffMs, DEFAULT_DISPATCH_POLICY } from '../gateway/webhooks/dispatcher.ts';
import { createSecretBox, deriveSecretKey } from '../gateway/webhooks/secret-box.ts';
import { newWebhookSecret, signatureHeader } from '../gateway/webhooks/signature.ts';
import { verifySignature } from '../gateway/webhooks/verify.ts';

const T0 = Date.parse('2026-03-01T12:00:00Z');
const secret = 'whsec_test-secret-0123456789';
const body = JSON.stringify({ id: 'evt_1', type: 'vehicle.unlocked', data: { commandId: 'cmd_1' } });

describe('webhook signatures', () => {
  it('matches a fixed vector: HMAC-SHA256 over "<t>.<body>"', () => {
    // printf '%s' '1772366400.{"a":1}' | openssl dgst -sha256 -hmac whsec_test-secret-0123456789
    expect(signatureHeader(secret, '{"a":1}', T0 + 999)).toBe(
      't=1772366400,v1=f9232322aba167abc214111ad087a594b15e20d62310b0e2f4e2e8157f3be953',
    );
  });

  it('verifies what the gateway signed, within the tolerance', () => {
    const header = signatureHeader(secret, body, T0);
    expect(verifySignature(secret, header, body, T0 + 299_000, 300)).toEqual({
      ok: true,
      timestamp: 1772366400,
    });
    expect(verifySignature(secret, header, Buffer.from(body), T0, 300).ok).toBe(true);
  });

  it('rejects a replay: the same request, resent after the tolerance', () => {
    const header = signatureHeader(secret, body, T0);
    expect(verifySignature(secret, header, body, T0 + 301_000, 300)).toEqual({
      ok: false,
      reason: 'TIMESTAMP_OUT_OF_TOLERANCE',
    });
    // A replayer cannot move the timestamp forward: it is part of what is signed.
    const moved = header.replace('t=1772366400', `t=${1772366400 + 301}`);
    expect(verifySignature(secret, moved, body, T0 + 301_000, 300)).toEqual({
      ok: false,
      reason: 'SIGNATURE_MISMATCH',
    });
  });

  it('rejects a changed body, another secret, and malformed or missing headers', () => {
    const header = signatureHeader(secret, body, T0);
    expect(verifySignature(secret, header, body.replace('cmd_1', 'cmd_2'), T0, 300).ok).toBe(false);
    expect(verifySignature('whsec_other', header, body, T0, 300)).toEqual({
      ok: false,
      reason: 'SIGNATURE_MISMATCH',
    });
    expect(verifySignature(secret, undefined, body, T0, 300)).toEqual({
      ok: false,
      reason: 'SIGNATURE_MISSING',
    });
    for (const bad of ['t=1772366400', 'v1=abc', 't=x,v1=00', `t=1772366400,v1=${'z'.repeat(64)}`]) {
      expect(verifySignature(secret, bad, body, T0, 300)).toEqual({
        ok: false,
        reason: 'SIGNATURE_MALFORMED',
      });
    }
  });

  it('accepts any one of several v1 signatures (a secret being rolled)', () => {
    const good = signatureHeader(secret, body, T0).split(',')[1] as string;
    const header = `t=1772366400,v1=${'0'.repeat(64)},${good}`;
    expect(verifySignature(secret, header, body, T0, 300).ok).toBe(true);
  });

  it('makes secrets of 256 random bits', () => {
    const a = newWebhookSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(newWebhookSecret()).not.toBe(a);
  });
});

describe('sealed webhook secrets', () => {
  const box = createSecretBox(deriveSecretKey('-----BEGIN PRIVATE KEY-----test'));

  it('opens what it sealed, and the sealed form does not contain the secret', () => {
    const sealed = box.seal('wh_1', secret);
    expect(sealed).not.toContain(secret);
    expect(sealed.startsWith('v1.')).toBe(true);
    expect(box.open('wh_1', sealed)).toBe(secret);
    expect(box.seal('wh_1', secret)).not.toBe(sealed);
  });

  it('refuses a sealed secret moved to another webhook, altered, or under another key', () => {
    const sealed = box.seal('wh_1', secret);
    expect(() => box.open('wh_2', sealed)).toThrow();
    const parts = sealed.split('.');
    parts[2] = Buffer.from('x'.repeat(10)).toString('base64url');
    expect(() => box.open('wh_1', parts.join('.'))).toThrow();
    expect(() => createSecretBox(randomBytes(32)).open('wh_1', sealed)).toThrow();
    expect(() => createSecretBox(randomBytes(16))).toThrow();
  });
});

describe('retry backoff', () => {
  const policy = { ...DEFAULT_DISPATCH_POLICY, baseDelayMs: 1_000, maxDelayMs: 60_000 };

  it('doubles per attempt, with jitter between half and all of it, capped', () => {
    expect([1, 2, 3, 4].map((a) => backoffMs(a, policy, () => 0))).toEqual([500, 1_000, 2_000, 4_000]);
    expect([1, 2, 3, 4].map((a) => backoffMs(a, policy, () => 1))).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(backoffMs(30, policy, () => 1)).toBe(60_000);
    expect(backoffMs(30, policy, () => 0)).toBe(30_000);
  });
});
