// Owns getting a car's ack to the replica whose request waits for it: the replica whose session received it records
// it by command id in the shared store and NOTIFYs; every replica LISTENs on its own connection and hands a
// recorded ack to a waiting request. A wait that runs out, and a LISTEN connection that comes back, read the
// record again, so a notification missed while disconnected loses nothing.
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import { type Ack, AckSchema } from '../../protocols/index.ts';
import type { Database } from '../store/schema.ts';
import type { AckHandover } from '../vehicles/link.ts';

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
  /**
   * Recorded acks whose command is still outstanding: a replica that died waiting for one leaves it here, and the
   * reconciling replica applies it (its car time is better evidence than a later state query).
   */
  outstanding(): Promise<Array<{ vin: string; ack: Ack }>>;
  /** Forgets acks recorded before this time. */
  purge(before: number): Promise<void>;
  /** Starts listening; resolves once the first LISTEN is in place. */
  start(): Promise<void>;
  close(): Promise<void>;
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
    // Written by a replica, but parsed again at this edge like any ack; its signature is checked by the waiter.
    const parsed = AckSchema.safeParse(JSON.parse(row.body));
    return parsed.success && parsed.data.vin === vin && parsed.data.commandId === commandId
      ? parsed.data
      : null;
  }

  /** Hands each recorded ack to the request waiting here for it (after a notification or a reconnect). */
  async function handOver(commandIds?: readonly string[]): Promise<void> {
    const link = deps.link();
    if (!link) return;
    const waiting = link.waitingFor().filter((w) => !commandIds || commandIds.includes(w.commandId));
    for (const w of waiting) {
      const ack = await find(w.vin, w.commandId);
      if (ack && link.deliverAck(w.vin, ack)) {
        logger.debug(
          { event: 'ack.handed_over', vin: w.vin, commandId: w.commandId },
          'ack from another replica',
        );
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
      void handOver([n.payload]).catch((err: unknown) =>
        logger.warn({ event: 'ack.handover_failed', err }, 'ack not handed over'),
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
        select pg_notify(${ACK_CHANNEL}, command_id) from inserted`.execute(db);
    },
    find,
    async outstanding() {
      const { rows } = await sql<{ vin: string; body: string }>`
        select a.vin, a.body from ack_inbox a join commands c on c.id = a.command_id
        where c.status in ('sent', 'timeout') and c.vin = a.vin`.execute(db);
      return rows.flatMap((row) => {
        const parsed = AckSchema.safeParse(JSON.parse(row.body));
        return parsed.success && parsed.data.vin === row.vin ? [{ vin: row.vin, ack: parsed.data }] : [];
      });
    },
    async purge(before) {
      await sql`delete from ack_inbox where received_at < ${before}`.execute(db);
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
