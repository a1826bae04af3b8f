// Owns the car's MQTT session (the simulator's only MQTT code): mTLS connect, commands in, acks and state out,
// all in the dialect of the car's provider (PROVIDERS.md §2).
import { createPrivateKey } from 'node:crypto';
import type { Socket } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { brokerTarget } from '../protocols/broker-urls.ts';
import {
  type CommandOutcome,
  encodeMessage,
  readsAsProviderIndependent,
  type ToCar,
} from '../protocols/messages.ts';
import {
  type ProviderAdapter,
  ProviderError,
  type ProviderErrorCode,
  providerAdapter,
  readJsonObject,
  recoverIdsAnyDialect,
} from '../protocols/providers/index.ts';
import { ackTopic, commandTopic, stateTopic } from '../protocols/topics.ts';
import type { CarRefusalCode, CommandIds, SimulatedCar } from './car.ts';
import { SimulatorError } from './errors.ts';
import type { TransportFaults } from './faults.ts';
import type { OutcomeMemory } from './outcome-memory.ts';

/** pino-compatible: fields first, then the message. */
export interface Logger {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_TICK_INTERVAL_MS = 250;
export const DEFAULT_BACKOFF: Backoff = { initialMs: 500, maxMs: 30_000 };
export const DEFAULT_CLOSE_TIMEOUT_MS = 3_000;
/** Consecutive connections closed before CONNACK after which the car reports it may be revoked. */
export const DEFAULT_POSSIBLY_REVOKED_AFTER = 3;

/**
 * Where the car's session stands. possibly_revoked: the last connections were closed by the broker after
 * the TLS handshake and before CONNACK, which is how a TLS 1.3 broker refuses a client certificate (the
 * client's handshake is over before the server judges its certificate). It is a guess, hence "possibly":
 * the car keeps retrying with backoff and goes back to connected on the next CONNACK.
 */
export type ConnectionStatus = 'connecting' | 'connected' | 'reconnecting' | 'possibly_revoked' | 'closed';

/** Errors that mean the broker was not reached at all, so they say nothing about the certificate. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
]);

export type ClientFactory = (brokerUrl: string, options: IClientOptions) => MqttClient;

export interface ConnectCarDeps {
  car: SimulatedCar;
  /** mqtts://host:port; the broker speaks TLS 1.3 with client certificates. */
  brokerUrl: string;
  ca: string | Buffer;
  cert: string | Buffer;
  key: string | Buffer;
  /** TLS server name, when the URL's host is an IP address but the broker's certificate names a host. */
  servername?: string;
  reportIntervalMs: number;
  tickIntervalMs?: number;
  backoff?: Backoff;
  closeTimeoutMs?: number;
  /** Source of reconnect jitter, in [0, 1). */
  random?: () => number;
  logger?: Logger;
  /** Builds the MQTT client; tests pass a fake. It must not connect before `connect()` is called. */
  createClient?: ClientFactory;
  /** Fault injection (simulator/faults.ts); absent, messages and the link behave as the network gives them. */
  faults?: TransportFaults;
  /** Remembers every ack's outcome for state queries (PROTOCOL.md §3.5); absent, answers name no commands. */
  outcomes?: OutcomeMemory;
  /** Defaults to DEFAULT_POSSIBLY_REVOKED_AFTER. */
  possiblyRevokedAfter?: number;
  /** The dialect on the wire; defaults to the registered adapter of the car's provider. */
  adapter?: ProviderAdapter;
}

export interface Credentials {
  cert: string | Buffer;
  key: string | Buffer;
}

export interface CarConnection {
  readonly car: SimulatedCar;
  readonly connected: boolean;
  readonly status: ConnectionStatus;
  /** Calls the listener on every status change; returns the unsubscribe function. */
  onStatus(listener: (status: ConnectionStatus) => void): () => void;
  /**
   * Certificate rotation: reconnects at once with the new certificate and key (a clean DISCONNECT first,
   * so the broker drops the will) and resolves on its CONNACK. Rejects with SIM_CONNECT_FAILED if the
   * broker refuses them; the car then keeps retrying with them, with backoff.
   */
  replaceCredentials(credentials: Credentials): Promise<void>;
  /**
   * Publishes a state report now; skipped while disconnected (the next connect sends one). `nonce` is set when
   * the report answers a state query, `commands` when that query named commands (PROTOCOL.md §3.5).
   */
  reportState(nonce?: string, commands?: CommandOutcome[]): void;
  /** Stops timers, says goodbye (presence offline) and disconnects. Idempotent. */
  close(): Promise<void>;
}

