// Owns the gateway's MQTT connection: publishes commands, matches acks to them, and hands state reports on.
import type { Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import {
  type Ack,
  AckSchema,
  type Command,
  commandTopic,
  encodeMessage,
  GATEWAY_SUBSCRIPTIONS,
  MessageError,
  parseMessage,
  parseTopic,
  type StateMessage,
  StateMessageSchema,
} from '../protocols/index.ts';

export interface VehicleLinkDeps {
  url: string;
  clientId: string;
  tls: { ca: string; cert: string; key: string };
  logger: Logger;
  onState: (vin: string, message: StateMessage) => void;
  /** Acks nobody waits for any more (late, or for another replica). */
  onUnmatchedAck?: (vin: string, ack: Ack) => void;
}

export type AckWait = { kind: 'ack'; ack: Ack } | { kind: 'timeout' };

export interface VehicleLink {
  connected(): boolean;
  /** Publishes at QoS 1 and waits for the car's ack for this command id, at most timeoutMs. */
  send(vin: string, command: Command, timeoutMs: number): Promise<AckWait>;
  close(): Promise<void>;
}

interface Waiter {
  vin: string;
  resolve: (r: AckWait) => void;
  timer: NodeJS.Timeout;
}

export async function connectVehicleLink(deps: VehicleLinkDeps): Promise<VehicleLink> {
  const { logger } = deps;
  const waiters = new Map<string, Waiter>();
  const client: MqttClient = await mqtt.connectAsync(deps.url, {
    clientId: deps.clientId,
    protocolVersion: 4,
    clean: true,
    ca: deps.tls.ca,
    cert: deps.tls.cert,
    key: deps.tls.key,
    rejectUnauthorized: true,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    keepalive: 30,
  });

  const onMessage = (topic: string, payload: Buffer): void => {
    const t = parseTopic(topic);
    if (!t) return;
    try {
      if (t.kind === 'acks') {
        const ack = parseMessage(AckSchema, payload);
        // The topic is the broker-enforced identity; an ack naming another car is forged.
        if (ack.vin !== t.vin) {
          logger.warn({ event: 'ack.vin_mismatch', vin: t.vin }, 'ack names another vehicle');
          return;
        }
        const waiter = waiters.get(ack.commandId);
        if (waiter && waiter.vin === t.vin) {
          waiters.delete(ack.commandId);
          clearTimeout(waiter.timer);
          waiter.resolve({ kind: 'ack', ack });
        } else {
          deps.onUnmatchedAck?.(t.vin, ack);
        }
      } else if (t.kind === 'state') {
        const message = parseMessage(StateMessageSchema, payload);
        if (message.vin !== t.vin) return;
        deps.onState(t.vin, message);
      }
    } catch (err) {
      const code = err instanceof MessageError ? err.code : 'MESSAGE_INVALID';
      logger.warn({ event: 'mqtt.message_refused', vin: t.vin, kind: t.kind, code }, 'message refused');
    }
  };
  // Commands are latency-bound small writes; Nagle's algorithm would hold one back for the broker's
  // delayed ACK (about 40 ms). The stream is new after every reconnect.
  const noDelay = (): void => {
    (client.stream as Partial<Socket> | undefined)?.setNoDelay?.(true);
  };
  noDelay();
  client.on('message', onMessage);
  client.on('connect', () => {
    noDelay();
    // clean sessions: subscriptions must be renewed after every reconnect.
    client.subscribe([...GATEWAY_SUBSCRIPTIONS], { qos: 1 });
  });
  client.on('error', (err) => logger.warn({ event: 'mqtt.error', reason: err.message }, 'MQTT error'));
  await client.subscribeAsync([...GATEWAY_SUBSCRIPTIONS], { qos: 1 });

  return {
    connected: () => client.connected,
    send(vin, command, timeoutMs) {
      return new Promise<AckWait>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(command.commandId);
          resolve({ kind: 'timeout' });
        }, timeoutMs);
        waiters.set(command.commandId, { vin, resolve, timer });
        client.publish(commandTopic(vin), encodeMessage(command), { qos: 1, retain: false }, (err) => {
          if (err) {
            clearTimeout(timer);
            waiters.delete(command.commandId);
            reject(err);
          }
        });
      });
    },
    async close() {
      for (const [id, w] of waiters) {
        clearTimeout(w.timer);
        w.resolve({ kind: 'timeout' });
        waiters.delete(id);
      }
      await client.endAsync();
    },
  };
}
