// Owns how a command's outcome is settled after its ack wait, from the car's evidence: a late (or replayed) ack,
// or its answer to a state query, each moving the command, the unlock count and the timeline together
// (PROTOCOL.md §6.3).
import type { Ack, StateReport } from '../../protocols/index.ts';
import { type CommandRecord, insertVehicleAck, type VehicleAckRecord } from '../store/commands.ts';
import type { Db } from '../store/db.ts';
import { prepared } from '../store/prepared.ts';
import type { CommandsTable } from '../store/schema.ts';
import { appendEvent } from '../store/timeline.ts';
import type { DeliveryOutcomes } from './outcomes.ts';

/** How the gateway learnt a command's outcome after its ack wait (timeline `settledBy`). */
export type SettledBy = 'late_ack' | 'replayed_ack' | 'state_query';
export type CommandStatus = CommandRecord['status'];

/** Statuses in which an unlock command holds one of its delivery's unlocks. */
const HOLDS_UNLOCK: ReadonlySet<string> = new Set(['sent', 'timeout', 'executed']);
export const OUTSTANDING = ['sent', 'timeout'] as const;

/** A car's commands still waiting for an outcome, oldest first. */
export const selectOutstanding = prepared((db, vin: string) =>
  db
    .selectFrom('commands')
    .selectAll()
    .where('vin', '=', vin)
    .where('status', 'in', [...OUTSTANDING])
    .orderBy('issued_at'),
);

export interface SettlementDeps {
  now: () => number;
  outcomes: DeliveryOutcomes;
}

