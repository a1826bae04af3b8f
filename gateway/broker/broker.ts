// Owns the embedded MQTT broker: aedes behind a TLS 1.3 mutual-TLS listener, with every aedes hook overridden.

import type { AddressInfo } from 'node:net';
import { createServer, type SecureContextOptions, type TLSSocket } from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { type CrlContents, readCrl, serialKey } from '../../certs/index.ts';
import { MAX_PACKET_BYTES } from '../../protocols/index.ts';
import { VIN_PATTERN } from '../../protocols/vin.ts';
import { GuardedConnection } from './connection.ts';
import { BrokerError, type BrokerRefusalCode, ConnectRefused } from './errors.ts';
import { identityOf } from './identity.ts';
import {
  allowDeliver,
  allowSubscribe,
  decideAdmission,
  decideConnect,
  decidePublish,
  type Identity,
  identityLabel,
} from './policy.ts';
import { createFrameScanner, createTokenBucket, type TokenBucket } from './wire.ts';

export interface RateLimit {
  /** PUBLISH packets an identity may send at once. */
  burst: number;
  /** PUBLISH packets per second it may sustain. */
  perSecond: number;
}

export interface BrokerLimits {
  /** Largest whole MQTT packet, fixed header included (PROTOCOL.md §2). */
  maxPacketBytes: number;
  /** Per identity, across its connections, so reconnecting does not refill the bucket. */
  publishRate: Record<Identity['kind'], RateLimit>;
  /** A connection without a TLS handshake and a CONNECT by then is dropped. */
  connectTimeoutMs: number;
}

/** A car sends a state report every 30 s and one ack per command; the gateway sends every car's commands. */
export const DEFAULT_BROKER_LIMITS: BrokerLimits = {
  maxPacketBytes: MAX_PACKET_BYTES,
  publishRate: { vehicle: { burst: 20, perSecond: 5 }, gateway: { burst: 2_000, perSecond: 1_000 } },
  connectTimeoutMs: 10_000,
};

export interface BrokerDeps {
  /** PEM. The CRL is required: a broker that cannot revoke does not start. */
  tls: { ca: string; cert: string; key: string; crl: string };
  host: string;
  port: number;
  logger: Logger;
  limits?: Partial<BrokerLimits>;
  /** Milliseconds since the epoch; certificate validity on resumed sessions and the rate limit use it. */
  now?: () => number;
}

export type RefusalStage = 'tls' | 'wire' | 'connect' | 'publish' | 'subscribe' | 'session';

export interface BrokerRefusal {
  stage: RefusalStage;
  code: BrokerRefusalCode;
  /** The VIN or gateway:<name>, once a certificate proved one. */
  identity?: string;
  clientId?: string;
  /** Certificate serial, upper-case hex. */
  serial?: string;
  /** The TLS session was resumed: OpenSSL ran no certificate check in this handshake. */
  resumed?: boolean;
  /** OpenSSL's verify result or the TLS error, for TLS refusals. */
  detail?: string;
}

export interface CrlReload {
  crlNumber: bigint | null;
  revoked: number;
  /** Identities whose live session was closed because their serial is now revoked. */
  disconnected: string[];
}

export interface Broker {
  port: number;
  aedes: Aedes;
  connectedClients(): number;
  /**
   * Applies a re-signed CRL without a restart: new handshakes check it, every connection re-checks its
   * serial against it, and live sessions of revoked certificates are closed at once. A CRL that does
   * not verify, is older than the one in use or has expired is refused with a BrokerError, and the one
   * in use stays.
   */
  reloadCrl(pem: string): CrlReload;
  onRefusal(listener: (refusal: BrokerRefusal) => void): () => void;
  close(): Promise<void>;
}

// CONNACK return codes [MQTT-3.2.2.3]: 2 identifier rejected, 5 not authorized.
const IDENTIFIER_REJECTED = 2;
const NOT_AUTHORIZED = 5;

