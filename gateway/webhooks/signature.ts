// Owns signing webhook bodies: HMAC-SHA256 over "<unix seconds>.<body>", sent as Curbside-Signature: t=…,v1=….
import { createHmac, randomBytes } from 'node:crypto';

export const SIGNATURE_HEADER = 'curbside-signature';
export const EVENT_ID_HEADER = 'curbside-event-id';
export const EVENT_TYPE_HEADER = 'curbside-event-type';

/** whsec_ and 256 random bits: shown once when the webhook is created. */
export const newWebhookSecret = (): string => `whsec_${randomBytes(32).toString('base64url')}`;

/** The header value for a body sent at nowMs; the timestamp is signed too, so a receiver can refuse replays. */
export function signatureHeader(secret: string, body: string, nowMs: number): string {
  const t = Math.floor(nowMs / 1000);
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  return `t=${t},v1=${v1}`;
}
