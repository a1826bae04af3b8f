// Owns checking a Curbside webhook on the receiver's side. Self-contained (node:crypto only): copy it as is.
//
//   const r = verifySignature(secret, req.headers['curbside-signature'], rawBody, Date.now(), 300);
//   if (!r.ok) return res.writeHead(400).end(r.reason);
//   // then de-duplicate on the Curbside-Event-Id header: a retry of the same event carries the same id.
import { createHmac, timingSafeEqual } from 'node:crypto';

export type VerifyResult =
  | { ok: true; timestamp: number }
  | {
      ok: false;
      reason:
        | 'SIGNATURE_MISSING'
        | 'SIGNATURE_MALFORMED'
        | 'SIGNATURE_MISMATCH'
        | 'TIMESTAMP_OUT_OF_TOLERANCE';
    };

/**
 * Checks `t=<unix s>,v1=<hex>` against HMAC-SHA256(secret, "<t>.<raw body>"). The timestamp must be within
 * toleranceS of now (ms): a captured request replayed later is refused. Several v1 entries are allowed (a
 * secret being rolled); any one matching suffices. The body must be the raw bytes received, not re-serialized.
 */
export function verifySignature(
  secret: string,
  header: string | string[] | undefined,
  body: string | Buffer,
  now: number,
  toleranceS = 300,
): VerifyResult {
  if (typeof header !== 'string' || header.length === 0) return { ok: false, reason: 'SIGNATURE_MISSING' };
  let t: number | null = null;
  const candidates: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't' && /^\d{1,12}$/.test(v)) t = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/.test(v)) candidates.push(Buffer.from(v, 'hex'));
  }
  if (t === null || candidates.length === 0) return { ok: false, reason: 'SIGNATURE_MALFORMED' };
  const expected = createHmac('sha256', secret).update(`${t}.`).update(body).digest();
  // Compare in constant time, and check every candidate, so timing says nothing about which one matched.
  let matched = false;
  for (const c of candidates) matched = timingSafeEqual(c, expected) || matched;
  if (!matched) return { ok: false, reason: 'SIGNATURE_MISMATCH' };
  if (Math.abs(Math.floor(now / 1000) - t) > toleranceS)
    return { ok: false, reason: 'TIMESTAMP_OUT_OF_TOLERANCE' };
  return { ok: true, timestamp: t };
}
