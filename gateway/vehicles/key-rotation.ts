// Owns rotating the keys cars trust: signing key announcements with the active key and sending them (TOKEN.md §8).
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { type KeysCommand, mintKeyAnnouncement, PROTOCOL_VERSION } from '../../protocols/index.ts';
import { insertVehicleAck } from '../store/commands.ts';
import type { Database } from '../store/schema.ts';
import { type AckRefusal, checkSignedAck } from './acks.ts';
import type { VehicleLink } from './link.ts';
import type { SigningKeyRing } from './signing-keys.ts';

export interface KeyRotationDeps {
  db: Kysely<Database>;
  link: () => VehicleLink | null;
  keys: SigningKeyRing;
  issuer: string;
  commandTimeoutMs: number;
  now: () => number;
  newId: () => string;
  logger: Logger;
  /** The VIN's currently issued certificate, for acks signed after a rotation (acks.ts). */
  currentCertificate?: (vin: string, at: number) => string | null;
}

export interface AnnouncementInput {
  /**
   * Above every seq announced before; cars refuse a seq they have already passed. Unix time in ms at signing
   * needs no coordination between replicas or operators.
   */
  seq: number;
  /** kid → ms from which cars refuse that key; give it the overlap (TOKEN.md §8.3). */
  retire?: Readonly<Record<string, number>>;
}

export type AnnounceResult =
  | { vin: string; result: 'accepted' }
  /** KEYS_STALE: the car already holds this announcement or a later one. */
  | { vin: string; result: 'already-current' }
  | { vin: string; result: 'refused'; reason: string | null }
  /** No verified ack: the announcement stays queued for the car in its MQTT session. */
  | { vin: string; result: 'unconfirmed'; why: 'BROKER_UNAVAILABLE' | 'NO_ACK' | AckRefusal };

export function createKeyRotation(deps: KeyRotationDeps) {
  const { db, now, logger } = deps;

  /** Signs, with the active key, an announcement of every key in the ring. */
  async function sign(input: AnnouncementInput): Promise<string> {
    const active = deps.keys.active();
    return mintKeyAnnouncement({
      privateKey: active.privateKey,
      kid: active.kid,
      announcement: {
        iss: deps.issuer,
        seq: input.seq,
        iat: Math.floor(now() / 1000),
        keys: await deps.keys.jwks(input.retire),
      },
    });
  }

  async function announceTo(vin: string, announcement: string): Promise<AnnounceResult> {
    const link = deps.link();
    if (!link?.connected()) return { vin, result: 'unconfirmed', why: 'BROKER_UNAVAILABLE' };
    const command: KeysCommand = {
      v: PROTOCOL_VERSION,
      type: 'keys',
      commandId: `cmd_${deps.newId()}`,
      announcement,
    };
    const reply = await link.send(vin, command, deps.commandTimeoutMs);
    if (reply.kind === 'timeout') return { vin, result: 'unconfirmed', why: 'NO_ACK' };
    const check = await checkSignedAck(
      db,
      { vin, commandId: command.commandId, action: 'keys' },
      reply.ack,
      now(),
      deps.currentCertificate,
    );
    if (!check.ok) {
      logger.warn(
        { event: 'ack.rejected', vin, commandId: command.commandId, code: check.code },
        'ack refused',
      );
      return { vin, result: 'unconfirmed', why: check.code };
    }
    await insertVehicleAck(db, check.evidence);
    const { ack } = reply;
    logger.info(
      { event: 'keys.announced', vin, outcome: ack.outcome, reason: ack.reason },
      'key announcement',
    );
    if (ack.outcome === 'executed') return { vin, result: 'accepted' };
    if (ack.reason === 'KEYS_STALE') return { vin, result: 'already-current' };
    return { vin, result: 'refused', reason: ack.reason ?? null };
  }

  /** Sends one signed announcement to each car and reports what each said, from verified acks only. */
  function announce(vins: readonly string[], announcement: string): Promise<AnnounceResult[]> {
    return Promise.all(vins.map((vin) => announceTo(vin, announcement)));
  }

  return { sign, announce };
}

export type KeyRotation = ReturnType<typeof createKeyRotation>;
