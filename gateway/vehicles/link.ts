// Owns the gateway's MQTT connection: speaks each car's provider dialect, matches acks to commands and state
// reports to queries, and hands canonical state messages on (PROVIDERS.md §2).
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import {
  type Ack,
  brokerTarget,
  type CommandMessage,
  commandTopic,
  encodeMessage,
  GATEWAY_SUBSCRIPTIONS,
  isProbeTopic,
  isProviderIndependent,
  PROBE_TOPICS,
  PROTOCOL_VERSION,
  ProviderError,
  parseTopic,
  probeTopicOf,
  providerAdapter,
  type StateMessage,
  type StateReport,
  type ToCar,
  type TopicKind,
} from '../../protocols/index.ts';
import { LinkError } from '../errors.ts';
import { createSubscriptionProbe } from './probe.ts';
import { type Backoff, DEFAULT_BACKOFF, reconnectDelay } from './reconnect.ts';

/** Opens the MQTT client (mqtt.connect by default); tests wrap it to lose messages on the way. */
export type ConnectMqtt = (url: string, options: mqtt.IClientOptions) => MqttClient;

export interface VehicleLinkDeps {
  url: string;
  connect?: ConnectMqtt;
  clientId: string;
  tls: { ca: string; cert: string; key: string };
  logger: Logger;
  /** The provider id a VIN was linked with; null for a VIN the gateway has never linked. */
  providerOf: (vin: string) => Promise<string | null>;
  /**
   * A canonical state or presence message from a car. Each car's messages are handed on one at a time, in
   * arrival order, and its next waits for the returned promise: so it must never wait on this link. Different
   * cars' messages are handled concurrently.
   */
  onState: (vin: string, message: StateMessage) => Promise<void> | void;
  /** Acks nobody waits for any more (late, or for another replica). */
  onUnmatchedAck?: (vin: string, ack: Ack) => void;
  /**
   * Asked once when an ack wait runs out, before it ends as a timeout: an ack another replica received and
   * recorded for this command (gateway/cluster/ack-relay.ts), or null.
   */
  recheckAck?: (vin: string, commandId: string) => Promise<Ack | null>;
  /** An answer to a state query nobody here waits for (another replica asked); after onState has recorded it. */
  onUnmatchedReport?: (vin: string, report: StateReport) => void;
  /** Asked once when a state query's wait runs out: an answer another replica received and recorded, or null. */
  recheckReport?: (vin: string, nonce: string) => Promise<StateReport | null>;
  /** A message refused at the edge (wrong dialect, malformed, unknown VIN…), with its stable code. */
  onRefused?: (refusal: LinkRefusal) => void;
  /** Nonces for state queries; 128 random bits by default. */
  newNonce?: () => string;
  /** Where the URL came from (e.g. "MQTT_URL"), named wherever an operator reads about the session. */
  setting?: string;
  /**
   * Either way the first attempt's outcome is awaited. False (default): a failed first attempt fails the
   * connect (the embedded broker is this process's own: not answering is a fault). True: resolve anyway and
   * keep trying with backoff, since an external broker may come up after the gateway.
   */
  firstAttemptMayFail?: boolean;
  /** The wait between attempts (0.5 s doubling to 30 s by default) and its jitter's source, in [0, 1). */
  backoff?: Backoff;
  random?: () => number;
  /**
   * The subscription probe (probe.ts): after every (re)connect, then every intervalMs, a probe through each
   * subscription must come back within timeoutMs, else the session is dropped and made again. 30 s / 5 s by default.
   */
  probe?: { intervalMs: number; timeoutMs: number };
  /** A session dropped because a granted subscription delivered nothing (counted by the metrics). */
  onDeafSubscription?: () => void;
}

export const DEFAULT_PROBE: { intervalMs: number; timeoutMs: number } = {
  intervalMs: 30_000,
  timeoutMs: 5_000,
};

export interface LinkRefusal {
  vin: string;
  kind: TopicKind;
  code: string;
  detail: string;
}

/**
 * An ack handed to its waiter carries recorded(): the car's next message waits until the waiter calls it (or
 * ACK_RECORD_WAIT_MS pass), so that the state report a car sends right after its ack is handled once the ack's
 * outcome is in the store.
 */
