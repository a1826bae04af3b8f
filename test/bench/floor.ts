// Owns phase 5, the floor: the gateway's two messages per action over the same kind of mTLS connection, in
// the car's provider dialect, with the same signatures (Ed25519 on the token, the car's ES256 on the ack) and
// their verification, and nothing else (no HTTP, no store, no broker, no checks beyond the signatures).
// The cars are MQTT.js clients (floor-cars-child.ts); this side writes PUBLISH packets straight to them.
import { type KeyObject, randomUUID, sign, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer, type TLSSocket } from 'node:tls';
import type { DevPkiPaths } from '../../certs/dev-pki.ts';
import { verifyAckSignature } from '../../protocols/ack-signature.ts';
import { type Command, PROTOCOL_VERSION } from '../../protocols/messages.ts';
import { providerAdapter } from '../../protocols/providers/index.ts';
import { buildClaims, TOKEN_ALG, TOKEN_ISSUER, TOKEN_TYP } from '../../protocols/token.ts';
import { commandTopic } from '../../protocols/topics.ts';
import type { CycleDriver } from './cycles.ts';
import { BENCH_VEHICLE, benchVin, carFor } from './fleet-data.ts';
import {
  CONNACK_ACCEPTED,
  CONNECT,
  connectClientId,
  DISCONNECT,
  decodePublish,
  encodePublish,
  PacketReader,
  PINGREQ,
  PINGRESP,
  PUBLISH,
  pubackFor,
  SUBSCRIBE,
  subackFor,
} from './mqtt-wire.ts';

interface Session {
  socket: TLSSocket;
  nextPacketId: number;
}

export interface FloorServer {
  port: number;
  sessions(): number;
  driver(couriers: number, cars: number): CycleDriver;
  close(): Promise<void>;
}

const ACK_TIMEOUT_MS = 10_000;
const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64url');
/** Every bench car speaks its provider's dialect (PROVIDERS.md §2); the floor translates at its edge too. */
const dialect = providerAdapter(BENCH_VEHICLE.provider);

export async function startFloorServer(input: {
  pki: DevPkiPaths;
  signingKey: KeyObject;
  kid: string;
}): Promise<FloorServer> {
  const read = (path: string): string => readFileSync(path, 'utf8');
  // Each car's certificate key, read once, as the gateway pins it at linking (TOKEN.md §9.3).
  const carKeys = new Map<string, KeyObject>();
  const carKey = (vin: string): KeyObject => {
    let key = carKeys.get(vin);
    if (!key) {
      key = new X509Certificate(read(input.pki.vehicleCert(vin))).publicKey;
      carKeys.set(vin, key);
    }
    return key;
  };
  const sessions = new Map<string, Session>();
  const waiters = new Map<string, { resolve: () => void; reject: (err: Error) => void }>();
  const server = createServer(
    {
      ca: read(input.pki.caCert),
      cert: read(input.pki.brokerCert),
      key: read(input.pki.brokerKey),
      crl: read(input.pki.crl),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      noDelay: true,
    },
    (socket) => {
      const reader = new PacketReader();
      let clientId: string | null = null;
      socket.on('data', (chunk: Buffer) => {
        for (const packet of reader.push(chunk)) {
          if (packet.type === PUBLISH) {
            const message = decodePublish(packet);
            if (message.packetId !== null) socket.write(pubackFor(message.packetId));
            let ack: ReturnType<typeof dialect.decodeAck>;
            try {
              ack = dialect.decodeAck(message.payload);
            } catch {
              continue;
            }
            const waiter = waiters.get(ack.commandId);
            waiters.delete(ack.commandId);
            if (!verifyAckSignature(ack, carKey(ack.vin)).ok)
              waiter?.reject(new Error(`ack signature of ${ack.commandId} does not verify`));
            else if (ack.outcome === 'executed') waiter?.resolve();
            else waiter?.reject(new Error(`car refused ${ack.commandId}: ${ack.reason ?? 'unspecified'}`));
          } else if (packet.type === CONNECT) {
            clientId = connectClientId(packet.body);
            sessions.set(clientId, { socket, nextPacketId: 1 });
            socket.write(CONNACK_ACCEPTED);
          } else if (packet.type === SUBSCRIBE) {
            socket.write(subackFor(packet.body));
          } else if (packet.type === PINGREQ) {
            socket.write(PINGRESP);
          } else if (packet.type === DISCONNECT) {
            socket.end();
          }
          // PUBACKs of our commands need no answer.
        }
      });
      socket.on('error', () => socket.destroy());
      socket.on('close', () => {
        if (clientId !== null && sessions.get(clientId)?.socket === socket) sessions.delete(clientId);
      });
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const header = b64(JSON.stringify({ alg: TOKEN_ALG, typ: TOKEN_TYP, kid: input.kid }));

  const command = (vin: string, deliveryId: string, action: 'unlock' | 'lock'): Promise<void> => {
    const session = sessions.get(vin);
    if (!session) return Promise.reject(new Error(`floor: ${vin} not connected`));
    const commandId = `cmd_${randomUUID().replaceAll('-', '')}`;
    const claims = buildClaims({
      issuer: TOKEN_ISSUER,
      vin,
      deliveryId,
      action,
      commandId,
      jti: randomUUID().replaceAll('-', ''),
      nowMs: Date.now(),
      ttlS: 60,
      notAfterMs: Number.MAX_SAFE_INTEGER,
    });
    const signingInput = `${header}.${b64(JSON.stringify(claims))}`;
    const signature = sign(null, Buffer.from(signingInput), input.signingKey).toString('base64url');
    const canonical: Command = {
      v: PROTOCOL_VERSION,
      type: 'command',
      commandId,
      deliveryId,
      action,
      token: `${signingInput}.${signature}`,
    };
    const payload = Buffer.from(dialect.encodeToCar(canonical));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(commandId);
        reject(new Error(`floor: no ack from ${vin} in ${ACK_TIMEOUT_MS} ms`));
      }, ACK_TIMEOUT_MS);
      waiters.set(commandId, {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      const packetId = session.nextPacketId;
      session.nextPacketId = packetId === 0xffff ? 1 : packetId + 1;
      session.socket.write(encodePublish(commandTopic(vin), packetId, payload));
    });
  };

  return {
    port,
    sessions: () => sessions.size,
    driver(couriers, cars) {
      const vinOf = (i: number, j: number): string => benchVin(carFor(i, j, couriers, cars));
      return {
        unlock: (i, j) => command(vinOf(i, j), `dlv_floor_${i}_${j}`, 'unlock'),
        lock: (i, j) => command(vinOf(i, j), `dlv_floor_${i}_${j}`, 'lock'),
      };
    },
    async close() {
      for (const { socket } of sessions.values()) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
