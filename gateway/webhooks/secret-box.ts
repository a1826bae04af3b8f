// Owns sealing webhook signing secrets at rest: AES-256-GCM, bound to the webhook id so rows cannot be swapped.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

export interface SecretBox {
  seal(webhookId: string, secret: string): string;
  open(webhookId: string, sealed: string): string;
}

const VERSION = 'v1';

/** Derives the 256-bit sealing key from key material the gateway already keeps secret (HKDF, RFC 5869). */
export function deriveSecretKey(material: string | Buffer, info = 'curbside webhook secrets v1'): Buffer {
  return Buffer.from(hkdfSync('sha256', material, 'curbside-gateway', info, 32));
}

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new Error('secret box key must be 32 bytes');
  return {
    seal(webhookId, secret) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(webhookId));
      const ct = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
      return [VERSION, iv, ct, cipher.getAuthTag()]
        .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
        .join('.');
    },
    open(webhookId, sealed) {
      const [version, iv, ct, tag] = sealed.split('.');
      if (version !== VERSION || !iv || !ct || !tag) throw new Error('sealed secret has an unknown format');
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAAD(Buffer.from(webhookId));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString(
        'utf8',
      );
    },
  };
}
