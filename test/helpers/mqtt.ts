// Test harness: MQTT clients that report how a broker answered, collect what they receive, or speak raw bytes.
import tls, { type TLSSocket } from 'node:tls';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

export interface Tls {
  ca: string;
  cert?: string;
  key?: string;
}

/** How a broker answered a connection attempt. */
export type Outcome =
  | { kind: 'connected' }
  /** A CONNACK with a non-zero return code [MQTT-3.2.2.3]. */
  | { kind: 'refused'; returnCode: number }
  /** Closed before any CONNACK: how a TLS 1.3 refusal of a client certificate looks to the client. */
  | { kind: 'closed' };

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
}

export interface TestClient {
  client: MqttClient;
  outcome: Outcome;
  received: Received[];
  /** Times the connection closed after it was up. */
  closes: number;
  /** Resolves with the first message matching, waiting for it if needed. */
  waitFor(match: (m: Received) => boolean): Promise<Received>;
  /** Resolves when the connection is closed (at once if it is). */
  closed(): Promise<void>;
  end(): Promise<void>;
}

/** Connects once (no reconnects) and reports the outcome instead of throwing. */
export async function connectClient(
  url: string,
  tlsOptions: Tls,
  options: IClientOptions & { clientId: string },
): Promise<TestClient> {
  const client = mqtt.connect(url, {
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    rejectUnauthorized: true,
    ca: tlsOptions.ca,
    ...(tlsOptions.cert ? { cert: tlsOptions.cert, key: tlsOptions.key } : {}),
    ...options,
  });
  const received: Received[] = [];
  const wakers = new Set<() => void>();
  let isClosed = false;
  client.on('message', (topic, payload, packet) => {
    received.push({ topic, payload: payload.toString(), retain: packet.retain });
    for (const wake of wakers) wake();
  });
  client.on('error', () => {}); // the outcome says what happened
  const outcome = await new Promise<Outcome>((resolve) => {
    let returnCode: number | null = null;
    client.once('connect', () => resolve({ kind: 'connected' }));
    client.on('error', (err: Error & { code?: unknown }) => {
      if (typeof err.code === 'number') returnCode = err.code;
    });
    client.once('close', () =>
      resolve(returnCode === null ? { kind: 'closed' } : { kind: 'refused', returnCode }),
    );
  });
  const result: TestClient = {
    client,
    outcome,
    received,
    closes: 0,
    waitFor(match) {
      return new Promise((resolve) => {
        const check = (): void => {
          const found = received.find(match);
          if (found) {
            wakers.delete(check);
            resolve(found);
          }
        };
        wakers.add(check);
        check();
      });
    },
    closed() {
      return isClosed || outcome.kind !== 'connected'
        ? Promise.resolve()
        : new Promise((resolve) => client.once('close', () => resolve()));
    },
    async end() {
      await client.endAsync(true).catch(() => undefined);
    },
  };
  client.on('close', () => {
    isClosed = true;
    if (outcome.kind === 'connected') result.closes++;
  });
  if (outcome.kind !== 'connected') isClosed = true;
  return result;
}

/**
 * Publishes at QoS 1 and resolves once the broker has dealt with it: 'acked' on PUBACK, 'closed' when the
 * broker dropped the connection instead (aedes refuses a PUBLISH that way; MQTT 3.1.1 has no negative ack).
 */
export function publishSettled(
  test: TestClient,
  topic: string,
  payload: string | Buffer,
  options: { retain?: boolean } = {},
): Promise<'acked' | 'closed'> {
  return new Promise((resolve) => {
    const onClose = (): void => resolve('closed');
    test.client.once('close', onClose);
    test.client.publish(topic, payload, { qos: 1, retain: options.retain ?? false }, (err) => {
      test.client.off('close', onClose);
      resolve(err ? 'closed' : 'acked');
    });
  });
}

/** SUBACK return codes, 128 for a refused filter [MQTT-3.9.3]. */
export function subscribeCodes(test: TestClient, filters: string[]): Promise<number[]> {
  // subscribeAsync rejects on any 128; the callback still gets the SUBACK.
  return new Promise((resolve, reject) => {
    test.client.subscribe(filters, { qos: 1 }, (err, _granted, packet) => {
      const codes = (packet as { granted?: Array<number | object> } | undefined)?.granted;
      if (codes) resolve(codes.map((c) => (typeof c === 'number' ? c : -1)));
      else reject(err ?? new Error('no SUBACK'));
    });
  });
}

export interface RawSession {
  socket: TLSSocket;
  /** Bytes received so far. */
  received(): Buffer;
  /** Resolves once at least n bytes arrived, or the socket closed. */
  receivedAtLeast(n: number): Promise<Buffer>;
  /** Resolves when the broker closed the connection. */
  closed: Promise<void>;
  /** TLS session ticket(s) the server sent, for resumption. */
  session(): Buffer | undefined;
  write(bytes: number[] | Buffer): void;
}

/** A TLS 1.3 connection that speaks whatever bytes the test writes. */
export async function rawSession(url: string, tlsOptions: Tls & { session?: Buffer }): Promise<RawSession> {
  const { hostname, port } = new URL(url);
  const socket = tls.connect({
    host: hostname,
    port: Number(port),
    ca: tlsOptions.ca,
    minVersion: 'TLSv1.3',
    ...(tlsOptions.cert ? { cert: tlsOptions.cert, key: tlsOptions.key } : {}),
    ...(tlsOptions.session ? { session: tlsOptions.session } : {}),
  });
  let data = Buffer.alloc(0);
  let ticket: Buffer | undefined;
  const wakers = new Set<() => void>();
  socket.on('session', (session) => {
    ticket = session;
  });
  socket.on('data', (chunk: Buffer) => {
    data = Buffer.concat([data, chunk]);
    for (const wake of wakers) wake();
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  closed.then(() => {
    for (const wake of wakers) wake();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('close', () => reject(new Error('closed during the TLS handshake')));
  });
  return {
    socket,
    received: () => data,
    receivedAtLeast(n) {
      return new Promise((resolve) => {
        const check = (): void => {
          if (data.length >= n || socket.destroyed) {
            wakers.delete(check);
            resolve(data);
          }
        };
        wakers.add(check);
        check();
      });
    },
    closed,
    session: () => ticket,
    write(bytes) {
      socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
    },
  };
}

/** A minimal MQTT 3.1.1 CONNECT: clean session, keepalive 60 s, no will (§3.1). */
export function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const variable = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c]);
  const payload = Buffer.concat([Buffer.from([id.length >> 8, id.length & 0xff]), id]);
  const body = Buffer.concat([variable, payload]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/** CONNACK, session present 0, return code 0 (§3.2). */
export const CONNACK_ACCEPTED = Buffer.from([0x20, 0x02, 0x00, 0x00]);
