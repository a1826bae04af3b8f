// Owns phase 5's cars: MQTT.js clients with the simulator's TLS options that read each command in their
// provider's dialect, verify the Ed25519 signature of its token and publish an ack signed with the car's key
// (TOKEN.md §9), and nothing else (no claim checks, no replay memory, no state machine).
import { createPrivateKey, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { devPkiPaths } from '../../certs/dev-pki.ts';
import { signAck } from '../../protocols/ack-signature.ts';
import { TrustedKeysFileSchema } from '../../protocols/keys.ts';
import { PROTOCOL_VERSION } from '../../protocols/messages.ts';
import { providerAdapter } from '../../protocols/providers/index.ts';
import { ackTopic, commandTopic } from '../../protocols/topics.ts';
import { BENCH_VEHICLE, benchVin } from './fleet-data.ts';
import { idleMemory, serve } from './ipc.ts';

export interface FloorCarsParams {
  port: number;
  pkiDir: string;
  count: number;
  concurrency: number;
}

const clients: MqttClient[] = [];
const dialect = providerAdapter(BENCH_VEHICLE.provider);

const { emit } = serve({
  async start(params: FloorCarsParams): Promise<{ connected: number; ms: number; cpuMicros: number }> {
    const paths = devPkiPaths(params.pkiDir);
    const read = (path: string): string => readFileSync(path, 'utf8');
    const ca = read(paths.caCert);
    const [jwk] = TrustedKeysFileSchema.parse(JSON.parse(read(paths.trustedKeys))).keys;
    if (!jwk) throw new Error('no trusted key');
    const publicKey = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, format: 'jwk' });
    const started = performance.now();
    const cpu = process.cpuUsage();
    let next = 0;
    let connected = 0;
    let lastEmit = 0;
    const connectOne = async (vin: string): Promise<void> => {
      const key = read(paths.vehicleKey(vin));
      const carKey = createPrivateKey(key);
      const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${params.port}`, {
        clientId: vin,
        protocolVersion: 4,
        clean: false,
        ca,
        cert: read(paths.vehicleCert(vin)),
        key,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        keepalive: 30,
      } as mqtt.IClientOptions);
      (client.stream as Partial<Socket>).setNoDelay?.(true);
      client.on('message', (_topic, payload) => {
        const command = dialect.decodeToCar(payload);
        if (command.type !== 'command') return;
        const cut = command.token.lastIndexOf('.');
        const ok = verify(
          null,
          Buffer.from(command.token.slice(0, cut)),
          publicKey,
          Buffer.from(command.token.slice(cut + 1), 'base64url'),
        );
        const ack = signAck(
          {
            v: PROTOCOL_VERSION,
            type: 'ack',
            vin,
            commandId: command.commandId,
            deliveryId: command.deliveryId,
            action: command.action,
            outcome: ok ? 'executed' : 'refused',
            ...(ok ? {} : { reason: 'TOKEN_SIGNATURE_INVALID' }),
            locked: command.action === 'lock',
            at: Date.now(),
          },
          carKey,
        );
        client.publish(ackTopic(vin), dialect.encodeAck(ack), { qos: 1 });
      });
      await client.subscribeAsync(commandTopic(vin), { qos: 1 });
      clients.push(client);
      connected++;
      const now = performance.now();
      if (connected === params.count || now - lastEmit > 100) {
        lastEmit = now;
        emit('progress', { done: connected, total: params.count });
      }
    };
    const lane = async (): Promise<void> => {
      while (next < params.count) await connectOne(benchVin(next++));
    };
    await Promise.all(Array.from({ length: Math.min(params.concurrency, params.count) }, lane));
    const used = process.cpuUsage(cpu);
    return { connected, ms: performance.now() - started, cpuMicros: used.user + used.system };
  },

  async memory(): Promise<{ memory: NodeJS.MemoryUsage }> {
    return { memory: await idleMemory() };
  },

  cpu: (): NodeJS.CpuUsage => process.cpuUsage(),
});
