// Owns the broker's access decisions as pure functions: who may connect, publish, subscribe and receive what.
import {
  commandTopic,
  isProbeTopic,
  MAX_PAYLOAD_BYTES,
  parseTopic,
  stateTopic,
  TOPIC_ROOT,
} from '../../protocols/index.ts';

export type Identity = { kind: 'vehicle'; vin: string } | { kind: 'gateway'; name: string };

/** How logs and limits name an identity: the VIN, or gateway:<name>. */
export const identityLabel = (identity: Identity): string =>
  identity.kind === 'vehicle' ? identity.vin : `gateway:${identity.name}`;

export type AdmissionDenial =
  | 'CERT_MISSING'
  | 'CERT_UNTRUSTED'
  | 'CERT_EXPIRED'
  | 'CERT_NOT_YET_VALID'
  | 'CERT_PURPOSE_INVALID'
  | 'CERT_REVOKED'
  | 'CRL_UNUSABLE'
  | 'CERT_REJECTED'
  | 'IDENTITY_UNKNOWN';

/** What the TLS layer learned about the peer, read off the socket once the handshake is over. */
export interface PeerFacts {
  /** The client certificate; null when the client sent none. */
  certificate: { serial: string; notBefore: number; notAfter: number } | null;
  /** OpenSSL's verdict on the chain, as Node names it (authorizationError); null when it verified. */
  verifyError: string | null;
  /** The identity the certificate binds (identity.ts), null when it binds none. */
  identity: Identity | null;
  /** The serial is in the broker's current revocation set. */
  revoked: boolean;
  now: number;
}

/** OpenSSL verify results (X509_V_ERR_*, Node's spelling) by the refusal they mean. */
const VERIFY_ERRORS: Record<string, AdmissionDenial> = {
  CERT_HAS_EXPIRED: 'CERT_EXPIRED',
  CERT_NOT_YET_VALID: 'CERT_NOT_YET_VALID',
  CERT_REVOKED: 'CERT_REVOKED',
  INVALID_PURPOSE: 'CERT_PURPOSE_INVALID',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'CERT_UNTRUSTED',
  UNABLE_TO_GET_ISSUER_CERT: 'CERT_UNTRUSTED',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'CERT_UNTRUSTED',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'CERT_UNTRUSTED',
  SELF_SIGNED_CERT_IN_CHAIN: 'CERT_UNTRUSTED',
  CERT_SIGNATURE_FAILURE: 'CERT_UNTRUSTED',
  CERT_UNTRUSTED: 'CERT_UNTRUSTED',
  UNABLE_TO_GET_CRL: 'CRL_UNUSABLE',
  CRL_HAS_EXPIRED: 'CRL_UNUSABLE',
  CRL_NOT_YET_VALID: 'CRL_UNUSABLE',
  CRL_SIGNATURE_FAILURE: 'CRL_UNUSABLE',
  UNABLE_TO_DECRYPT_CRL_SIGNATURE: 'CRL_UNUSABLE',
};

/**
 * Whether a TLS peer may speak MQTT at all, in order: a certificate, that OpenSSL verified (chain to the
 * CA, validity, clientAuth EKU, the CRL), then checks OpenSSL skips on a resumed session (RFC 8446 §2.2
 * resumes without a certificate): validity against our clock and the serial against the revocation set
 * as it is now; last, a certificate that binds no identity. Anything OpenSSL reports that is not mapped
 * is still a refusal (CERT_REJECTED).
 */
export function decideAdmission(peer: PeerFacts): AdmissionDenial | null {
  if (peer.certificate === null) return 'CERT_MISSING';
  if (peer.verifyError !== null) return VERIFY_ERRORS[peer.verifyError] ?? 'CERT_REJECTED';
  if (peer.now < peer.certificate.notBefore) return 'CERT_NOT_YET_VALID';
  // RFC 5280 §4.1.2.5: notAfter is the last instant the certificate is valid.
  if (peer.now > peer.certificate.notAfter) return 'CERT_EXPIRED';
  if (peer.revoked) return 'CERT_REVOKED';
  if (peer.identity === null) return 'IDENTITY_UNKNOWN';
  return null;
}

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
  // A replica's own certificate names it whole (gateway-r2, certs/replicas.ts): its client id is that name.
  const m = GATEWAY_CLIENT_ID.exec(clientId);
  if (clientId !== identity.name && (!m || m[1] !== identity.name)) return 'CLIENT_ID_MISMATCH';
  if (will) return 'WILL_FORBIDDEN';
  return null;
}

export type PublishDenial = 'TOPIC_FORBIDDEN' | 'RETAIN_FORBIDDEN' | 'PAYLOAD_TOO_LARGE';

export type SubscribeDenial = 'SUBSCRIBE_FORBIDDEN';

/**
 * A car writes only its own acks and state; only the gateway writes commands, and its subscription probes
 * (PROTOCOL.md §2.1), which no VIN names; nothing is retained.
 */
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
  return t.kind === 'commands' || isProbeTopic(packet.topic) ? null : 'TOPIC_FORBIDDEN';
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