export type AckWait = { kind: 'ack'; ack: Ack; recorded?: () => void } | { kind: 'timeout' };
export type ReportWait = { kind: 'state'; report: StateReport } | { kind: 'timeout' };

/** The longest a car's next message waits for its ack to be recorded (AckWait.recorded). */
export const ACK_RECORD_WAIT_MS = 1_000;

export interface VehicleLink {
  connected(): boolean;
  /** Publishes at QoS 1 in the car's dialect and waits for its ack for this command id, at most timeoutMs. */
  send(vin: string, command: CommandMessage, timeoutMs: number): Promise<AckWait>;
  /**
   * Asks the car for its state now and waits for the report that echoes the query's fresh nonce, at most
   * timeoutMs: an earlier report, or one from another car, cannot answer it (PROTOCOL.md §3.5). With
   * `commandIds` (commands whose acks never came) the answer also carries what became of each; because the
   * car handles the query after every command published before it, the answer reflects those commands.
   * A query that cannot be published ends as a timeout: it changes nothing at the car, so asking again is safe.
   */
  query(vin: string, timeoutMs: number, commandIds?: readonly string[]): Promise<ReportWait>;
  close(): Promise<void>;
}

/**
 * What another replica hands over: an ack its session received for a command this one waits for, or the answer to
 * a state query this one asked.
 */
export interface AckHandover {
  /** The commands this link waits for now, with their VINs. */
  waitingFor(): Array<{ commandId: string; vin: string }>;
  /** Ends the wait for ack.commandId with this ack, as if it came on this session; false if nobody waits. */
  deliverAck(vin: string, ack: Ack): boolean;
  /** The state queries this link waits for an answer to, by nonce, with their VINs. */
  queriesWaiting(): Array<{ nonce: string; vin: string }>;
  /** Ends the wait for report.nonce with this report; false if nobody here waits for it. */
  deliverReport(vin: string, report: StateReport): boolean;
}

/** The link to a real broker: also says why there is no session, and when one is up. */
export interface MqttVehicleLink extends VehicleLink, AckHandover {
  /** Null while a session is up (connected, subscribed, a probe came back); else why not, naming the URL and its setting. */
  problem(): string | null;
  /** Resolves once a session is up and its subscriptions proven by a probe (probe.ts): at once if one is. */
  untilConnected(): Promise<void>;
}

interface Waiter<T> {
  vin: string;
  resolve: (r: T) => void;
  timer: NodeJS.Timeout;
}

const defaultNonce = (): string => randomBytes(16).toString('base64url');

