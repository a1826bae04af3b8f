// Owns getting a car's ack, or its answer to a state query, to the replica whose request waits for it: the replica
// whose session received it records it (an ack by command id, an answer by the query's nonce) in the shared store
// and NOTIFYs; every replica LISTENs on its own connection and hands a recorded one to a waiting request. A wait
// that runs out, and a LISTEN connection that comes back, read the records again, so a notification missed while
// disconnected loses nothing.
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import { type Ack, AckSchema, type StateReport, StateReportSchema } from '../../protocols/index.ts';
import type { Database } from '../store/schema.ts';
import type { AckHandover } from '../vehicles/link.ts';

/** One channel for both: the payload is `ack:<command id>` or `report:<nonce>`. */
export const ACK_CHANNEL = 'gateway_acks';

export interface AckRelayDeps {
  db: Kysely<Database>;
  /** The store's DATABASE_URL: the LISTEN connection is a second one to the same database. */
  url: string;
  /** This replica's link, once connected. */
  link: () => AckHandover | null;
  now: () => number;
  logger: Logger;
  /** Wait before reconnecting a lost LISTEN connection. */
  reconnectMs?: number;
  /** How the LISTEN connection names itself to the server (pg_stat_activity), e.g. the replica's lease holder. */
  applicationName?: string;
}

