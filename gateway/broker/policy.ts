// Owns the broker's access decisions as pure functions: who may connect, publish, subscribe and receive what.
import {
  commandTopic,
  MAX_PAYLOAD_BYTES,
  parseTopic,
  stateTopic,
  TOPIC_ROOT,
} from '../../protocols/index.ts';

export type Identity = { kind: 'vehicle'; vin: string } | { kind: 'gateway'; name: string };

export type ConnectDenial = 'CLIENT_ID_MISMATCH' | 'WILL_FORBIDDEN' | 'IDENTITY_UNKNOWN';

const GATEWAY_CLIENT_ID = /^([A-Za-z0-9_]{1,32})(-[A-Za-z0-9_]{1,32})?$/;

/**
 * A car's client id must be its VIN, exactly (AWS IoT's thing-name rule); a gateway may hold one connection
 * per replica, so its ids are "<name>" or "<name>-<replica>". Wildcards never match either pattern.
 */
export function decideConnect(
  identity: Identity | null,
  clientId: string,
  will: { topic: string; retain: boolean } | null,
): ConnectDenial | null {
  if (!identity) return 'IDENTITY_UNKNOWN';
  if (identity.kind === 'vehicle') {
    if (clientId !== identity.vin) return 'CLIENT_ID_MISMATCH';
    // A car's will may only announce its own absence, on its own state topic, never retained.
    if (will && (will.topic !== stateTopic(identity.vin) || will.retain)) return 'WILL_FORBIDDEN';
    return null;
  }
  const m = GATEWAY_CLIENT_ID.exec(clientId);
  if (!m || m[1] !== identity.name) return 'CLIENT_ID_MISMATCH';
  if (will) return 'WILL_FORBIDDEN';
  return null;
}

export type PublishDenial = 'TOPIC_FORBIDDEN' | 'RETAIN_FORBIDDEN' | 'PAYLOAD_TOO_LARGE';

/** A car writes only its own acks and state; only the gateway writes commands; nothing is retained. */
export function decidePublish(
  identity: Identity,
  packet: { topic: string; retain: boolean; payloadBytes: number },
): PublishDenial | null {
  if (packet.retain) return 'RETAIN_FORBIDDEN';
  if (packet.payloadBytes > MAX_PAYLOAD_BYTES) return 'PAYLOAD_TOO_LARGE';
  const t = parseTopic(packet.topic);
  if (!t) return 'TOPIC_FORBIDDEN';
  if (identity.kind === 'vehicle') {
    return t.vin === identity.vin && (t.kind === 'acks' || t.kind === 'state') ? null : 'TOPIC_FORBIDDEN';
  }
  return t.kind === 'commands' ? null : 'TOPIC_FORBIDDEN';
}

const GATEWAY_FILTERS = new Set([`${TOPIC_ROOT}/+/acks`, `${TOPIC_ROOT}/+/state`]);

/** A car reads only its own command topic; the gateway reads every car's acks and state, nothing else. */
export function allowSubscribe(identity: Identity, filter: string): boolean {
  if (identity.kind === 'vehicle') return filter === commandTopic(identity.vin);
  if (GATEWAY_FILTERS.has(filter)) return true;
  const t = parseTopic(filter);
  return t !== null && (t.kind === 'acks' || t.kind === 'state');
}

/** Last line of defence at delivery time: the same rule as subscribe, applied to the concrete topic. */
export function allowDeliver(identity: Identity, topic: string): boolean {
  const t = parseTopic(topic);
  if (!t) return false;
  if (identity.kind === 'vehicle') return t.vin === identity.vin && t.kind === 'commands';
  return t.kind === 'acks' || t.kind === 'state';
}
