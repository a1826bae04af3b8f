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
  /** The car's certificate, PEM, pinned when it was linked: its acks are verified against it (0002). */
  cert_pem: string | null;
  /** 1 while the owner blocks access to the whole vehicle (0002). */
  blocked: number;
  /** When the owner unlinked it; null while linked (0002). */
  unlinked_at: number | null;
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
  /** public | garage | restricted | unknown (rows from before 0002). */
  access: string;
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
  /** 1 while the owner blocks access for this delivery (0002). */
  blocked: number;
  /** When the car itself confirmed it is parked at the location, and where it said it was. */
  parking_confirmed_at: number | null;
  parking_lat: number | null;
  parking_lon: number | null;
  /** Set when a later state report contradicts the confirmation (VEHICLE_MOVED, VEHICLE_NOT_PARKED). */
  parking_invalid_code: string | null;
  /** Gateway time of the car's unlock ack, and the car's own time in it. */
  unlocked_at: number | null;
  unlocked_car_at: number | null;
  /** When the car was confirmed locked again after the unlock, by whoever locked it. */
  relocked_at: number | null;
  /** The watchdog's next attempt after a lock it could not confirm. */
  relock_retry_at: number | null;
  /** When a lock could first not be confirmed (vehicle.lock_unconfirmed was raised). */
  lock_unconfirmed_at: number | null;
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

/** Acks whose signature verified against the car's pinned certificate: evidence of what the car reported (0002). */
export interface VehicleAcksTable {
  command_id: string;
  vin: string;
  delivery_id: string | null;
  action: string;
  outcome: string;
  reason: string | null;
  locked: number;
  /** The car's own time in the ack, ms; null when the car did not know it. */
  car_at: number | null;
  /** The canonical ack (RFC 8785) the signature covers, exactly as verified. */
  payload: string;
  /** The detached compact JWS, ES256. */
  sig: string;
  /** SHA-256 of the DER certificate the signature verified against, hex. */
  cert_sha256: string;
  received_at: number;
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

export interface AuditEntriesTable {
  /** Position in the log from 0; the primary key, so two writers can never both take one index. */
  idx: number;
  /** RFC 6962 leaf hash of entry, standard base64. */
  leaf_hash: string;
  delivery_id: string | null;
  kind: string;
  at: number;
  /** The canonical JSON that was hashed, byte for byte (protocols/AUDIT.md §2). */
  entry: string;
}

export interface AuditCheckpointsTable {
  tree_size: number;
  /** Standard base64, as in the note. */
  root_hash: string;
  /** The signed C2SP checkpoint note. */
  note: string;
  created_at: number;
}

/** Where the timeline became a view of the audit log (migration 0010); one row. */
export interface TimelineStartTable {
  /** The first audit entry the view shows; earlier events are the rows of delivery_events. */
  audit_from: number;
  /** The highest delivery_events.seq when the view started. */
  seq_base: number;
}

export interface Database {
  vehicles: VehiclesTable;
  locations: LocationsTable;
  deliveries: DeliveriesTable;
  delivery_events: DeliveryEventsTable;
  commands: CommandsTable;
  vehicle_acks: VehicleAcksTable;
  api_keys: ApiKeysTable;
  audit_entries: AuditEntriesTable;
  audit_checkpoints: AuditCheckpointsTable;
  webhooks: WebhooksTable;
  webhook_outbox: WebhookOutboxTable;
  idempotency_keys: IdempotencyKeysTable;
  timeline_start: TimelineStartTable;
}