export async function connectVehicleLink(deps: VehicleLinkDeps): Promise<MqttVehicleLink> {
  const { logger } = deps;
  const newNonce = deps.newNonce ?? defaultNonce;
  const backoff = deps.backoff ?? DEFAULT_BACKOFF;
  const random = deps.random ?? Math.random;
  const where = deps.setting ? `${deps.url} (${deps.setting})` : deps.url;
  const acks = new Map<string, Waiter<AckWait>>();
  const reports = new Map<string, Waiter<ReportWait>>();
  // A cluster's nodes (MQTT_URL=a,b,c): mqtt.js takes the next one on each reconnect.
  const target = brokerTarget(deps.url);
  const client: MqttClient = (deps.connect ?? mqtt.connect)(target.url, {
    ...(target.servers ? { servers: target.servers } : {}),
    clientId: deps.clientId,
    protocolVersion: 4,
    clean: true,
    ca: deps.tls.ca,
    cert: deps.tls.cert,
    key: deps.tls.key,
    rejectUnauthorized: true,
    // mqtt.js waits a fixed period between attempts; the 'close' listener below sets it before each one.
    reconnectPeriod: reconnectDelay(0, backoff, random),
    connectTimeout: 10_000,
    keepalive: 30,
  });
  // A session is up once the broker granted the subscriptions: before that, acks would be missed.
  let subscribed = false;
  let closing = false;
  let attempt = 0;
  let lastError: string | null = null;
  const sessionWaiters = new Set<() => void>();
  const probeSettings = deps.probe ?? DEFAULT_PROBE;
  const probe = createSubscriptionProbe({
    topics: PROBE_TOPICS,
    intervalMs: probeSettings.intervalMs,
    timeoutMs: probeSettings.timeoutMs,
    newNonce: () => `${deps.clientId} ${newNonce()}`,
    publish: (topic, payload) => {
      // A failed publish is a probe that never comes back: the round's deadline deals with it.
      client.publish(topic, payload, { qos: 1, retain: false }, () => {});
    },
    onDeaf: (missing) => {
      lastError = `subscriptions granted but no probe came back within ${probeSettings.timeoutMs} ms (SUBSCRIPTION_DEAF)`;
      logger.warn(
        {
          event: 'mqtt.subscription_deaf',
          code: 'SUBSCRIPTION_DEAF',
          url: deps.url,
          missing,
          timeoutMs: probeSettings.timeoutMs,
        },
        'MQTT subscription delivers nothing; dropping the session to make a clean one',
      );
      deps.onDeafSubscription?.();
      // clean: true, so the next session subscribes afresh (on the next of a cluster's nodes).
      client.stream.destroy();
    },
    onVerified: () => {
      for (const wake of sessionWaiters) wake();
      sessionWaiters.clear();
    },
  });

  const refuse = (vin: string, kind: TopicKind, code: string, detail: string): void => {
    // A car reporting before it is linked (or after it was unlinked) is expected, not suspicious.
    const level = code === 'VEHICLE_UNKNOWN' ? 'debug' : 'warn';
    logger[level]({ event: 'mqtt.message_refused', vin, kind, code, detail }, 'message refused');
    deps.onRefused?.({ vin, kind, code, detail });
  };

  const adapterFor = async (vin: string) => {
    const provider = await deps.providerOf(vin);
    return provider === null ? null : providerAdapter(provider);
  };

  function deliverAck(vin: string, ack: Ack): boolean {
    return handOver(vin, ack) !== null;
  }

  /** Hands an ack to its waiter; resolves once the waiter has recorded it (at most ACK_RECORD_WAIT_MS). */
  function handOver(vin: string, ack: Ack): Promise<void> | null {
    const waiter = acks.get(ack.commandId);
    if (!waiter || waiter.vin !== vin) return null;
    acks.delete(ack.commandId);
    clearTimeout(waiter.timer);
    let recorded: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      const bound = setTimeout(resolve, ACK_RECORD_WAIT_MS);
      bound.unref();
      recorded = () => {
        clearTimeout(bound);
        resolve();
      };
    });
    waiter.resolve({ kind: 'ack', ack, recorded });
    return held;
  }

  function deliverReport(vin: string, report: StateReport): boolean {
    if (report.nonce === undefined) return false;
    const waiter = reports.get(report.nonce);
    if (!waiter || waiter.vin !== vin) return false;
    reports.delete(report.nonce);
    clearTimeout(waiter.timer);
    waiter.resolve({ kind: 'state', report });
    return true;
  }

  const handle = async (topic: string, payload: Buffer): Promise<void> => {
    const t = parseTopic(topic);
    if (!t || t.kind === 'commands') return;
    const adapter = await adapterFor(t.vin);
    if (!adapter) return refuse(t.vin, t.kind, 'VEHICLE_UNKNOWN', 'no linked vehicle with this VIN');
    if (t.kind === 'acks') {
      const ack = adapter.decodeAck(payload);
      // The topic is the broker-enforced identity; an ack naming another car is forged.
      if (ack.vin !== t.vin) return refuse(t.vin, t.kind, 'VIN_MISMATCH', 'ack names another vehicle');
      const held = handOver(t.vin, ack);
      if (held) await held;
      else deps.onUnmatchedAck?.(t.vin, ack);
      return;
    }
    const message = adapter.decodeState(payload);
    if (message.vin !== t.vin) return refuse(t.vin, t.kind, 'VIN_MISMATCH', 'state names another vehicle');
    await deps.onState(t.vin, message);
    if (message.type === 'state' && message.nonce !== undefined && !deliverReport(t.vin, message)) {
      deps.onUnmatchedReport?.(t.vin, message);
    }
  };
  // Commands are latency-bound small writes; Nagle's algorithm would hold one back for the broker's
  // delayed ACK (about 40 ms). The stream is new after every reconnect.
  const noDelay = (): void => {
    (client.stream as Partial<Socket> | undefined)?.setNoDelay?.(true);
  };
  noDelay();

  // One message at a time per car, in arrival order: the provider lookup is asynchronous, and a later state report
  // must not overtake an earlier one of the same car. Cars do not wait for each other: with one queue for all, the
  // answer to a state query waited behind every other car's report being recorded (a connect storm of thousands
  // of cars, a commit each, held answers back past their timeout).
  const queues = new Map<string, Promise<void>>();
  client.on('message', (topic, payload, packet) => {
    if (isProbeTopic(topic)) {
      probe.receive(topic, payload);
      return;
    }
    const parsed = parseTopic(topic);
    // A car's live message proves the subscription it came through as well as a probe would (a retained one does
    // not: a broker hands those out at SUBSCRIBE from its store, whether or not the subscription delivers).
    if (parsed && parsed.kind !== 'commands' && !packet.retain) probe.delivered(probeTopicOf(parsed.kind));
    // A topic that names no car is dropped by handle; it still goes through a queue of its own.
    const key = parsed?.vin ?? '';
    const next = (queues.get(key) ?? Promise.resolve())
      .then(() => handle(topic, payload))
      .catch((err: unknown) => {
        const vin = parsed?.vin ?? 'unknown';
        const kind = parsed?.kind ?? 'state';
        if (err instanceof ProviderError) refuse(vin, kind, err.code, err.message);
        else logger.error({ err, vin }, 'message not handled');
      })
      .finally(() => {
        // The car's last message is handled: forget its queue (10,000 idle cars keep no entry).
        if (queues.get(key) === next) queues.delete(key);
      });
    queues.set(key, next);
  });
  client.on('connect', () => {
    noDelay();
    attempt = 0;
    // clean sessions: subscriptions must be renewed after every reconnect.
    client.subscribe([...GATEWAY_SUBSCRIPTIONS], { qos: 1 }, (err) => {
      if (!client.connected || closing) return;
      if (err) {
        lastError = `subscription refused: ${err.message}`;
        // Without its subscriptions the session is useless: drop it and try again with backoff.
        client.stream.destroy();
        return;
      }
      if (lastError !== null) logger.info({ event: 'mqtt.connected', url: deps.url }, 'MQTT session up');
      subscribed = true;
      lastError = null;
      probe.start();
    });
  });
  client.on('error', (err) => {
    lastError = err.message;
    // Failed attempts are logged once each, with the retry, when their connection closes (below).
    if (subscribed) logger.warn({ event: 'mqtt.error', reason: err.message }, 'MQTT error');
  });
  // Runs before mqtt.js's own 'close' listener, which schedules the next attempt after options.reconnectPeriod.
  client.prependListener('close', () => {
    const hadSession = subscribed;
    subscribed = false;
    probe.stop();
    if (closing) return;
    const retryInMs = reconnectDelay(attempt++, backoff, random);
    client.options.reconnectPeriod = retryInMs;
    lastError ??= 'connection closed';
    logger.warn(
      {
        event: hadSession ? 'mqtt.disconnected' : 'mqtt.unreachable',
        url: deps.url,
        ...(deps.setting ? { setting: deps.setting } : {}),
        reason: lastError,
        retryInMs,
      },
      hadSession ? 'MQTT session lost; trying again' : 'MQTT broker not reachable; trying again',
    );
  });
  const untilConnected = (): Promise<void> =>
    subscribed && probe.verified()
      ? Promise.resolve()
      : new Promise((resolve) => sessionWaiters.add(resolve));
  await new Promise<void>((resolve, reject) => {
    const settle = (err: Error | null): void => {
      client.off('error', failed);
      client.off('close', closed);
      if (err === null || deps.firstAttemptMayFail) {
        resolve();
        return;
      }
      closing = true;
      client.end(true);
      reject(err);
    };
    const failed = (err: Error): void => settle(err);
    const closed = (): void => settle(new Error(lastError ?? 'connection closed'));
    client.once('error', failed);
    client.once('close', closed);
    untilConnected().then(() => settle(null));
  });

  /** Registers a waiter before publishing, so an answer that arrives at once is not missed. */
  function publishAndWait<T>(
    waiters: Map<string, Waiter<T>>,
    key: string,
    vin: string,
    message: ToCar | CommandMessage,
    timeoutMs: number,
    timedOut: T,
    /** A last look elsewhere before the wait ends as timedOut. */
    recheck?: () => Promise<T | null>,
  ): Promise<T> {
    // Key announcements and revocations are canonical in every dialect (PROVIDERS.md, TOKEN.md §8, §10).
    const canonical = message.type !== 'state_query' && isProviderIndependent(message);
    return (canonical ? Promise.resolve(null) : adapterFor(vin)).then((adapter) => {
      if (!canonical && !adapter) throw new LinkError('PROVIDER_UNKNOWN', `no provider known for ${vin}`);
      const payload = canonical
        ? encodeMessage(message)
        : (adapter as NonNullable<typeof adapter>).encodeToCar(message as ToCar);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          if (!recheck) {
            waiters.delete(key);
            resolve(timedOut);
            return;
          }
          // Still registered while it looks, so an answer arriving meanwhile wins; whichever comes first settles.
          recheck().then(
            (found) => {
              if (waiters.get(key)?.timer !== timer) return;
              waiters.delete(key);
              resolve(found ?? timedOut);
            },
            () => {
              if (waiters.get(key)?.timer !== timer) return;
              waiters.delete(key);
              resolve(timedOut);
            },
          );
        }, timeoutMs);
        waiters.set(key, { vin, resolve, timer });
        client.publish(commandTopic(vin), payload, { qos: 1, retain: false }, (err) => {
          if (err) {
            clearTimeout(timer);
            waiters.delete(key);
            reject(err);
          }
        });
      });
    });
  }

  return {
    connected: () => subscribed && client.connected,
    problem: () => {
      if (!subscribed || !client.connected)
        return `no MQTT session with ${where}${lastError ? `: ${lastError}` : ''}`;
      // Granted is not delivering (probe.ts): not ready until a probe came back through every subscription.
      return probe.verified()
        ? null
        : `MQTT session with ${where} up; its subscriptions are not verified yet`;
    },
    untilConnected,
    send(vin, command, timeoutMs) {
      const { recheckAck } = deps;
      const recheck = recheckAck
        ? async (): Promise<AckWait | null> => {
            const ack = await recheckAck(vin, command.commandId);
            return ack ? { kind: 'ack', ack } : null;
          }
        : undefined;
      return publishAndWait(acks, command.commandId, vin, command, timeoutMs, { kind: 'timeout' }, recheck);
    },
    waitingFor: () => [...acks].map(([commandId, w]) => ({ commandId, vin: w.vin })),
    deliverAck,
    queriesWaiting: () => [...reports].map(([nonce, w]) => ({ nonce, vin: w.vin })),
    deliverReport,
    async query(vin, timeoutMs, commandIds = []) {
      const nonce = newNonce();
      const query: ToCar = {
        v: PROTOCOL_VERSION,
        type: 'state_query',
        nonce,
        ...(commandIds.length > 0 && { commandIds: [...commandIds] }),
      };
      const { recheckReport } = deps;
      const recheck = recheckReport
        ? async (): Promise<ReportWait | null> => {
            const report = await recheckReport(vin, nonce);
            return report ? { kind: 'state', report } : null;
          }
        : undefined;
      try {
        return await publishAndWait(reports, nonce, vin, query, timeoutMs, { kind: 'timeout' }, recheck);
      } catch (err) {
        if (err instanceof LinkError) throw err;
        logger.warn({ event: 'query.publish_failed', vin, err }, 'state query not published');
        return { kind: 'timeout' };
      }
    },
    async close() {
      closing = true;
      probe.stop();
      for (const waiters of [acks, reports] as Array<Map<string, Waiter<{ kind: 'timeout' }>>>) {
        for (const [id, w] of waiters) {
          clearTimeout(w.timer);
          w.resolve({ kind: 'timeout' });
          waiters.delete(id);
        }
      }
      await client.endAsync();
    },
  };
}
