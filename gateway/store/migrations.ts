// Owns the schema migrations, written once with Kysely's builder so both dialects get the same tables.
import type { Kysely, Migration, MigrationProvider } from 'kysely';

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
      .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
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

/** Migrations in order; names sort lexically. */
export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return { '0001_initial': initial, '0003_api_platform': apiPlatform };
  },
};
