// Test helper: just enough of mqtt.js's MqttClient for the simulator's transport, driven by the test.
import { EventEmitter } from 'node:events';
import type { IClientOptions, MqttClient } from 'mqtt';
import { PROVIDERS } from '../../protocols/providers/index.ts';
import { commandTopic } from '../../protocols/topics.ts';
import type { ClientFactory } from '../../simulator/transport.ts';

export interface Sent {
  topic: string;
  payload: string;
  qos: number | undefined;
}

export class FakeClient extends EventEmitter {
  connected = false;
  sent: Sent[] = [];
  pubacks = 0;
  connects = 0;
  subscriptions: Array<{ topic: string; qos: number }> = [];
  ended: boolean | null = null;
  incomingStore = { name: 'in' };
  outgoingStore = { name: 'out' };
  /** A dropped radio link: the socket goes away and the client reports close. */
  stream = { destroy: (): void => this.drop() };
  handleMessage = (_packet: unknown, done: () => void): void => done();

  constructor(
    readonly vin: string,
    readonly options: IClientOptions,
    /** When true, connecting fails as with the broker unreachable. */
    readonly refuse: () => boolean = () => false,
  ) {
    super();
  }

  connect(): this {
    queueMicrotask(() => {
      if (this.refuse()) {
        this.emit('error', new Error('connect ECONNREFUSED'));
        this.emit('close');
        return;
      }
      this.connected = true;
      this.connects++;
      this.emit('connect', { sessionPresent: this.connects > 1 });
    });
    return this;
  }

  reconnect(): this {
    return this.connect();
  }

  drop(): void {
    if (!this.connected) return;
    this.connected = false;
    queueMicrotask(() => this.emit('close'));
  }

  async subscribeAsync(topic: string, opts: { qos: number }) {
    this.subscriptions.push({ topic, qos: opts.qos });
    return [{ topic, qos: 1 }];
  }

  publish(topic: string, payload: string, opts: { qos?: number }, cb?: (err?: Error) => void): this {
    this.sent.push({ topic, payload, qos: opts.qos });
    cb?.();
    return this;
  }

  async publishAsync(topic: string, payload: string, opts: { qos?: number }) {
    this.publish(topic, payload, opts);
    return undefined;
  }

  async endAsync(force?: boolean) {
    this.ended = force ?? false;
    this.connected = false;
    this.emit('close');
  }

  end(force?: boolean): this {
    this.ended = force ?? false;
    return this;
  }

  /** Hands a message to the transport as mqtt.js would; the PUBACK is counted when the transport allows it. */
  deliver(payload: Buffer | string, topic = commandTopic(this.vin)): void {
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
    this.handleMessage({ cmd: 'publish', topic, payload: bytes, qos: 1, dup: false, retain: false }, () => {
      this.pubacks++;
    });
  }

  onTopic(kind: 'acks' | 'state'): Sent[] {
    return this.sent.filter((s) => s.topic.endsWith(`/${kind}`));
  }

  /** Payloads on the acks or state topic, translated from the car's dialect into canonical messages. */
  // biome-ignore lint/suspicious/noExplicitAny: tests read messages by shape and assert on them.
  messages(kind: 'acks' | 'state'): any[] {
    return this.onTopic(kind).map((s) => canonical(kind, s.payload));
  }
}

/** A car speaks its provider's dialect (PROVIDERS.md); anything no adapter recognises is returned as parsed. */
function canonical(kind: 'acks' | 'state', payload: string): unknown {
  const json = JSON.parse(payload) as Record<string, unknown>;
  const adapter = Object.values(PROVIDERS).find((a) => a.recognises(json));
  if (!adapter) return json;
  return kind === 'acks' ? adapter.decodeAck(payload) : adapter.decodeState(payload);
}

export interface FakeClients {
  create: ClientFactory;
  clients: FakeClient[];
  byVin(vin: string): FakeClient;
  /** While true, every new connection is refused (the broker is down). */
  brokerDown: boolean;
}

export function fakeClients(): FakeClients {
  const clients: FakeClient[] = [];
  const create: ClientFactory = (_url, options) => {
    const client = new FakeClient(String(options.clientId), options, () => fakes.brokerDown);
    clients.push(client);
    return client as unknown as MqttClient;
  };
  const byVin = (vin: string): FakeClient => {
    const found = clients.filter((c) => c.vin === vin).at(-1);
    if (!found) throw new Error(`no client for ${vin}`);
    return found;
  };
  const fakes: FakeClients = { create, clients, byVin, brokerDown: false };
  return fakes;
}
