// Test harness: an MQTT proxy on loopback that ends each client's TLS, opens its own to the broker with the same
// identity's certificate, and, once deafened, swallows every PUBLISH the broker sends to the gateway sessions open
// then: a broker that granted their subscriptions and delivers nothing.
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import type { DevPkiPaths } from '../../certs/index.ts';
import { brokerTarget } from '../../protocols/index.ts';

export interface DeafProxy {
  url: string;
  /** The gateway sessions open now stop receiving PUBLISH packets; later sessions are not affected. */
  deafen(): void;
  /** PUBLISH packets swallowed so far. */
  swallowed(): number;
  close(): Promise<void>;
}

/** Splits a byte stream into whole MQTT packets (fixed header, Remaining Length: MQTT 3.1.1 §2.2.3). */
function packetSplitter(onPacket: (packet: Buffer) => void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      let length = 0;
      let multiplier = 1;
      let i = 1;
      for (; i < pending.length && i <= 4; i++) {
        const byte = pending[i] as number;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) break;
      }
      if (i >= pending.length || i > 4) return;
      const total = i + 1 + length;
      if (pending.length < total) return;
      onPacket(pending.subarray(0, total));
      pending = pending.subarray(total);
    }
  };
}

export async function startDeafProxy(pki: DevPkiPaths, brokerUrl: string): Promise<DeafProxy> {
  const upstream = new URL(brokerTarget(brokerUrl).url);
  const ca = readFileSync(pki.caCert, 'utf8');
  const deafSockets = new Set<tls.TLSSocket>();
  /** Each open client connection, true for a gateway's. */
  const live = new Map<tls.TLSSocket, boolean>();
  let swallowed = 0;
  const server = tls.createServer({
    ca,
    cert: readFileSync(pki.brokerCert, 'utf8'),
    key: readFileSync(pki.brokerKey, 'utf8'),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
  });
  server.on('secureConnection', (client) => {
    const cn = String(client.getPeerCertificate().subject?.CN ?? '');
    const gateway = !/^[A-HJ-NPR-Z0-9]{17}$/.test(cn);
    const broker = tls.connect({
      host: upstream.hostname,
      port: Number(upstream.port),
      servername: 'localhost',
      ca,
      cert: readFileSync(gateway ? pki.gatewayCert : pki.vehicleCert(cn), 'utf8'),
      key: readFileSync(gateway ? pki.gatewayKey : pki.vehicleKey(cn), 'utf8'),
    });
    live.set(client, gateway);
    const split = packetSplitter((packet) => {
      // PUBLISH is packet type 3 (MQTT 3.1.1 §3.3).
      if (deafSockets.has(client) && (packet[0] as number) >> 4 === 3) {
        swallowed++;
        return;
      }
      client.write(packet);
    });
    broker.on('data', split);
    client.on('data', (chunk) => broker.write(chunk));
    const end = (): void => {
      live.delete(client);
      deafSockets.delete(client);
      client.destroy();
      broker.destroy();
    };
    client.on('close', end);
    broker.on('close', end);
    client.on('error', end);
    broker.on('error', end);
  });
  // An unauthorised client is dropped by TLS; its error must not fail the test process.
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `mqtts://127.0.0.1:${port}`,
    deafen() {
      for (const [socket, gateway] of live) if (gateway) deafSockets.add(socket);
    },
    swallowed: () => swallowed,
    async close() {
      for (const socket of live.keys()) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