/** Exponential backoff with equal jitter: half the step is fixed, half random, so a fleet does not reconnect in step. */
export function reconnectDelay(attempt: number, backoff: Backoff, random: () => number): number {
  const step = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + random() * (step / 2));
}

type TlsClientOptions = IClientOptions & Pick<SecureContextOptions, 'minVersion'>;
type PublishPacket = Parameters<MqttClient['handleMessage']>[0];

/** The ack reason for a command the adapter could not translate; none for what cannot be addressed anyway. */
const REFUSAL_FOR: Partial<Record<ProviderErrorCode, CarRefusalCode>> = {
  DIALECT_MISMATCH: 'DIALECT_MISMATCH',
  ACTION_NOT_ALLOWED: 'ACTION_NOT_ALLOWED',
  MESSAGE_INVALID: 'COMMAND_MALFORMED',
};

/** The ids of a command in a foreign dialect, read through the registry so the refusal can name it. */
function foreignIds(payload: Buffer): CommandIds | null {
  try {
    return recoverIdsAnyDialect(readJsonObject(payload));
  } catch {
    return null;
  }
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<{ done: true; value: T } | { done: false }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<{ done: false }>((resolve) => {
    timer = setTimeout(() => resolve({ done: false }), ms);
  });
  return Promise.race([work.then((value) => ({ done: true as const, value })), timeout]).finally(() =>
    clearTimeout(timer),
  );
}

/**
 * Connects one car and keeps it connected. Resolves once the first session is up and subscribed; rejects
 * with SIM_CONNECT_FAILED when that first attempt fails (so a misconfigured fleet stops at once), and after
 * that reconnects on its own with backoff and jitter.
 *
 * Session choice: clean: false. The broker then keeps the command subscription and queues QoS 1 commands
 * while the car is away, and redelivers unacknowledged ones after a reconnect (MQTT 3.1.1 §4.4); that is the
 * redelivery the car's dedupe answers with the same ack. A command that waited too long is refused by token
 * expiry, and a replayed one by the replay guard, so a persistent session cannot make the car act late.
 */
