// Owns the commands sent to cars and the signed acks kept as evidence of what each car did.
import type { Db } from './db.ts';
import { prepared } from './prepared.ts';

export interface CommandRecord {
  id: string;
  deliveryId: string;
  vin: string;
  action: string;
  jti: string;
  tokenHash: string;
  /** not_executed: a fresh state answer showed the command had no effect (PROTOCOL.md §6.2). */
  status: 'sent' | 'executed' | 'refused' | 'timeout' | 'not_executed';
  reason: string | null;
  issuedAt: number;
  expiresAt: number;
  ackedAt: number | null;
}

const insertCommandRow = prepared(
  (
    db,
    id: string,
    deliveryId: string,
    vin: string,
    action: string,
    jti: string,
    tokenHash: string,
    status: string,
    reason: string | null,
    issuedAt: number,
    expiresAt: number,
    ackedAt: number | null,
  ) =>
    db.insertInto('commands').values({
      id,
      delivery_id: deliveryId,
      vin,
      action,
      jti,
      token_hash: tokenHash,
      status,
      reason,
      issued_at: issuedAt,
      expires_at: expiresAt,
      acked_at: ackedAt,
    }),
);

export async function insertCommand(db: Db, c: CommandRecord): Promise<void> {
  await insertCommandRow(
    db,
    c.id,
    c.deliveryId,
    c.vin,
    c.action,
    c.jti,
    c.tokenHash,
    c.status,
    c.reason,
    c.issuedAt,
    c.expiresAt,
    c.ackedAt,
  );
}

const updateCommandSettlement = prepared(
  (db, id: string, status: string, reason: string | null, ackedAt: number | null) =>
    db.updateTable('commands').set({ status, reason, acked_at: ackedAt }).where('id', '=', id),
);

export async function settleCommand(
  db: Db,
  id: string,
  s: { status: CommandRecord['status']; reason: string | null; ackedAt: number | null },
): Promise<void> {
  await updateCommandSettlement(db, id, s.status, s.reason, s.ackedAt);
}

/** A verified ack as kept: what the car signed, the signature, and which certificate it verified against. */
export interface VehicleAckRecord {
  commandId: string;
  vin: string;
  deliveryId: string | null;
  action: string;
  outcome: 'executed' | 'refused';
  reason: string | null;
  locked: boolean;
  carAt: number | null;
  /** The canonical ack the signature covers. */
  payload: string;
  sig: string;
  certSha256: string;
  receivedAt: number;
}

const insertVehicleAckRow = prepared(
  (
    db,
    commandId: string,
    vin: string,
    deliveryId: string | null,
    action: string,
    outcome: string,
    reason: string | null,
    locked: number,
    carAt: number | null,
    payload: string,
    sig: string,
    certSha256: string,
    receivedAt: number,
  ) =>
    db
      .insertInto('vehicle_acks')
      .values({
        command_id: commandId,
        vin,
        delivery_id: deliveryId,
        action,
        outcome,
        reason,
        locked,
        car_at: carAt,
        payload,
        sig,
        cert_sha256: certSha256,
        received_at: receivedAt,
      })
      // One ack per command: a second copy (a QoS 1 duplicate) adds nothing.
      .onConflict((oc) => oc.column('command_id').doNothing()),
);

export async function insertVehicleAck(db: Db, a: VehicleAckRecord): Promise<void> {
  await insertVehicleAckRow(
    db,
    a.commandId,
    a.vin,
    a.deliveryId,
    a.action,
    a.outcome,
    a.reason,
    a.locked ? 1 : 0,
    a.carAt,
    a.payload,
    a.sig,
    a.certSha256,
    a.receivedAt,
  );
}

export async function findVehicleAck(db: Db, commandId: string): Promise<VehicleAckRecord | null> {
  const r = await db
    .selectFrom('vehicle_acks')
    .selectAll()
    .where('command_id', '=', commandId)
    .executeTakeFirst();
  if (!r) return null;
  return {
    commandId: r.command_id,
    vin: r.vin,
    deliveryId: r.delivery_id,
    action: r.action,
    outcome: r.outcome as VehicleAckRecord['outcome'],
    reason: r.reason,
    locked: r.locked === 1,
    carAt: r.car_at === null ? null : Number(r.car_at),
    payload: r.payload,
    sig: r.sig,
    certSha256: r.cert_sha256,
    receivedAt: Number(r.received_at),
  };
}