export interface AckRelay {
  /** Records an ack this replica received but does not wait for, and tells the others. */
  record(vin: string, ack: Ack): Promise<void>;
  /** The ack recorded for a command, if any (any replica's). */
  find(vin: string, commandId: string): Promise<Ack | null>;
  /** Records an answer to a state query this replica did not ask, and tells the others. */
  recordReport(vin: string, report: StateReport): Promise<void>;
  /** The answer recorded for a query's nonce, if any. */
  findReport(vin: string, nonce: string): Promise<StateReport | null>;
  /**
   * Recorded acks whose command is still outstanding: a replica that died waiting for one leaves it here, and the
   * reconciling replica applies it (its car time is better evidence than a later state query).
   */
  outstanding(): Promise<Array<{ vin: string; ack: Ack }>>;
  /** Forgets acks and answers recorded before this time. */
  purge(before: number): Promise<void>;
  /** Starts listening; resolves once the first LISTEN is in place. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Written by a replica, but parsed again at this edge like anything a car sends; acks are verified by the waiter. */
function parseAck(body: string): Ack | null {
  const parsed = AckSchema.safeParse(JSON.parse(body));
  return parsed.success ? parsed.data : null;
}

function parseReport(body: string): StateReport | null {
  const parsed = StateReportSchema.safeParse(JSON.parse(body));
  return parsed.success ? parsed.data : null;
}

export function createAckRelay(deps: AckRelayDeps): AckRelay {
  const { db, logger } = deps;
  const reconnectMs = deps.reconnectMs ?? 1_000;
  let client: pg.Client | null = null;
  let closed = false;
  let retry: NodeJS.Timeout | null = null;

  async function find(vin: string, commandId: string): Promise<Ack | null> {
    const { rows } = await sql<{ vin: string; body: string }>`
      select vin, body from ack_inbox where command_id = ${commandId}`.execute(db);
    const row = rows[0];
    if (!row || row.vin !== vin) return null;
    const ack = parseAck(row.body);
    return ack && ack.vin === vin && ack.commandId === commandId ? ack : null;
  }

  async function findReport(vin: string, nonce: string): Promise<StateReport | null> {
    const { rows } = await sql<{ vin: string; body: string }>`
      select vin, body from report_inbox where nonce = ${nonce}`.execute(db);
    const row = rows[0];
    if (!row || row.vin !== vin) return null;
    const report = parseReport(row.body);
    return report && report.vin === vin && report.nonce === nonce ? report : null;
  }

  /**
   * Hands each recorded ack and answer to the request waiting here for it: the one a notification named, or all of
   * them (after a reconnect).
   */
  async function handOver(named?: { ack?: string; report?: string }): Promise<void> {
    const link = deps.link();
    if (!link) return;
    for (const w of link.waitingFor().filter((x) => !named || named.ack === x.commandId)) {
      const ack = await find(w.vin, w.commandId);
      if (ack && link.deliverAck(w.vin, ack)) {
        logger.debug(
          { event: 'ack.handed_over', vin: w.vin, commandId: w.commandId },
          'ack from another replica',
        );
      }
    }
    for (const w of link.queriesWaiting().filter((x) => !named || named.report === x.nonce)) {
      const report = await findReport(w.vin, w.nonce);
      if (report && link.deliverReport(w.vin, report)) {
        logger.debug({ event: 'state.handed_over', vin: w.vin }, 'state answer from another replica');
      }
    }
  }

  async function connect(): Promise<void> {
    const c = new pg.Client({
      connectionString: deps.url,
      ...(deps.applicationName ? { application_name: deps.applicationName } : {}),
    });
    c.on('error', () => {});
    c.on('notification', (n) => {
      if (n.channel !== ACK_CHANNEL || !n.payload) return;
      const [kind, id] = n.payload.split(':', 2);
      if (!id || (kind !== 'ack' && kind !== 'report')) return;
      void handOver(kind === 'ack' ? { ack: id } : { report: id }).catch((err: unknown) =>
        logger.warn({ event: 'ack.handover_failed', err }, 'ack or answer not handed over'),
      );
    });
    c.on('end', () => {
      if (client !== c || closed) return;
      client = null;
      logger.warn({ event: 'cluster.listen_lost' }, 'LISTEN connection lost; reconnecting');
      schedule();
    });
    await c.connect();
    await c.query(`listen ${ACK_CHANNEL}`);
    if (closed) {
      await c.end().catch(() => {});
      return;
    }
    client = c;
    // Whatever was recorded while no LISTEN was in place.
    await handOver();
  }

  function schedule(): void {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = null;
      connect().catch((err: unknown) => {
        logger.warn({ event: 'cluster.listen_failed', err }, 'LISTEN connection failed; retrying');
        schedule();
      });
    }, reconnectMs);
    retry.unref();
  }

  return {
    async record(vin, ack) {
      // One statement: the record and the notification commit together, so a listener never reads too early.
      await sql`
        with inserted as (
          insert into ack_inbox (command_id, vin, body, received_at)
          values (${ack.commandId}, ${vin}, ${JSON.stringify(ack)}, ${deps.now()})
          on conflict (command_id) do nothing
          returning command_id)
        select pg_notify(${ACK_CHANNEL}, 'ack:' || command_id) from inserted`.execute(db);
    },
    find,
    async recordReport(vin, report) {
      if (report.nonce === undefined) return;
      await sql`
        with inserted as (
          insert into report_inbox (nonce, vin, body, received_at)
          values (${report.nonce}, ${vin}, ${JSON.stringify(report)}, ${deps.now()})
          on conflict (nonce) do nothing
          returning nonce)
        select pg_notify(${ACK_CHANNEL}, 'report:' || nonce) from inserted`.execute(db);
    },
    findReport,
    async outstanding() {
      const { rows } = await sql<{ vin: string; body: string }>`
        select a.vin, a.body from ack_inbox a join commands c on c.id = a.command_id
        where c.status in ('sent', 'timeout') and c.vin = a.vin`.execute(db);
      return rows.flatMap((row) => {
        const ack = parseAck(row.body);
        return ack && ack.vin === row.vin ? [{ vin: row.vin, ack }] : [];
      });
    },
    async purge(before) {
      await sql`delete from ack_inbox where received_at < ${before}`.execute(db);
      await sql`delete from report_inbox where received_at < ${before}`.execute(db);
    },
    async start() {
      await connect();
    },
    async close() {
      closed = true;
      if (retry) clearTimeout(retry);
      retry = null;
      const c = client;
      client = null;
      await c?.end().catch(() => {});
    },
  };
}