export async function connectCar(deps: ConnectCarDeps): Promise<CarConnection> {
  const { car } = deps;
  const vin = car.vin;
  const dialect = deps.adapter ?? providerAdapter(car.provider);
  const log = deps.logger ?? silentLogger;
  const random = deps.random ?? Math.random;
  const backoff = deps.backoff ?? DEFAULT_BACKOFF;
  const closeTimeoutMs = deps.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;

  const options: TlsClientOptions = {
    clientId: vin, // the broker ties the client id to the certificate's VIN
    protocolVersion: 4,
    clean: false,
    ca: deps.ca,
    cert: deps.cert,
    key: deps.key,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    // mqtt.js retries at a fixed period; this module schedules reconnects itself, with backoff.
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    keepalive: 30,
    // The broker publishes this when the car drops without a DISCONNECT [MQTT-3.1.2-8].
    will: {
      topic: stateTopic(vin),
      payload: Buffer.from(dialect.encodeState(car.presence())),
      qos: 1,
      retain: false,
    },
    manualConnect: true,
  };
  if (deps.servername !== undefined) options.servername = deps.servername;
  // A cluster's nodes (--broker a,b,c): mqtt.js takes the next one on each reconnect.
  const target = brokerTarget(deps.brokerUrl);
  if (target.servers) options.servers = target.servers;
  const client = (deps.createClient ?? connect)(target.url, options);

  let established = false;
  let closing = false;
  let attempt = 0;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let renewing = false;
  // Closed-before-CONNACK bookkeeping for the possibly_revoked status.
  let sessionUp = false;
  let attemptError: string | null = null;
  let closesBeforeConnack = 0;
  const possiblyRevokedAfter = deps.possiblyRevokedAfter ?? DEFAULT_POSSIBLY_REVOKED_AFTER;

  let status: ConnectionStatus = 'connecting';
  const statusListeners = new Set<(status: ConnectionStatus) => void>();
  const setStatus = (next: ConnectionStatus): void => {
    if (next === status) return;
    status = next;
    for (const listener of statusListeners) listener(next);
  };

  const publish = (topic: string, payload: string, what: 'ack' | 'state report'): void => {
    const send = (): void => {
      client.publish(topic, payload, { qos: 1 }, (err) => {
        if (err) log.warn({ vin, err: err.message }, `${what} not delivered`);
      });
    };
    if (deps.faults) deps.faults.outbound(what === 'ack' ? 'ack' : 'state', send);
    else send();
  };

  const reportState = (nonce?: string, commands?: CommandOutcome[]): void => {
    if (!client.connected || closing) return;
    // A dormant unit sends nothing unasked; the answer to a query (it carries a nonce) always goes out.
    if (nonce === undefined && deps.faults && !deps.faults.reportsAllowed()) return;
    const answer = { ...car.stateReport(nonce), ...(commands && { commands }) };
    publish(stateTopic(vin), dialect.encodeState(answer), 'state report');
  };

  /** Translates a command-topic payload; a refusal that can be addressed becomes the car's ack. */
  const translate = async (payload: Buffer): Promise<ToCar | null> => {
    try {
      return dialect.decodeToCar(payload);
    } catch (err) {
      if (!(err instanceof ProviderError)) throw err;
      const reason = REFUSAL_FOR[err.code];
      const ids = err.ids ?? (err.code === 'DIALECT_MISMATCH' ? foreignIds(payload) : null);
      if (reason && ids) {
        const { ack } = await car.refuseCommand(ids, reason);
        if (ack) {
          deps.outcomes?.record(ack);
          publish(ackTopic(vin), dialect.encodeAck(ack), 'ack');
        }
        log.warn({ vin, commandId: ids.commandId, reason }, 'command refused before verification');
      } else {
        log.warn({ vin, bytes: payload.length, code: err.code }, 'unreadable command dropped without an ack');
      }
      return null;
    }
  };

  const onCommand = async (packet: PublishPacket): Promise<void> => {
    if (packet.topic !== commandTopic(vin)) {
      log.warn({ vin, topic: packet.topic }, 'message on an unexpected topic ignored');
      return;
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    // Key announcements and revocations are canonical in every dialect; the car verifies them in full.
    const canonical = readsAsProviderIndependent(payload);
    const message = canonical ? null : await translate(payload);
    if (!canonical && message === null) return;
    if (message?.type === 'state_query') {
      // Answered in turn with the commands before it, so the answer reflects them (PROTOCOL.md §3.5); with
      // command ids, it also says what became of each of them the car has handled.
      // A command it names that has not reached the car is disowned: the car refuses it should it still come.
      const commands = message.commandIds && deps.outcomes?.answer(message.commandIds);
      reportState(message.nonce, commands);
      return;
    }
    if (message?.type === 'command' && deps.outcomes?.disowned(message.commandId)) {
      // Overtaken by a query that said it never came (a network or broker that reordered): never acted on.
      const { ack } = await car.refuseCommand(message, 'COMMAND_DISOWNED');
      if (ack) publish(ackTopic(vin), dialect.encodeAck(ack), 'ack');
      log.warn({ vin, commandId: message.commandId }, 'command refused: a state query disowned it');
      return;
    }
    // The car's logic reads canonical bytes.
    // Dedupe is on the bytes as they arrived: only an MQTT redelivery is a duplicate (PROTOCOL.md §3.2).
    const { ack, stateChanged } = await car.handleCommand(
      canonical ? payload : Buffer.from(encodeMessage(message as ToCar)),
      payload,
    );
    syncTicker();
    if (ack) {
      deps.outcomes?.record(ack);
      publish(ackTopic(vin), dialect.encodeAck(ack), 'ack');
      log.info(
        {
          vin,
          deliveryId: ack.deliveryId,
          commandId: ack.commandId,
          outcome: ack.outcome,
          reason: ack.reason,
        },
        'command handled',
      );
    } else {
      log.warn({ vin, bytes: payload.length }, 'unreadable command dropped without an ack');
    }
    if (stateChanged) reportState();
  };

  // Installed before connecting: a resumed session may deliver queued commands right after CONNACK.
  // mqtt.js sends the PUBACK only when this callback runs, so a command is acknowledged to the broker after
  // its ack is queued for sending; if the car dies first, the broker redelivers it. The ack's own PUBACK is
  // not awaited here: mqtt.js reads no further packets until this callback runs, so awaiting would deadlock.
  client.handleMessage = (packet, done) => {
    const handle = (): Promise<void> =>
      onCommand(packet).catch((err: unknown) => {
        log.error({ vin, err: String(err) }, 'command handling failed');
      });
    if (deps.faults) deps.faults.inbound(handle, () => done());
    else handle().then(() => done());
  };

  // A tick can only do the fail-safe relock, and only while one is pending: a locked car, which is most of a
  // fleet most of the time, runs no tick timer at all (10,000 idle cars would otherwise wake 40,000 times a
  // second). The timer starts when a relock becomes pending and stops when none is.
  const tickMs = deps.tickIntervalMs ?? DEFAULT_TICK_INTERVAL_MS;
  let tickTimer: NodeJS.Timeout | null = null;
  const syncTicker = (): void => {
    const pending = !closing && car.snapshot().relockDeadline !== null;
    if (pending && tickTimer === null) {
      tickTimer = setInterval(() => {
        car.tick();
        syncTicker();
      }, tickMs);
    } else if (!pending && tickTimer !== null) {
      clearInterval(tickTimer);
      tickTimer = null;
    }
  };

  const stopListening = car.onChange((change) => {
    syncTicker();
    if (change.effects.some((e) => e.type === 'relocked_by_car')) {
      log.info({ vin }, 'fail-safe relock: no lock arrived in time');
    }
    // Command-caused changes are reported by onCommand, after the ack.
    if (change.cause !== 'command' && change.effects.some((e) => e.type === 'report_state')) reportState();
  });

  const subscribe = async (): Promise<void> => {
    // Subscribing again on a resumed session replaces the same subscription [MQTT-3.8.4-3].
    const grants = await client.subscribeAsync(commandTopic(vin), { qos: 1 });
    if (grants.some((g) => g.qos === 128)) {
      throw new SimulatorError('SIM_SUBSCRIBE_REFUSED', `broker refused ${commandTopic(vin)}`);
    }
  };

  // mqtt.js reports one refused connection more than once, and a broker that is down refuses every
  // attempt; each distinct error is logged once until the next successful connect.
  let lastError: string | null = null;
  client.on('error', (err: Error & { code?: string | number }) => {
    attemptError = err.code === undefined ? attemptError : String(err.code);
    if (err.message === lastError) return;
    lastError = err.message;
    log.warn({ vin, err: err.message }, 'mqtt error');
  });

  client.on('connect', (connack) => {
    // Acks are small writes that follow a PUBACK at once; Nagle's algorithm would hold them back for the
    // broker's delayed ACK (about 40 ms). Each reconnect brings a new stream.
    (client.stream as Partial<Socket> | undefined)?.setNoDelay?.(true);
    attempt = 0;
    lastError = null;
    sessionUp = true;
    closesBeforeConnack = 0;
    car.setOnline(true);
    if (!established) return; // the first connect is finished by the code below
    setStatus('connected');
    subscribe().then(
      () => {
        reportState();
        log.info({ vin, sessionPresent: connack.sessionPresent }, 'reconnected');
      },
      (err: unknown) => {
        log.error({ vin, err: String(err) }, 'subscription failed after reconnect');
        // Without its command subscription the session is useless (a clustered broker refuses one while it
        // elects leaders): drop it, and the close schedules the next attempt with backoff.
        if (!closing) client.stream?.destroy();
      },
    );
  });

  const reconnectNow = (): void => {
    attemptError = null;
    // Passing the stores keeps unacknowledged QoS 1 acks queued for the next session.
    client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore });
  };

  const scheduleReconnect = (): void => {
    if (!established || closing || reconnectTimer !== null || client.connected) return;
    // A unit that is off the network does not try until the fault layer says the link is back.
    if (deps.faults && !deps.faults.mayTryToConnect()) return;
    const delayMs = reconnectDelay(attempt++, backoff, random);
    log.warn({ vin, delayMs }, 'disconnected; reconnecting');
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      if (closing) return;
      const outcome = deps.faults?.connectAttempt() ?? 'connect';
      if (outcome === 'fail') return scheduleReconnect(); // no signal: this attempt fails, back off further
      if (outcome === 'wait') return;
      reconnectNow();
    }, delayMs);
  };

  /** A close with no CONNACK since the attempt began, by a broker that was reached, counts toward possibly_revoked. */
  const noteClose = (): void => {
    const refused = !sessionUp && !(attemptError !== null && UNREACHABLE.has(attemptError));
    sessionUp = false;
    if (!refused) return;
    closesBeforeConnack++;
    if (closesBeforeConnack === possiblyRevokedAfter) {
      log.warn(
        { vin, code: 'POSSIBLY_REVOKED', closesBeforeConnack },
        'the broker keeps closing the connection before CONNACK: the certificate may be revoked',
      );
    }
  };

  client.on('close', () => {
    car.setOnline(false);
    if (!established || closing) return;
    noteClose();
    setStatus(closesBeforeConnack >= possiblyRevokedAfter ? 'possibly_revoked' : 'reconnecting');
    if (!renewing) scheduleReconnect();
  });

  const replaceCredentials = async (credentials: Credentials): Promise<void> => {
    if (closing) throw new SimulatorError('SIM_CONNECT_FAILED', `${vin}: connection closed`);
    client.options.cert = credentials.cert;
    client.options.key = credentials.key;
    // Acks are signed with the key the new certificate certifies (TOKEN.md §9).
    car.replaceSigningKey(createPrivateKey(credentials.key));
    renewing = true;
    try {
      if (reconnectTimer !== null) clearTimeout(reconnectTimer);
      reconnectTimer = null;
      let ended = false;
      if (client.connected) {
        // A clean DISCONNECT, once every QoS 1 message in flight is acknowledged: the broker discards the
        // will, so nothing announces the car offline for a reconnect that takes milliseconds.
        await new Promise<void>((resolve) => {
          client.once('close', () => resolve());
          client.end(false);
        });
        ended = true;
      }
      await new Promise<void>((resolve, reject) => {
        const onConnect = (): void => {
          client.off('close', onClose);
          resolve();
        };
        const onClose = (): void => {
          client.off('connect', onConnect);
          reject(new SimulatorError('SIM_CONNECT_FAILED', `${vin}: the broker refused the new certificate`));
        };
        client.once('connect', onConnect);
        client.once('close', onClose);
        attemptError = null;
        // end() closed the message stores, empty by then; mqtt.js makes new ones when given none.
        if (ended) client.reconnect();
        else reconnectNow();
      });
      log.info({ vin }, 'reconnected with a new certificate');
    } catch (err) {
      if (!closing) scheduleReconnect();
      throw err;
    } finally {
      renewing = false;
    }
  };

  let sessionPresent = false;
  try {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        client.off('connect', onFirstConnect);
        client.off('error', onFirstFailure);
        client.off('close', onFirstClose);
        if (err) reject(err);
        else resolve();
      };
      const onFirstConnect = (connack: { sessionPresent: boolean }): void => {
        sessionPresent = connack.sessionPresent;
        done();
      };
      const onFirstFailure = (err: Error): void => done(err);
      const onFirstClose = (): void => done(new Error('connection closed before CONNACK'));
      client.on('connect', onFirstConnect);
      client.on('error', onFirstFailure);
      client.on('close', onFirstClose);
      client.connect();
    });
    await subscribe();
  } catch (err) {
    stopListening();
    closing = true;
    client.end(true);
    if (err instanceof SimulatorError) throw err;
    throw new SimulatorError('SIM_CONNECT_FAILED', `${vin}: ${(err as Error).message}`, { cause: err });
  }
  established = true;
  setStatus('connected');
  deps.faults?.attach({
    dropLink: () => client.stream?.destroy(),
    linkRestored: scheduleReconnect,
  });
  log.info(
    { vin, make: car.make, model: car.model, year: car.year, provider: car.provider, sessionPresent },
    'connected',
  );

  syncTicker();
  const reportTimer = setInterval(reportState, deps.reportIntervalMs);
  reportState();

  let closed: Promise<void> | null = null;
  const shutdown = async (): Promise<void> => {
    closing = true;
    if (tickTimer !== null) clearInterval(tickTimer);
    tickTimer = null;
    clearInterval(reportTimer);
    if (reconnectTimer !== null) clearTimeout(reconnectTimer);
    reconnectTimer = null;
    stopListening();
    deps.faults?.detach();
    setStatus('closed');
    // A clean DISCONNECT discards the will [MQTT-3.14.4-3], so the car announces itself offline first.
    // When that cannot be confirmed, it drops the connection instead and the broker publishes the will.
    let announced = false;
    if (client.connected) {
      const sent = await withTimeout(
        client.publishAsync(stateTopic(vin), dialect.encodeState(car.presence()), { qos: 1 }),
        closeTimeoutMs,
      ).catch(() => ({ done: false as const }));
      announced = sent.done;
    }
    const ended = await withTimeout(client.endAsync(!announced), closeTimeoutMs);
    if (!ended.done) client.stream?.destroy();
    car.setOnline(false);
  };

  return {
    car,
    get connected() {
      return client.connected;
    },
    get status() {
      return status;
    },
    onStatus(listener) {
      statusListeners.add(listener);
      return () => statusListeners.delete(listener);
    },
    replaceCredentials,
    reportState,
    close() {
      closed ??= shutdown();
      return closed;
    },
  };
}
