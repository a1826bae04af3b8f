// Test harness: MQTT clients for simulated cars whose acks a test can hold or drop, and whose commands it can tamper with.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { ackTopic } from '../../protocols/index.ts';
import type { ClientFactory } from '../../simulator/transport.ts';

export type AckMode = 'pass' | 'hold' | 'drop';

export interface CarControl {
  /** Pass to startFleet (or startStack's fleet options). */
  createClient: ClientFactory;
  /** What happens to this car's next acks: sent, kept until release(), or never sent. */
  acks(vin: string, mode: AckMode): void;
  /** Corrupt the token signature of this car's commands, so the car itself refuses them. */
  tamper(vin: string, on: boolean): void;
  /** Acks kept back for this car so far. */
  held(vin: string): number;
  /** Sends the kept acks of this car, in order. */
  release(vin: string): void;
}

type Publish = (topic: string, payload: string, options: object, callback?: (err?: Error) => void) => void;
type Handler = MqttClient['handleMessage'];

export function carControl(): CarControl {
  const modes = new Map<string, AckMode>();
  const tampered = new Set<string>();
  const kept = new Map<string, Array<() => void>>();

  const createClient: ClientFactory = (url: string, options: IClientOptions) => {
    const vin = String(options.clientId);
    const client = mqtt.connect(url, options);
    const publish = client.publish.bind(client) as unknown as Publish;
    (client as unknown as { publish: Publish }).publish = (topic, payload, opts, callback) => {
      const mode = topic === ackTopic(vin) ? (modes.get(vin) ?? 'pass') : 'pass';
      if (mode === 'pass') return publish(topic, payload, opts, callback);
      if (mode === 'hold') {
        const list = kept.get(vin) ?? [];
        list.push(() => publish(topic, payload, opts, callback));
        kept.set(vin, list);
      }
      callback?.();
    };
    // The transport installs its handler after this returns; wrap whatever it installs.
    let handler: Handler = client.handleMessage;
    Object.defineProperty(client, 'handleMessage', {
      configurable: true,
      get: () => (packet: Parameters<Handler>[0], done: Parameters<Handler>[1]) => {
        if (tampered.has(vin) && 'payload' in packet) {
          // Whatever the provider dialect, the token is the one compact JWS in the payload.
          packet.payload = Buffer.from(
            packet.payload.toString().replace(/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/, (token) => {
              // Not the last character: its low bits are base64url padding that a decoder may ignore.
              const at = token.length - 10;
              return `${token.slice(0, at)}${token[at] === 'A' ? 'B' : 'A'}${token.slice(at + 1)}`;
            }),
          );
        }
        return handler(packet, done);
      },
      set: (next: Handler) => {
        handler = next;
      },
    });
    return client;
  };

  return {
    createClient,
    acks: (vin, mode) => modes.set(vin, mode),
    tamper: (vin, on) => (on ? tampered.add(vin) : tampered.delete(vin)),
    held: (vin) => kept.get(vin)?.length ?? 0,
    release(vin) {
      const list = kept.get(vin) ?? [];
      kept.delete(vin);
      for (const send of list) send();
    },
  };
}