export function createSettlement({ now, outcomes }: SettlementDeps) {
  /** Moves one command out of an outstanding status, keeps the unlock count right, and writes the timeline. */
  async function settle(
    trx: Db,
    c: CommandsTable,
    to: 'executed' | 'refused' | 'not_executed',
    facts: { by: SettledBy; locked: boolean; carTime: number | null; reason?: string | null },
  ): Promise<boolean> {
    const t = now();
    const moved = await trx
      .updateTable('commands')
      .set({ status: to, reason: facts.reason ?? null, acked_at: facts.by === 'state_query' ? null : t })
      .where('id', '=', c.id)
      .where('status', '=', c.status)
      .executeTakeFirst();
    if (Number(moved.numUpdatedRows) !== 1) return false;
    if (c.action === 'unlock' && HOLDS_UNLOCK.has(c.status) !== HOLDS_UNLOCK.has(to)) {
      // An unlock that did not open the car gives its unlock back; a late ack of one that did takes it again.
      const delta = HOLDS_UNLOCK.has(to) ? 1 : -1;
      await trx
        .updateTable('deliveries')
        .set((eb) => ({ unlocks_used: eb('unlocks_used', '+', delta), updated_at: t }))
        .where('id', '=', c.delivery_id)
        .where('unlocks_used', '>=', delta < 0 ? 1 : 0)
        .execute();
    }
    const detail = {
      commandId: c.id,
      action: c.action,
      locked: facts.locked,
      carTime: facts.carTime,
      settledBy: facts.by,
      previously: c.status,
    };
    if (to === 'refused') {
      await appendEvent(trx, c.delivery_id, {
        at: t,
        kind: 'vehicle_refused',
        outcome: 'denied',
        code: facts.reason ?? 'UNSPECIFIED',
        detail,
      });
      return true;
    }
    if (to === 'not_executed') {
      await appendEvent(trx, c.delivery_id, {
        at: t,
        kind: 'command_not_executed',
        outcome: 'info',
        code: null,
        detail,
      });
      return true;
    }
    const d = { id: c.delivery_id, vin: c.vin };
    if (c.action === 'unlock') {
      // Only an ack a request waited for dates the opening for the completion rule; this one came afterwards.
      await outcomes.opened(trx, d, detail, null);
    } else if (c.action === 'revoke') {
      await appendEvent(trx, c.delivery_id, {
        at: t,
        kind: 'vehicle_revoked',
        outcome: 'granted',
        code: null,
        detail,
      });
    } else if (facts.locked) {
      await outcomes.confirmLocked(trx, d, 'vehicle_locked', 'reconciled', detail);
    } else {
      await appendEvent(trx, c.delivery_id, {
        at: t,
        kind: 'vehicle_locked',
        outcome: 'granted',
        code: null,
        detail,
      });
    }
    return true;
  }

  /** Settles a command from its verified late ack, and keeps the ack as evidence with the settlement. */
  async function applyLateAck(
    trx: Db,
    c: CommandsTable,
    ack: Ack,
    evidence: VehicleAckRecord,
  ): Promise<void> {
    const facts = { locked: ack.locked, carTime: ack.at };
    let moved: boolean;
    if (ack.outcome === 'executed') {
      moved = await settle(trx, c, 'executed', { ...facts, by: 'late_ack' });
    } else if (ack.reason === 'TOKEN_REPLAYED') {
      // Our own command, refused as replayed: the car used this jti before, so it executed it then (§5.1).
      moved = await settle(trx, c, 'executed', { ...facts, by: 'replayed_ack', reason: 'TOKEN_REPLAYED' });
    } else {
      moved = await settle(trx, c, 'refused', { ...facts, by: 'late_ack', reason: ack.reason ?? null });
    }
    if (moved) await insertVehicleAck(trx, evidence);
  }

  /**
   * Applies, in the caller's transaction, a fresh answer to a query about `asked` (the outstanding commands when it was sent). A command
   * the car lists is settled by the outcome it reports; one it does not list never reached it (it is answered
   * after every command published before the query, §3.5). A car that lists nothing at all (no `commands`
   * member) leaves the lock state as the only evidence: a command whose effect shows is taken as executed,
   * one whose effect does not as not executed. Then an unlocked delivery whose car is locked, with nothing
   * outstanding, becomes relocked.
   */
  async function applyReport(
    trx: Db,
    vin: string,
    report: StateReport,
    asked: readonly string[],
    /** Whether a delivery is a request's own to settle (it waits for its ack): left alone. */
    othersHold: (deliveryId: string) => boolean,
  ): Promise<void> {
    const reported = report.commands ? new Map(report.commands.map((c) => [c.commandId, c])) : null;
    const open = new Set<string>();
    const facts = { by: 'state_query' as const, locked: report.locked, carTime: report.at };
    const all = await trx
      .selectFrom('commands')
      .selectAll()
      .where('vin', '=', vin)
      .where('status', 'in', [...OUTSTANDING])
      .orderBy('issued_at')
      .execute();
    for (const c of all) {
      if (othersHold(c.delivery_id) || !asked.includes(c.id)) {
        open.add(c.delivery_id);
        continue;
      }
      const known = reported?.get(c.id);
      if (known) {
        const ran = known.outcome === 'executed' || known.reason === 'TOKEN_REPLAYED';
        await settle(trx, c, ran ? 'executed' : 'refused', {
          ...facts,
          reason: ran ? 'REPORTED_BY_CAR' : (known.reason ?? null),
        });
      } else if (reported) {
        await settle(trx, c, 'not_executed', { ...facts, reason: 'NOT_RECEIVED' });
      } else if (c.action === 'revoke') {
        // A revocation changes nothing the report shows: without the car's outcome it stays outstanding.
        open.add(c.delivery_id);
      } else {
        const tookEffect = c.action === 'unlock' ? !report.locked : report.locked;
        await settle(trx, c, tookEffect ? 'executed' : 'not_executed', {
          ...facts,
          reason: tookEffect
            ? 'INFERRED_FROM_STATE'
            : report.locked
              ? 'LOCKED_AT_QUERY'
              : 'UNLOCKED_AT_QUERY',
        });
      }
    }
    if (!report.locked) return;
    const unlocked = await trx
      .selectFrom('deliveries')
      .select(['id', 'vin'])
      .where('vin', '=', vin)
      .where('status', '=', 'unlocked')
      .execute();
    for (const d of unlocked) {
      if (open.has(d.id) || othersHold(d.id)) continue;
      await outcomes.relockedByCar(trx, d, {
        by: 'car',
        locked: true,
        carTime: report.at,
        seq: report.seq,
      });
    }
  }

  return { settle, applyLateAck, applyReport };
}

export type Settlement = ReturnType<typeof createSettlement>;
