// Owns the embedded MQTT broker: aedes behind a TLS 1.3 mutual-TLS listener, with every aedes hook overridden.
import type { AddressInfo } from 'node:net';
import { createServer, type TLSSocket } from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { identityOf } from './identity.ts';
import { allowDeliver, allowSubscribe, decideConnect, decidePublish, type Identity } from './policy.ts';

export interface BrokerDeps {
  tls: { ca: string; cert: string; key: string; crl?: string };
  host: string;
  port: number;
  logger: Logger;
  /** Revocation re-checked at CONNECT, since a resumed TLS session skips the CRL. */
  isRevoked?: (serialHex: string) => boolean;
}

export interface Broker {
  port: number;
  aedes: Aedes;
  connectedClients(): number;
  close(): Promise<void>;
}

class ConnectRefused extends Error {
  readonly returnCode: number;
  constructor(message: string, returnCode: number) {
    super(message);
    this.returnCode = returnCode;
  }
}

// CONNACK return codes [MQTT-3.2.2.3]: 2 identifier rejected, 5 not authorized.
const IDENTIFIER_REJECTED = 2;
const NOT_AUTHORIZED = 5;

export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  const { logger } = deps;
  const identities = new WeakMap<Client, Identity>();

  const aedes = await Aedes.createBroker({
    // Never let aedes publish $SYS heartbeats to anyone; authorizeForward would drop them anyway.
    heartbeatInterval: 3_600_000,
    maxClientsIdLength: 64,
    preConnect(client, _packet, callback) {
      const socket = client.conn as TLSSocket;
      // The plain peer-certificate object, not getPeerX509Certificate(): that one copies the certificate
      // through OpenSSL's decoder again, twice the cost per connection, and only the DER is needed here.
      const peer = socket.authorized ? socket.getPeerCertificate(false) : undefined;
      const cert = peer?.raw ? { raw: peer.raw, serialNumber: peer.serialNumber } : undefined;
      const identity = cert ? identityOf(cert) : null;
      if (!cert || !identity) {
        logger.warn(
          { event: 'broker.connect_refused', reason: 'IDENTITY_UNKNOWN' },
          'no usable client identity',
        );
        return callback(null, false);
      }
      if (deps.isRevoked?.(cert.serialNumber.toUpperCase())) {
        logger.warn({ event: 'broker.connect_refused', reason: 'CERT_REVOKED' }, 'revoked certificate');
        return callback(null, false);
      }
      identities.set(client, identity);
      callback(null, true);
    },
    authenticate(client, _username, _password, done) {
      const identity = identities.get(client);
      const willPacket = (client as unknown as { _will?: { topic: string; retain?: boolean } })._will;
      const will = willPacket ? { topic: willPacket.topic, retain: Boolean(willPacket.retain) } : null;
      const denial = decideConnect(identity ?? null, client.id, will);
      if (denial) {
        logger.warn(
          { event: 'broker.connect_refused', reason: denial, clientId: client.id },
          'connect refused',
        );
        const code = denial === 'CLIENT_ID_MISMATCH' ? IDENTIFIER_REJECTED : NOT_AUTHORIZED;
        return done(new ConnectRefused(denial, code) as AuthenticateError, false);
      }
      done(null, true);
    },
    authorizePublish(client, packet, callback) {
      const identity = client ? identities.get(client) : undefined;
      if (!identity) return callback(new Error('PUBLISH_FORBIDDEN'));
      const denial = decidePublish(identity, {
        topic: packet.topic,
        retain: packet.retain,
        payloadBytes: Buffer.byteLength(packet.payload),
      });
      if (denial) {
        logger.warn(
          { event: 'broker.publish_refused', reason: denial, clientId: client?.id },
          'publish refused',
        );
        return callback(new Error(denial));
      }
      callback(null);
    },
    authorizeSubscribe(client, subscription, callback) {
      const identity = identities.get(client);
      if (!identity || !allowSubscribe(identity, subscription.topic)) {
        logger.warn({ event: 'broker.subscribe_refused', clientId: client.id }, 'subscribe refused');
        // A null subscription answers with SUBACK 0x80 [MQTT-3.9.3] and keeps the connection.
        return callback(null, null);
      }
      callback(null, subscription);
    },
    authorizeForward(client, packet) {
      const identity = identities.get(client);
      return identity && allowDeliver(identity, packet.topic) ? packet : null;
    },
    published(_packet, _client, callback) {
      callback(null);
    },
  });

  const server = createServer(
    {
      ca: deps.tls.ca,
      cert: deps.tls.cert,
      key: deps.tls.key,
      ...(deps.tls.crl ? { crl: deps.tls.crl } : {}),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      // MQTT packets are small and answered at once (PUBACK, then the next PUBLISH): with Nagle's algorithm
      // a second small write waits for the peer's delayed ACK, about 40 ms, on every command round trip.
      noDelay: true,
    },
    (socket) => aedes.handle(socket),
  );
  server.on('tlsClientError', (err) => {
    logger.warn({ event: 'broker.tls_refused', reason: err.message }, 'TLS handshake refused');
  });
  aedes.on('clientError', (client, err) => {
    logger.debug({ event: 'broker.client_error', clientId: client.id, reason: err.message }, 'client error');
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
    async close() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
