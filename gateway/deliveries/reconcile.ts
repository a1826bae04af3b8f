// Owns settling what the gateway does not know from what the car says: late acks, answers to state queries,
// commands left outstanding by a timeout or a crash, and deliveries whose car locked itself (PROTOCOL.md §6.3):
// when to ask the car, and whom to leave alone; what the evidence settles is settlement.ts.
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import {
  type Ack,
  MAX_QUERIED_COMMANDS,
  type StateMessage,
  type StateReport,
} from '../../protocols/index.ts';
import { findVehicleAck } from '../store/commands.ts';
import type { Db } from '../store/db.ts';
import type { Write } from '../store/group-commit.ts';
import { prepared } from '../store/prepared.ts';
import type { CommandsTable, Database } from '../store/schema.ts';
import { appendEvent } from '../store/timeline.ts';
import { checkSignedAck } from '../vehicles/acks.ts';
import type { VehicleLink } from '../vehicles/link.ts';
import type { KeyedMutex } from './keyed-mutex.ts';
import type { Notify } from './notifications.ts';
import { createDeliveryOutcomes } from './outcomes.ts';
import { type CommandStatus, createSettlement, OUTSTANDING, selectOutstanding } from './settlement.ts';

export interface ReconcilerDeps {
  /** For reads. */
  db: Kysely<Database>;
  /** Every write goes through here (store.write): atomic per unit, durable before it resolves. */
  write: Write;
  /** The MQTT link, once connected; null while there is none. */
  link: () => Pick<VehicleLink, 'connected' | 'query'> | null;
  /** The deliveries' mutex: a delivery a request holds is that request's to settle. */
  guard: Pick<KeyedMutex, 'held'>;
  now: () => number;
  logger: Logger;
  /** How long one state query waits for its answer. */
  queryTimeoutMs: number;
  /** Period of the sweep over cars with outstanding work; 0 turns the timer off (tests call sweep()). */
  intervalMs: number;
  /** The VIN's currently issued certificate, for late acks signed after a rotation (acks.ts). */
  currentCertificate?: (vin: string, at: number) => string | null;
  /** Domain events of the decisions the reconciler takes (gateway/deliveries/notifications.ts). */
  notify?: Notify;
  /**
   * With several replicas: of these deliveries, those another replica holds now (a request there waits for its
   * ack, gateway/cluster/delivery-holds.ts). They are left alone as the ones `guard` holds are.
   */
  heldElsewhere?: (deliveryIds: readonly string[]) => Promise<Set<string>>;
}

/** The deliveries a car's outstanding commands belong to, and its deliveries still unlocked, in one read. */
const selectWork = prepared((db, vin: string, sameVin: string) =>
  db
    .selectFrom('commands')
    .select('delivery_id as id')
    .where('vin', '=', vin)
    .where('status', 'in', [...OUTSTANDING])
    .unionAll(
      db.selectFrom('deliveries').select('id').where('vin', '=', sameVin).where('status', '=', 'unlocked'),
    ),
);

/** Longest wait before a car that keeps not answering is asked again by the sweep. */
const MAX_SILENT_BACKOFF_MS = 5 * 60_000;

export interface AfterTimeout {
  status: CommandStatus;
  locked: boolean | null;
}

export interface Reconciler {
  /** An ack nobody waits for any more: late, duplicated, or from before a restart. */
  onAck(vin: string, ack: Ack): Promise<void>;
  /** Every state or presence message; a report that disagrees with the records starts a reconciliation. */
  onState(vin: string, message: StateMessage): void;
  /**
   * After a command's ack wait ended without an ack: asks the car and settles the command from the answer.
   * Returns the command's status afterwards ('timeout': the car did not answer either) and the lock state the
   * evidence showed (null without any).
   */
  afterTimeout(vin: string, commandId: string, holding: string): Promise<AfterTimeout>;
  /**
   * Before a retried unlock: settles this delivery's outstanding unlocks from a fresh answer. 'none': there was
   * nothing outstanding; 'executed': one of them opened the car; 'answered': settled, none opened it;
   * 'unreachable': the car did not answer, nothing may be sent.
   */
  settleOutstandingUnlock(
    deliveryId: string,
    vin: string,
  ): Promise<'none' | 'executed' | 'answered' | 'unreachable'>;
  /** At start: commands a crash left 'sent' become 'timeout' (their request is gone), with a timeline entry. */
  recoverAtStart(): Promise<number>;
  /** Queries every car with outstanding work (backing off from silent ones) and settles what it answers. */
  sweep(): Promise<void>;
  close(): Promise<void>;
}

