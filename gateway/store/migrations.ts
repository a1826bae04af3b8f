// Owns the schema migrations, written once with Kysely's builder so both dialects get the same tables.
import { type Kysely, type Migration, type MigrationProvider, PostgresAdapter, sql } from 'kysely';

/** Whether migrations run on PostgreSQL: the one place a column is declared differently (an identity). */
const onPostgres = (db: Kysely<unknown>): boolean => db.getExecutor().adapter instanceof PostgresAdapter;

const initial: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('vehicles')
      .addColumn('vin', 'varchar(17)', (c) => c.primaryKey())
      .addColumn('make', 'varchar(64)', (c) => c.notNull())
      .addColumn('model', 'varchar(64)', (c) => c.notNull())
      .addColumn('year', 'integer', (c) => c.notNull())
      .addColumn('provider', 'varchar(32)', (c) => c.notNull())
      .addColumn('owner_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('consent', 'varchar(64)', (c) => c.notNull())
      .addColumn('linked_at', 'bigint', (c) => c.notNull())
      .addColumn('online', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('locked', 'integer')
      .addColumn('lat', 'double precision')
      .addColumn('lon', 'double precision')
      .addColumn('ignition', 'varchar(8)')
      .addColumn('doors_open', 'integer')
      .addColumn('last_seen', 'bigint')
      .addColumn('last_seq', 'bigint')
      .execute();
    await db.schema
      .createTable('locations')
      .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('owner_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('label', 'varchar(200)', (c) => c.notNull())
      .addColumn('kind', 'varchar(16)', (c) => c.notNull())
      .addColumn('lat', 'double precision', (c) => c.notNull())
      .addColumn('lon', 'double precision', (c) => c.notNull())
      .addColumn('radius_m', 'double precision', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('deliveries')
      .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('vin', 'varchar(17)', (c) => c.notNull().references('vehicles.vin'))
      .addColumn('location_id', 'varchar(64)', (c) => c.notNull().references('locations.id'))
      .addColumn('driver_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('package_ids', 'text', (c) => c.notNull())
      .addColumn('window_start', 'bigint', (c) => c.notNull())
      .addColumn('window_end', 'bigint', (c) => c.notNull())
      .addColumn('status', 'varchar(24)', (c) => c.notNull())
      .addColumn('unlocks_used', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('deliveries_vin').on('deliveries').column('vin').execute();
    await db.schema
      .createTable('delivery_events')
      .addColumn('seq', 'integer', (c) =>
        onPostgres(db) ? c.primaryKey().generatedByDefaultAsIdentity() : c.primaryKey().autoIncrement(),
      )
      .addColumn('delivery_id', 'varchar(64)', (c) => c.notNull().references('deliveries.id'))
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('kind', 'varchar(48)', (c) => c.notNull())
      .addColumn('outcome', 'varchar(16)', (c) => c.notNull())
      .addColumn('code', 'varchar(64)')
      .addColumn('detail', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('delivery_events_delivery')
      .on('delivery_events')
      .column('delivery_id')
      .execute();
    await db.schema
      .createTable('commands')
      .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('delivery_id', 'varchar(64)', (c) => c.notNull().references('deliveries.id'))
      .addColumn('vin', 'varchar(17)', (c) => c.notNull())
      .addColumn('action', 'varchar(16)', (c) => c.notNull())
      .addColumn('jti', 'varchar(64)', (c) => c.notNull().unique())
      .addColumn('token_hash', 'varchar(64)', (c) => c.notNull())
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('reason', 'varchar(64)')
      .addColumn('issued_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('acked_at', 'bigint')
      .execute();
    await db.schema.createIndex('commands_delivery').on('commands').column('delivery_id').execute();
    await db.schema
      .createTable('api_keys')
      .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('hash', 'varchar(64)', (c) => c.notNull().unique())
      .addColumn('label', 'varchar(128)', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

/** The audit log (protocols/AUDIT.md): entries by index, and the signed checkpoints over them. */
const audit: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('audit_entries')
      .addColumn('idx', 'bigint', (c) => c.primaryKey())
      .addColumn('leaf_hash', 'varchar(44)', (c) => c.notNull().unique())
      .addColumn('delivery_id', 'varchar(64)')
      .addColumn('kind', 'varchar(48)', (c) => c.notNull())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('entry', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('audit_entries_delivery').on('audit_entries').column('delivery_id').execute();
    await db.schema
      .createTable('audit_checkpoints')
      .addColumn('tree_size', 'bigint', (c) => c.primaryKey())
      .addColumn('root_hash', 'varchar(44)', (c) => c.notNull())
      .addColumn('note', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

/**
 * Signed acks as evidence (TOKEN.md §9): the certificate each car's acks are verified against, pinned when the car
 * is linked, and every verified ack with the exact bytes its signature covers.
 */
const signedAcks: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('vehicles').addColumn('cert_pem', 'text').execute();
    await db.schema
      .createTable('vehicle_acks')
      .addColumn('command_id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('vin', 'varchar(17)', (c) => c.notNull())
      .addColumn('delivery_id', 'varchar(64)')
      .addColumn('action', 'varchar(32)', (c) => c.notNull())
      .addColumn('outcome', 'varchar(16)', (c) => c.notNull())
      .addColumn('reason', 'varchar(64)')
      .addColumn('locked', 'integer', (c) => c.notNull())
      .addColumn('car_at', 'bigint')
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('sig', 'varchar(512)', (c) => c.notNull())
      .addColumn('cert_sha256', 'varchar(64)', (c) => c.notNull())
      .addColumn('received_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('vehicle_acks_delivery').on('vehicle_acks').column('delivery_id').execute();
  },
};

/**
 * The delivery service: blocking, unlinking, location access, parking confirmation and the relock
 * watchdog's bookkeeping. Columns only, so rows written before it stay readable; a location recorded
 * before access was asked for gets 'unknown', which is not public (deny by default).
 */
const deliveryService: Migration = {
  async up(db: Kysely<unknown>) {
    const add = (
      table: string,
      column: string,
      type: 'integer' | 'bigint' | 'double precision' | 'varchar(16)' | 'varchar(64)',
      notNullDefault?: number | string,
    ) =>
      db.schema
        .alterTable(table)
        .addColumn(column, type, (c) =>
          notNullDefault === undefined ? c : c.notNull().defaultTo(notNullDefault),
        )
        .execute();
    await add('vehicles', 'blocked', 'integer', 0);
    await add('vehicles', 'unlinked_at', 'bigint');
    await add('locations', 'access', 'varchar(16)', 'unknown');
    await add('deliveries', 'blocked', 'integer', 0);
    await add('deliveries', 'parking_confirmed_at', 'bigint');
    await add('deliveries', 'parking_lat', 'double precision');
    await add('deliveries', 'parking_lon', 'double precision');
    await add('deliveries', 'parking_invalid_code', 'varchar(64)');
    await add('deliveries', 'unlocked_at', 'bigint');
    await add('deliveries', 'unlocked_car_at', 'bigint');
    await add('deliveries', 'relocked_at', 'bigint');
    await add('deliveries', 'relock_retry_at', 'bigint');
    await add('deliveries', 'lock_unconfirmed_at', 'bigint');
    // The watchdog's sweep: deliveries whose car was opened and not yet confirmed locked again.
    await db.schema
      .createIndex('deliveries_open')
      .on('deliveries')
      .columns(['relocked_at', 'unlocked_at'])
      .execute();
  },
};

/**
 * The API platform: scoped and bound API keys, carriers on deliveries, webhook subscriptions with their
 * outbox, and idempotency records. Keys from before this migration carry no scope (deny by default).
 */
const apiPlatform: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .alterTable('api_keys')
      .addColumn('scopes', 'varchar(256)', (c) => c.notNull().defaultTo(''))
      .execute();
    await db.schema.alterTable('api_keys').addColumn('owner_id', 'varchar(64)').execute();
    await db.schema.alterTable('api_keys').addColumn('carrier_id', 'varchar(64)').execute();
    await db.schema.alterTable('api_keys').addColumn('revoked_at', 'bigint').execute();
    await db.schema.alterTable('deliveries').addColumn('carrier_id', 'varchar(64)').execute();
    await db.schema.createIndex('deliveries_carrier').on('deliveries').column('carrier_id').execute();
    await db.schema
      .createTable('webhooks')
      .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('owner_id', 'varchar(64)')
      .addColumn('carrier_id', 'varchar(64)')
      .addColumn('url', 'varchar(2048)', (c) => c.notNull())
      .addColumn('events', 'varchar(512)', (c) => c.notNull())
      .addColumn('secret_enc', 'varchar(256)', (c) => c.notNull())
      .addColumn('created_by', 'varchar(64)', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('deleted_at', 'bigint')
      .execute();
    await db.schema.createIndex('webhooks_owner').on('webhooks').column('owner_id').execute();
    await db.schema.createIndex('webhooks_carrier').on('webhooks').column('carrier_id').execute();
    await db.schema
      .createTable('webhook_outbox')
      .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('event_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('webhook_id', 'varchar(64)', (c) => c.notNull().references('webhooks.id'))
      .addColumn('event_type', 'varchar(48)', (c) => c.notNull())
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
      .addColumn('lease_until', 'bigint')
      .addColumn('last_error', 'varchar(256)')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('delivered_at', 'bigint')
      .execute();
    await db.schema
      .createIndex('webhook_outbox_due')
      .on('webhook_outbox')
      .columns(['status', 'next_attempt_at'])
      .execute();
    await db.schema
      .createTable('idempotency_keys')
      .addColumn('api_key_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('idem_key', 'varchar(255)', (c) => c.notNull())
      .addColumn('fingerprint', 'varchar(64)', (c) => c.notNull())
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('response_status', 'integer')
      .addColumn('response_type', 'varchar(128)')
      .addColumn('response_body', 'text')
      .addColumn('response_sealed', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('idempotency_keys_pk', ['api_key_id', 'idem_key'])
      .execute();
    await db.schema
      .createIndex('idempotency_keys_expiry')
      .on('idempotency_keys')
      .column('expires_at')
      .execute();
  },
};

/**
 * Reconciliation looks up a car's outstanding commands on every state report (gateway/deliveries/reconcile.ts): without
 * this index each lookup scanned the whole commands table, so a busy gateway slowed down as its history grew.
 */
const commandsByVin: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.createIndex('commands_vin_status').on('commands').columns(['vin', 'status']).execute();
  },
};

/** The watchdog's expiry sweep: scheduled deliveries whose window has ended, without scanning finished ones. */
const deliveriesExpiry: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createIndex('deliveries_status_window_end')
      .on('deliveries')
      .columns(['status', 'window_end'])
      .execute();
  },
};

/**
 * The timeline becomes a view of the audit log (gateway/store/timeline.ts): every timeline event was written twice,
 * as a delivery_events row and as an audit entry, in the same transaction. From here on only the audit entry is
 * written; the rows written before stay where they are, and timeline_start says where the view takes over. The
 * index serves a delivery's timeline (its entries in order) without reading anyone else's.
 */
const timelineFromAudit: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('timeline_start')
      .addColumn('audit_from', 'bigint', (c) => c.notNull())
      .addColumn('seq_base', 'bigint', (c) => c.notNull())
      .execute();
    await sql`insert into timeline_start (audit_from, seq_base)
      select (select coalesce(max(idx), -1) + 1 from audit_entries),
             (select coalesce(max(seq), 0) from delivery_events)`.execute(db);
    await db.schema
      .createIndex('audit_entries_delivery_idx')
      .on('audit_entries')
      .columns(['delivery_id', 'idx'])
      .execute();
    await db.schema.dropIndex('audit_entries_delivery').execute();
  },
};

/**
 * Several replicas on one PostgreSQL (gateway/cluster/): leases (background jobs and deliveries in flight, each held
 * by one replica until it expires), shared rate-limit windows and vehicle budgets, and the acks and state-query
 * answers a replica received for a request another replica waits on.
 */
const replicas: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('leases')
      .addColumn('name', 'varchar(160)', (c) => c.primaryKey())
      .addColumn('holder', 'varchar(96)', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('rate_windows')
      .addColumn('key', 'varchar(200)', (c) => c.primaryKey())
      .addColumn('window_start', 'bigint', (c) => c.notNull())
      .addColumn('hits', 'integer', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('vehicle_budgets')
      .addColumn('vin', 'varchar(17)', (c) => c.primaryKey())
      .addColumn('tokens', 'double precision', (c) => c.notNull())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('in_flight_until', 'bigint', (c) => c.notNull())
      .addColumn('holder', 'varchar(96)')
      .execute();
    await db.schema
      .createTable('ack_inbox')
      .addColumn('command_id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('vin', 'varchar(17)', (c) => c.notNull())
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('received_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('report_inbox')
      .addColumn('nonce', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('vin', 'varchar(17)', (c) => c.notNull())
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('received_at', 'bigint', (c) => c.notNull())
      .execute();
  },
};

/** Migrations in order (applied in this order; merged branches got the next free number). Never edit a released one. */
export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return {
      '0001_initial': initial,
      '0004_audit': audit,
      '0005_signed_acks': signedAcks,
      '0006_delivery_service': deliveryService,
      '0007_api_platform': apiPlatform,
      '0008_commands_by_vin': commandsByVin,
      '0009_deliveries_expiry': deliveriesExpiry,
      '0010_timeline_from_audit': timelineFromAudit,
      '0011_replicas': replicas,
    };
  },
};
