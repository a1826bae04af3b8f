// Owns the store's table types; one definition serves SQLite and PostgreSQL (times are integer ms, flags 0/1).
import type { Generated } from 'kysely';

export interface VehiclesTable {
  vin: string;
  make: string;
  model: string;
  year: number;
  provider: string;
  owner_id: string;
  /** Comma-separated actions the owner consented to. */
  consent: string;
  linked_at: number;
  online: number;
  locked: number | null;
  lat: number | null;
  lon: number | null;
  ignition: string | null;
  doors_open: number | null;
  last_seen: number | null;
  last_seq: number | null;
}

export interface LocationsTable {
  id: string;
  owner_id: string;
  label: string;
  kind: string;
  lat: number;
  lon: number;
  radius_m: number;
  created_at: number;
}

export interface DeliveriesTable {
  id: string;
  vin: string;
  location_id: string;
  driver_id: string;
  /** JSON array of package ids. */
  package_ids: string;
  window_start: number;
  window_end: number;
  status: string;
  unlocks_used: number;
  created_at: number;
  updated_at: number;
  /** The carrier whose backend scheduled it (migration 0003); null for older rows. */
  carrier_id?: string | null;
}

export interface DeliveryEventsTable {
  seq: Generated<number>;
  delivery_id: string;
  at: number;
  kind: string;
  outcome: string;
  code: string | null;
  /** JSON object with the decision's particulars. */
  detail: string;
}

export interface CommandsTable {
  id: string;
  delivery_id: string;
  vin: string;
  action: string;
  jti: string;
  /** SHA-256 of the token, base64url: the token itself is never stored. */
  token_hash: string;
  status: string;
  reason: string | null;
  issued_at: number;
  expires_at: number;
  acked_at: number | null;
}

export interface ApiKeysTable {
  id: string;
  /** SHA-256 of the key, hex. */
  hash: string;
  label: string;
  created_at: number;
  /** Comma-separated scopes (migration 0003); empty grants nothing. */
  scopes: Generated<string>;
  /** A key bound to an owner sees only that owner's records. */
  owner_id: string | null;
  /** A key bound to a carrier sees only that carrier's deliveries. */
  carrier_id: string | null;
  revoked_at: number | null;
}

export interface WebhooksTable {
  id: string;
  owner_id: string | null;
  carrier_id: string | null;
  url: string;
  /** Comma-separated event types. */
  events: string;
  /** The signing secret, AES-256-GCM sealed (webhooks/secret-box.ts); never stored in clear. */
  secret_enc: string;
  /** The API key that created it. */
  created_by: string;
  created_at: number;
  deleted_at: number | null;
}

export interface WebhookOutboxTable {
  id: string;
  /** Shared by every subscription the event goes to; receivers de-duplicate on it. */
  event_id: string;
  webhook_id: string;
  event_type: string;
  /** The JSON body to send, exactly as signed. */
  payload: string;
  status: string;
  attempts: number;
  next_attempt_at: number;
  /** A dispatcher owns the row until then (several replicas share one outbox). */
  lease_until: number | null;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

export interface IdempotencyKeysTable {
  api_key_id: string;
  idem_key: string;
  /** SHA-256 of method, path and canonical body. */
  fingerprint: string;
  status: string;
  response_status: number | null;
  response_type: string | null;
  response_body: string | null;
  /** 1 when response_body is sealed (it holds a secret shown once, such as a webhook's). */
  response_sealed: number;
  created_at: number;
  expires_at: number;
}

export interface Database {
  vehicles: VehiclesTable;
  locations: LocationsTable;
  deliveries: DeliveriesTable;
  delivery_events: DeliveryEventsTable;
  commands: CommandsTable;
  api_keys: ApiKeysTable;
  webhooks: WebhooksTable;
  webhook_outbox: WebhookOutboxTable;
  idempotency_keys: IdempotencyKeysTable;
}