const REFUSAL_EVENTS: Record<RefusalStage, string> = {
  tls: 'broker.tls_refused',
  wire: 'broker.wire_refused',
  connect: 'broker.connect_refused',
  publish: 'broker.publish_refused',
  subscribe: 'broker.subscribe_refused',
  session: 'broker.session_revoked',
};

/** What the TLS layer established for one connection, kept for the MQTT hooks. */
interface Admitted {
  identity: Identity;
  label: string;
  serial: string;
}

function parseCrl(pem: string, caPem: string): CrlContents {
  try {
    return readCrl(pem, caPem);
  } catch (err) {
    throw new BrokerError('CRL_INVALID', (err as Error).message, { cause: err });
  }
}

export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  const { logger } = deps;
  const now = deps.now ?? Date.now;
  const limits: BrokerLimits = { ...DEFAULT_BROKER_LIMITS, ...deps.limits };
  let crl = parseCrl(deps.tls.crl, deps.tls.ca);
  const isRevoked = (serial: string): boolean => crl.revoked.has(serial);

  const listeners = new Set<(refusal: BrokerRefusal) => void>();
  const refuse = (refusal: BrokerRefusal, message: string): void => {
    logger.warn({ event: REFUSAL_EVENTS[refusal.stage], ...refusal }, message);
    for (const listener of listeners) listener(refusal);
  };

  // Keyed by the connection aedes reads (client.conn), set before aedes sees it.
  const admissions = new WeakMap<object, Admitted>();
  const live = new Map<GuardedConnection, Admitted>();
  const buckets = new Map<string, TokenBucket>();
  const bucketFor = (admitted: Admitted): TokenBucket => {
    let bucket = buckets.get(admitted.label);
    if (!bucket) {
      bucket = createTokenBucket({ ...limits.publishRate[admitted.identity.kind], now });
      buckets.set(admitted.label, bucket);
    }
    return bucket;
  };
  const admittedOf = (client: Client | null): Admitted | undefined =>
    client ? admissions.get(client.conn) : undefined;

  const aedes = await Aedes.createBroker({
    // Never let aedes publish $SYS heartbeats to anyone; authorizeForward would drop them anyway.
    heartbeatInterval: 3_600_000,
    maxClientsIdLength: 64,
    connectTimeout: limits.connectTimeoutMs,
    preConnect(client, _packet, callback) {
      const admitted = admittedOf(client);
      // The listener admits every connection it hands over; this is the second lock on the same door.
      const code = !admitted ? 'IDENTITY_UNKNOWN' : isRevoked(admitted.serial) ? 'CERT_REVOKED' : null;
      if (code !== null) {
        refuse(
          { stage: 'connect', code, identity: admitted?.label, serial: admitted?.serial },
          'connect refused',
        );
        // An error (not `false`) makes aedes close the socket: with `false` it would leave it open.
        return callback(new ConnectRefused(code, NOT_AUTHORIZED), false);
      }
      callback(null, true);
    },
    authenticate(client, _username, _password, done) {
      const admitted = admittedOf(client);
      const willPacket = (client as unknown as { _will?: { topic: string; retain?: boolean } })._will;
      const will = willPacket ? { topic: willPacket.topic, retain: Boolean(willPacket.retain) } : null;
      // The CRL may have been reloaded since preConnect; a resumed session never saw it at all.
      const denial =
        admitted && isRevoked(admitted.serial)
          ? 'CERT_REVOKED'
          : decideConnect(admitted?.identity ?? null, client.id, will);
      if (denial) {
        refuse(
          { stage: 'connect', code: denial, clientId: client.id, identity: admitted?.label },
          'connect refused',
        );
        const code = denial === 'CLIENT_ID_MISMATCH' ? IDENTIFIER_REJECTED : NOT_AUTHORIZED;
        return done(new ConnectRefused(denial, code) as unknown as AuthenticateError, false);
      }
      done(null, true);
    },
    authorizePublish(client, packet, callback) {
      const admitted = admittedOf(client);
      // aedes passes a null client only for wills left by clients it no longer knows.
      if (!admitted) return callback(new Error('IDENTITY_UNKNOWN'));
      const denial = isRevoked(admitted.serial)
        ? 'CERT_REVOKED'
        : decidePublish(admitted.identity, {
            topic: packet.topic,
            retain: packet.retain,
            payloadBytes: Buffer.byteLength(packet.payload),
          });
      if (denial) {
        refuse(
          { stage: 'publish', code: denial, clientId: client?.id, identity: admitted.label },
          'publish refused',
        );
        // aedes closes the connection on an error: MQTT 3.1.1 has no way to refuse one PUBLISH [MQTT-3.3.5-2].
        return callback(new Error(denial));
      }
      callback(null);
    },
    authorizeSubscribe(client, subscription, callback) {
      const admitted = admittedOf(client);
      if (!admitted || !allowSubscribe(admitted.identity, subscription.topic)) {
        refuse(
          { stage: 'subscribe', code: 'SUBSCRIBE_FORBIDDEN', clientId: client.id, identity: admitted?.label },
          'subscribe refused',
        );
        // A null subscription answers with SUBACK 0x80 [MQTT-3.9.3] and keeps the connection.
        return callback(null, null);
      }
      callback(null, subscription);
    },
    authorizeForward(client, packet) {
      const admitted = admittedOf(client);
      return admitted && allowDeliver(admitted.identity, packet.topic) ? packet : null;
    },
    published(_packet, _client, callback) {
      callback(null);
    },
  });

  const contextOptions = (crlPem: string): SecureContextOptions => ({
    ca: deps.tls.ca,
    cert: deps.tls.cert,
    key: deps.tls.key,
    crl: crlPem,
    minVersion: 'TLSv1.3',
  });

  const admit = (socket: TLSSocket): void => {
    // The plain peer-certificate object, not getPeerX509Certificate(): that one runs the certificate
    // through OpenSSL's decoder a second time, and the DER, serial and validity are all that is needed.
    // With no certificate it is an empty object.
    const peer = socket.getPeerCertificate(false);
    const certificate = peer?.raw
      ? { raw: peer.raw, serialNumber: peer.serialNumber, validFrom: peer.valid_from, validTo: peer.valid_to }
      : undefined;
    const serial = certificate ? serialKey(certificate.serialNumber) : undefined;
    const identity = certificate ? identityOf(certificate) : null;
    const resumed = socket.isSessionReused();
    const verifyError = socket.authorized ? null : String(socket.authorizationError ?? 'UNVERIFIED');
    const denial = decideAdmission({
      certificate:
        certificate && serial
          ? {
              serial,
              notBefore: Date.parse(certificate.validFrom),
              notAfter: Date.parse(certificate.validTo),
            }
          : null,
      verifyError,
      identity,
      revoked: serial !== undefined && isRevoked(serial),
      now: now(),
    });
    if (denial !== null || identity === null || serial === undefined) {
      refuse(
        {
          stage: 'tls',
          code: denial ?? 'IDENTITY_UNKNOWN',
          serial,
          resumed,
          ...(identity ? { identity: identityLabel(identity) } : {}),
          ...(verifyError ? { detail: verifyError } : {}),
        },
        'client certificate refused',
      );
      socket.destroy();
      return;
    }
    const admitted: Admitted = { identity, label: identityLabel(identity), serial };
    const bucket = bucketFor(admitted);
    const scanner = createFrameScanner({
      maxPacketBytes: limits.maxPacketBytes,
      allowPublish: () => bucket.take(),
    });
    const connection = new GuardedConnection(socket, scanner, (violation) => {
      refuse(
        {
          stage: 'wire',
          code: violation,
          identity: admitted.label,
          clientId: (connection as unknown as { client?: Client }).client?.id ?? undefined,
        },
        'connection dropped',
      );
    });
    admissions.set(connection, admitted);
    live.set(connection, admitted);
    connection.once('close', () => live.delete(connection));
    aedes.handle(connection);
  };

  // rejectUnauthorized is off so that the reason for a refusal is known and logged: Node's own check
  // (the same verify result, read in JS after the handshake) would close the socket without saying why.
  // admit() refuses every peer OpenSSL did not verify before a byte of MQTT is read.
  const server = createServer(
    {
      ...contextOptions(deps.tls.crl),
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: limits.connectTimeoutMs,
      // MQTT packets are small and answered at once (PUBACK, then the next PUBLISH): with Nagle's algorithm
      // a second small write waits for the peer's delayed ACK, about 40 ms, on every command round trip.
      noDelay: true,
    },
    admit,
  );
  server.on('tlsClientError', (err: NodeJS.ErrnoException) => {
    refuse(
      { stage: 'tls', code: 'TLS_HANDSHAKE_FAILED', detail: err.code ?? err.message },
      'TLS handshake failed',
    );
  });
  aedes.on('clientError', (client, err) => {
    logger.debug({ event: 'broker.client_error', clientId: client.id, reason: err.message }, 'client error');
  });
  aedes.on('connectionError', (_client, err) => {
    logger.debug({ event: 'broker.connection_error', reason: err.message }, 'connection error');
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(deps.port, deps.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  logger.info(
    { event: 'broker.listening', host: deps.host, port },
    'embedded MQTT broker listening (TLS 1.3, mTLS)',
  );

  return {
    port,
    aedes,
    connectedClients: () => aedes.connectedClients,
    reloadCrl(pem) {
      const next = parseCrl(pem, deps.tls.ca);
      if (crl.crlNumber !== null && (next.crlNumber === null || next.crlNumber < crl.crlNumber)) {
        throw new BrokerError(
          'CRL_STALE',
          `CRL number ${next.crlNumber} is older than the one in use (${crl.crlNumber})`,
        );
      }
      if (next.nextUpdate !== null && next.nextUpdate.getTime() <= now()) {
        // OpenSSL would refuse every client under it (CRL_HAS_EXPIRED).
        throw new BrokerError('CRL_EXPIRED', `CRL expired at ${next.nextUpdate.toISOString()}`);
      }
      // The session ticket keys are kept, so the fleet's resumptions survive a reload. A revoked car can
      // then resume too, and that is why admit() and the hooks check the serial, not only OpenSSL.
      server.setSecureContext({ ...contextOptions(pem), ticketKeys: server.getTicketKeys() });
      crl = next;
      const disconnected: string[] = [];
      for (const [connection, admitted] of live) {
        if (!isRevoked(admitted.serial)) continue;
        refuse(
          { stage: 'session', code: 'CERT_REVOKED', identity: admitted.label, serial: admitted.serial },
          'live session of a revoked certificate closed',
        );
        disconnected.push(admitted.label);
        connection.destroy();
      }
      logger.info(
        {
          event: 'broker.crl_reloaded',
          crlNumber: next.crlNumber?.toString(),
          revoked: next.revoked.size,
          disconnected,
        },
        'CRL reloaded',
      );
      return { crlNumber: next.crlNumber, revoked: next.revoked.size, disconnected };
    },
    onRefusal(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      for (const connection of live.keys()) connection.destroy();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Sessions on the embedded broker whose client id is a VIN (the broker ties it to the certificate). */
export function vehicleSessions(broker: Broker): number {
  // aedes keeps its sessions in `clients` but does not declare it in its types.
  const clients = (broker.aedes as unknown as { clients: Record<string, { id: string }> }).clients;
  return Object.values(clients).filter((c) => VIN_PATTERN.test(c.id)).length;
}
