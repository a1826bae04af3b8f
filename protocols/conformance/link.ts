// Owns the kit's MQTT session towards one endpoint (only moves bytes): mTLS as a gateway identity, payloads out
// on the endpoint's command topic, whatever it publishes on its acks and state topics in.
import type { Socket } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { connect, type IClientOptions } from 'mqtt';
import { ackTopic, commandTopic, stateTopic } from '../topics.ts';
import { ConformanceError } from './errors.ts';

export interface LinkOptions {
  /** mqtts://host:port of the broker the endpoint uses (PROTOCOL.md §1). */
  brokerUrl: string;
  vin: string;
  /** PEM: the CA, and the kit's client certificate and key (a gateway identity: CN gateway). */
  ca: string;
  cert: string;
  key: string;
  /** gateway-<replica> (PROTOCOL.md §1); the broker refuses any other id for a gateway certificate. */
  clientId: string;
  servername?: string;
  connectTimeoutMs?: number;
}

export interface Inbound {
  topic: 'acks' | 'state';
  payload: Buffer;
  /** Local receipt time, ms. */
  receivedAt: number;
}

export interface Link {
  publish(payload: string): Promise<void>;
  onMessage(listener: (message: Inbound) => void): () => void;
  close(): Promise<void>;
}

type TlsClientOptions = IClientOptions & Pick<SecureContextOptions, 'minVersion'>;

/** Connects, subscribes to the endpoint's acks and state, and resolves once both are granted. */
export async function openLink(options: LinkOptions): Promise<Link> {
  const mqttOptions: TlsClientOptions = {
    clientId: options.clientId,
    protocolVersion: 4,
    clean: true,
    ca: options.ca,
    cert: options.cert,
    key: options.key,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    reconnectPeriod: 0,
    keepalive: 30,
    ...(options.servername === undefined ? {} : { servername: options.servername }),
  };
  const client = connect(options.brokerUrl, mqttOptions);
  const listeners = new Set<(message: Inbound) => void>();
  const topics = { [ackTopic(options.vin)]: 'acks', [stateTopic(options.vin)]: 'state' } as const;
  client.on('message', (topic, payload) => {
    const kind = topics[topic];
    if (kind === undefined) return;
    const message: Inbound = { topic: kind, payload, receivedAt: Date.now() };
    for (const listener of listeners) listener(message);
  });
  client.on('connect', () => {
    // Commands are small writes; Nagle's algorithm would hold each back for a delayed ACK (about 40 ms).
    (client.stream as Partial<Socket> | undefined)?.setNoDelay?.(true);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
      // A TLS 1.3 broker refuses a client certificate by closing after the handshake (PROTOCOL.md §1).
      client.once('close', () => reject(new Error('the broker closed the connection before CONNACK')));
    });
    const grants = await client.subscribeAsync([ackTopic(options.vin), stateTopic(options.vin)], { qos: 1 });
    if (grants.some((g) => g.qos === 128))
      throw new Error('the broker refused the subscription to acks/state');
  } catch (err) {
    client.end(true);
    throw new ConformanceError(
      'CONFORMANCE_CONNECT_FAILED',
      `${options.brokerUrl} as ${options.clientId}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  client.on('error', () => {});
  // Past the first connect, keep trying: a broker restart must not end the run.
  client.options.reconnectPeriod = 1_000;
  return {
    async publish(payload) {
      await client.publishAsync(commandTopic(options.vin), payload, { qos: 1 });
    },
    onMessage(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      listeners.clear();
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 2_000);
      });
      await Promise.race([client.endAsync(false).catch(() => undefined), gaveUp]);
      clearTimeout(timer);
      if (!client.disconnected) client.end(true);
    },
  };
}