export function createReconciler(deps: ReconcilerDeps): Reconciler {
  const { db, write, guard, now, logger } = deps;
  const outcomes = createDeliveryOutcomes({ now, ...(deps.notify ? { notify: deps.notify } : {}) });
  const { applyLateAck, applyReport } = createSettlement({ now, outcomes });
  const running = new Map<string, Promise<void>>();
  const again = new Set<string>();
  const pending = new Set<Promise<unknown>>();
  /** Cars that did not answer a reconciliation query: how often in a row, and when to ask again. */
  const silent = new Map<string, { failures: number; until: number }>();
  let closed = false;

  const track = <T>(work: Promise<T>): Promise<T> => {
    pending.add(work);
    void work.finally(() => pending.delete(work)).catch(() => {});
    return work;
  };

  /** Whether a delivery is someone else's right now (a request waiting for its ack); `holding` is the caller's. */
  const othersHold = (deliveryId: string, holding: string | undefined): boolean =>
    deliveryId !== holding && guard.held(deliveryId);

  /** Of these deliveries, the ones another replica holds (none with a single replica). */
  const elsewhere = async (ids: readonly string[]): Promise<Set<string>> =>
    deps.heldElsewhere && ids.length > 0 ? deps.heldElsewhere([...new Set(ids)]) : new Set<string>();

  /** Outstanding commands of a car, except those a request is still waiting for (it settles its own). */
  async function outstandingOf(trx: Db, vin: string, holding?: string): Promise<CommandsTable[]> {
    const { rows } = await selectOutstanding(trx, vin);
    const mine = rows.filter((c) => !othersHold(c.delivery_id, holding));
    const busy = await elsewhere(mine.map((c) => c.delivery_id));
    return mine.filter((c) => !busy.has(c.delivery_id));
  }

  async function knownOffline(vin: string): Promise<boolean> {
    const row = await db
      .selectFrom('vehicles')
      .select(['online', 'last_seen'])
      .where('vin', '=', vin)
      .executeTakeFirst();
    return row !== undefined && row.online === 0 && row.last_seen !== null;
  }

  /**
   * Whether the car has work for a reconciliation that no request (here or on another replica) holds: an
   * outstanding command, or, with `unlocked`, a delivery still unlocked. One read either way.
   */
  async function hasWork(vin: string, unlocked: boolean): Promise<boolean> {
    const ids = unlocked
      ? (await selectWork(db, vin, vin)).rows.map((r) => r.id)
      : (await selectOutstanding(db, vin)).rows.map((c) => c.delivery_id);
    const free = ids.filter((id) => !guard.held(id));
    const busy = await elsewhere(free);
    return free.some((id) => !busy.has(id));
  }

  /** Queries the car about its outstanding commands and applies the answer; null when it did not answer. */
  async function askAndApply(
    vin: string,
    holding?: string,
    only?: (c: CommandsTable) => boolean,
  ): Promise<StateReport | null> {
    const link = deps.link();
    if (!link?.connected() || closed) return null;
    const asked = (await outstandingOf(db, vin, holding)).filter((c) => only?.(c) ?? true);
    const ids = asked.slice(-MAX_QUERIED_COMMANDS).map((c) => c.id);
    const answer = await link.query(vin, deps.queryTimeoutMs, ids);
    if (answer.kind !== 'state' || closed) return null;
    await write((trx) => applyReport(trx, vin, answer.report, ids, (id) => othersHold(id, holding)));
    return answer.report;
  }

  /** One reconciliation per VIN at a time; a request for another while one runs makes it run once more. */
  function reconcileVin(vin: string): Promise<void> {
    const current = running.get(vin);
    if (current) {
      again.add(vin);
      return current;
    }
    const run = (async () => {
      try {
        do {
          again.delete(vin);
          if (closed) return;
          if (!(await hasWork(vin, true))) return;
          if ((await askAndApply(vin)) !== null) {
            silent.delete(vin);
          } else {
            const failures = (silent.get(vin)?.failures ?? 0) + 1;
            const wait = Math.min(MAX_SILENT_BACKOFF_MS, deps.queryTimeoutMs * 2 ** failures);
            silent.set(vin, { failures, until: now() + wait });
          }
        } while (again.has(vin) && !closed);
      } catch (err) {
        logger.error({ event: 'reconcile.failed', vin, err }, 'reconciliation failed');
      } finally {
        running.delete(vin);
      }
    })();
    running.set(vin, run);
    return track(run);
  }

  let timer: NodeJS.Timeout | null = null;
  let sweeping: Promise<void> | null = null;

  const self: Reconciler = {
    async onAck(vin, ack) {
      if (closed) return;
      await track(
        (async () => {
          const c = await db
            .selectFrom('commands')
            .selectAll()
            .where('id', '=', ack.commandId)
            .executeTakeFirst();
          if (!c || c.vin !== vin) {
            logger.warn(
              { event: 'ack.unknown_command', vin, commandId: ack.commandId },
              'ack for no command of ours',
            );
            return;
          }
          // A QoS 1 duplicate of an ack already applied changes nothing.
          if (c.status === 'executed' || c.status === 'refused') return;
          // Another replica's request still waits for it: that replica settles it (the ack reaches it either on its
          // own session or through gateway/cluster/ack-relay.ts).
          if (c.status === 'sent' && (await elsewhere([c.delivery_id])).has(c.delivery_id)) return;
          // A late ack is evidence only as the waited-for one is: bound to its command, signed by the car (TOKEN.md §9).
          const t = now();
          const expected = { vin, commandId: c.id, action: c.action, deliveryId: c.delivery_id };
          const check = await checkSignedAck(db, expected, ack, t, deps.currentCertificate);
          if (!check.ok) {
            logger.warn(
              { event: 'ack.rejected', vin, commandId: c.id, code: check.code, late: true },
              'late ack refused',
            );
            await write((trx) =>
              appendEvent(trx, c.delivery_id, {
                at: t,
                kind: 'ack_rejected',
                outcome: 'denied',
                code: check.code,
                detail: { commandId: c.id, action: c.action, late: true },
              }),
            );
            return;
          }
          await write((trx) => applyLateAck(trx, c, ack, check.evidence));
        })(),
      );
    },

    onState(vin, message) {
      // An answer (it carries a nonce) is applied by whoever asked; any other report may start a reconciliation.
      if (closed || message.type !== 'state') return;
      silent.delete(vin);
      if (message.nonce !== undefined) return;
      void (async () => {
        // A locked report may also settle a delivery still unlocked (its car locked itself).
        if (await hasWork(vin, message.locked)) await reconcileVin(vin);
      })().catch((err: unknown) =>
        logger.error({ event: 'reconcile.failed', vin, err }, 'reconciliation failed'),
      );
    },

    async afterTimeout(vin, commandId, holding) {
      // A car whose will announced it offline would only get the query queued at the broker: do not wait.
      const report = (await knownOffline(vin)) ? null : await track(askAndApply(vin, holding));
      const row = await db
        .selectFrom('commands')
        .select('status')
        .where('id', '=', commandId)
        .executeTakeFirst();
      const status = (row?.status ?? 'timeout') as CommandStatus;
      if (status !== 'executed') return { status, locked: report?.locked ?? null };
      // Settled by the answer, or by a late ack meanwhile: the answer is the fresher evidence.
      const ack = report ? null : await findVehicleAck(db, commandId);
      return { status, locked: report?.locked ?? ack?.locked ?? null };
    },

    async settleOutstandingUnlock(deliveryId, vin) {
      const mine = (c: CommandsTable) => c.delivery_id === deliveryId && c.action === 'unlock';
      const earlier = (await outstandingOf(db, vin, deliveryId)).filter(mine).map((c) => c.id);
      if (earlier.length === 0) return 'none';
      // A car whose will announced it offline would only get the query queued at the broker: it cannot answer.
      if (await knownOffline(vin)) return 'unreachable';
      if ((await track(askAndApply(vin, deliveryId, mine))) === null) return 'unreachable';
      if ((await outstandingOf(db, vin, deliveryId)).filter(mine).length > 0) return 'unreachable';
      const settled = await db
        .selectFrom('commands')
        .select('id')
        .where('id', 'in', earlier)
        .where('status', '=', 'executed')
        .execute();
      return settled.length > 0 ? 'executed' : 'answered';
    },

    async recoverAtStart() {
      const sent = await db.selectFrom('commands').selectAll().where('status', '=', 'sent').execute();
      // With several replicas this runs again on the reconciling replica: a command whose request is alive, here
      // or on another replica, is not an orphan; one whose replica died is, once that replica's hold expired.
      const busy = await elsewhere(sent.map((c) => c.delivery_id));
      const orphans = sent.filter((c) => !guard.held(c.delivery_id) && !busy.has(c.delivery_id));
      const t = now();
      for (const c of orphans) {
        await write(async (trx) => {
          const moved = await trx
            .updateTable('commands')
            .set({ status: 'timeout', reason: 'GATEWAY_RESTARTED' })
            .where('id', '=', c.id)
            .where('status', '=', 'sent')
            .executeTakeFirst();
          if (Number(moved.numUpdatedRows) !== 1) return;
          await appendEvent(trx, c.delivery_id, {
            at: t,
            kind: 'command_interrupted',
            outcome: 'info',
            code: 'GATEWAY_RESTARTED',
            detail: { commandId: c.id, action: c.action, issuedAt: Number(c.issued_at) },
          });
        });
      }
      if (orphans.length > 0) {
        logger.warn(
          { event: 'reconcile.recovered', commands: orphans.length },
          'outstanding commands after restart',
        );
      }
      return orphans.length;
    },

    sweep() {
      if (closed) return Promise.resolve();
      sweeping ??= track(
        (async () => {
          try {
            const fromCommands = await db
              .selectFrom('commands')
              .select('vin')
              .distinct()
              .where('status', 'in', [...OUTSTANDING])
              .execute();
            const fromDeliveries = await db
              .selectFrom('deliveries')
              .select('vin')
              .distinct()
              .where('status', '=', 'unlocked')
              .execute();
            const vins = [...new Set([...fromCommands, ...fromDeliveries].map((r) => r.vin))];
            // A car that did not answer is asked again only after a backoff: each unanswered query waits at the
            // broker for it. Its presence flag is no guide (a report after a reconnect may be lost); any
            // report from it ends the backoff, and starts a reconciliation anyway.
            const t = now();
            const due = vins.filter((vin) => (silent.get(vin)?.until ?? 0) <= t);
            await Promise.all(due.map((vin) => reconcileVin(vin)));
          } catch (err) {
            logger.error({ event: 'reconcile.sweep_failed', err }, 'sweep failed');
          } finally {
            sweeping = null;
          }
        })(),
      );
      return sweeping;
    },

    async close() {
      closed = true;
      if (timer !== null) clearInterval(timer);
      timer = null;
      await Promise.allSettled([...pending]);
    },
  };

  if (deps.intervalMs > 0) {
    timer = setInterval(() => void self.sweep(), deps.intervalMs);
    timer.unref();
  }
  return self;
}
