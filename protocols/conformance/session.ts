// Owns the kit's conversation with the endpoint as a gateway: commands in its dialect, each ack checked as the
// gateway checks it (TOKEN.md §9.4), state queries, the endpoint's clock and lock state as last reported.
import { type KeyObject, randomBytes } from 'node:crypto';
import { verifyAckSignature } from '../ack-signature.ts';
import type { ProviderId } from '../catalog.ts';
import { compactJws } from '../forge.ts';
import { type Ack, encodeMessage, type StateReport, type ToCar, type TokenAction } from '../messages.ts';
import { type ProviderAdapter, providerAdapter } from '../providers/index.ts';
import { TOKEN_TYP } from '../token.ts';
import { ConformanceError } from './errors.ts';
import type { Inbound, Link } from './link.ts';
import type { Pacer } from './pacer.ts';
import type { KitKey } from './signer.ts';

/** What the kit expects an ack to name: the command it sent (TOKEN.md §9.4, first check). */
export interface AckBinding {
  commandId: string;
  /** Checked when given. */
  action?: string;
  /** Checked when given; null: the ack must carry none (a key announcement's). */
  deliveryId?: string | null;
}

/** One ack as the kit received it: decoded in the endpoint's dialect, or why it could not be. */
export interface ReceivedAck {
  /** The canonical ack; null when it did not decode (then `problem` says why). */
  ack: Ack | null;
  /** The command it names, when that much could be read. */
  commandId: string | null;
  problem: string | null;
  receivedAt: number;
}

/** A command sent and what came back for it. */
export interface Exchange {
  commandId: string;
  /** The first ack naming the command; null when none came in time. */
  ack: Ack | null;
  /** What is wrong with the ack besides its outcome: undecodable, bound to another command, badly signed. */
  problems: string[];
  sentAt: number;
  receivedAt: number | null;
}

export interface Answer {
  report: StateReport;
  sentAt: number;
  receivedAt: number;
}

export interface ReportSeen {
  report: StateReport;
  receivedAt: number;
}

export interface SessionDeps {
  link: Link;
  vin: string;
  provider: ProviderId;
  /** The public key of the certificate the CA issued for the VIN: every ack must verify under it (TOKEN.md §9). */
  vehicleKey: KeyObject;
  signer: KitKey;
  issuer: string;
  pacer: Pacer;
  /** How long an ack or an answer may take. */
  timeoutMs: number;
}

export interface Session {
  readonly vin: string;
  readonly provider: ProviderId;
  readonly adapter: ProviderAdapter;
  readonly signer: KitKey;
  readonly issuer: string;
  readonly timeoutMs: number;
  /** The endpoint's time now, ms, as estimated from the `at` of its latest answer or ack. */
  now(): number;
  /** A fresh id of the protocol's syntax: prefix + 24 random hex digits. */
  id(prefix: 'cmd' | 'dlv' | 'jti'): string;
  /** Claims for a token valid now at the endpoint, for this command; `over` replaces or (undefined) removes. */
  claims(ids: TokenIds, over?: Record<string, unknown>): Record<string, unknown>;
  /** A compact JWS: the kit's header {alg, typ, kid} (or `header`) over the claims, signed (default: the kit key). */
  token(
    ids: TokenIds,
    options?: { claims?: Record<string, unknown>; header?: unknown; key?: KeyObject },
  ): string;
  /** The canonical command, in the endpoint's dialect (revokes travel canonical, PROTOCOL.md §3). */
  command(action: TokenAction, token: string, ids: { commandId: string; deliveryId: string }): string;
  keysCommand(announcement: string, commandId: string): string;
  /** Publishes and waits for the first ack naming the command. `replies`: messages it may cause (pacing). */
  send(payload: string, binding: AckBinding, replies?: number): Promise<Exchange>;
  /** Waits for the next `count` acks naming a command, from now on (for redeliveries). */
  acksFor(commandId: string, count: number, timeoutMs: number): Promise<ReceivedAck[]>;
  /**
   * Publishes something no ack can name, then a state query: commands and queries are handled in order
   * (PROTOCOL.md §3.5), so every ack it caused has come once the answer has. Resolves with those acks.
   */
  sendUnanswerable(payload: string): Promise<ReceivedAck[]>;
  /** Publishes a raw payload without waiting for anything. */
  publish(payload: string, replies: number): Promise<number>;
  /** A state query, and the report that echoes its nonce (PROTOCOL.md §3.5). */
  query(commandIds?: string[], timeoutMs?: number): Promise<Answer>;
  /** The first report from now on (or already seen since `since`) matching; null after timeoutMs. */
  waitForReport(
    match: (r: ReportSeen) => boolean,
    timeoutMs: number,
    since?: number,
  ): Promise<ReportSeen | null>;
  /** Every report seen, in order of arrival. */
  reports(): readonly ReportSeen[];
  /** Every presence (will) message seen, by arrival time. */
  presences(): readonly number[];
  /** Lock state as last acked or reported; null before anything was heard. */
  locked(): boolean | null;
  lastReport(): StateReport | null;
  /** Sends a valid lock when the endpoint is not known to be locked; false if it would not lock. */
  ensureLocked(): Promise<boolean>;
  /** Undecodable messages on the state topic, with why. */
  stateProblems(): readonly string[];
  close(): void;
}

export interface TokenIds {
  commandId: string;
  deliveryId: string;
  jti: string;
  action: TokenAction;
}

const nonce = (): string => randomBytes(16).toString('base64url');

/** Reads an ack the canonical schema refuses (a missing `sig`, say) far enough to name its command. */
function readLeniently(adapter: ProviderAdapter, payload: Buffer): string | null {
  try {
    const wire = adapter.codecs.ack.wire.safeParse(JSON.parse(payload.toString('utf8')));
    if (!wire.success) return null;
    const id = (adapter.codecs.ack.fromWire(wire.data) as { commandId?: unknown }).commandId;
    return typeof id === 'string' ? id : null;
  } catch {
    return null;
  }
}

export function createSession(deps: SessionDeps): Session {
  const { link, vin, pacer } = deps;
  const adapter = providerAdapter(deps.provider);
  let offsetMs = 0;
  let locked: boolean | null = null;
  let last: StateReport | null = null;
  const acks: ReceivedAck[] = [];
  const seen: ReportSeen[] = [];
  const presences: number[] = [];
  const stateProblems: string[] = [];
  const wakers = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...wakers]) w();
  };

  const onAck = (message: Inbound): void => {
    let received: ReceivedAck;
    try {
      const ack = adapter.decodeAck(message.payload);
      received = { ack, commandId: ack.commandId, problem: null, receivedAt: message.receivedAt };
      locked = ack.locked;
    } catch (err) {
      received = {
        ack: null,
        commandId: readLeniently(adapter, message.payload),
        problem: `ack does not decode: ${(err as Error).message}`,
        receivedAt: message.receivedAt,
      };
    }
    acks.push(received);
  };
  const onState = (message: Inbound): void => {
    try {
      const decoded = adapter.decodeState(message.payload);
      if (decoded.type === 'presence') {
        presences.push(message.receivedAt);
        return;
      }
      seen.push({ report: decoded, receivedAt: message.receivedAt });
      last = decoded;
      locked = decoded.locked;
    } catch (err) {
      stateProblems.push((err as Error).message);
    }
  };
  const unsubscribe = link.onMessage((message) => {
    pacer.spent();
    if (message.topic === 'acks') onAck(message);
    else onState(message);
    wake();
  });

  /** Resolves with check() once it returns non-null, or null at the deadline. */
  const until = <T>(check: () => T | null, timeoutMs: number): Promise<T | null> =>
    new Promise((resolve) => {
      const first = check();
      if (first !== null) return resolve(first);
      const waker = (): void => {
        const found = check();
        if (found === null) return;
        clearTimeout(timer);
        wakers.delete(waker);
        resolve(found);
      };
      const timer = setTimeout(() => {
        wakers.delete(waker);
        resolve(null);
      }, timeoutMs);
      wakers.add(waker);
    });

  const learnClock = (at: number | null, sentAt: number, receivedAt: number): void => {
    if (at !== null) offsetMs = at - (sentAt + receivedAt) / 2;
  };

  const now = (): number => Date.now() + offsetMs;

  const publish = async (payload: string, replies: number): Promise<number> => {
    await pacer.ready(replies);
    const sentAt = Date.now();
    await link.publish(payload);
    return sentAt;
  };

  const check = (ack: Ack, binding: AckBinding): string[] => {
    // TOKEN.md §9.4, in order: the ack names the command sent, then its signature verifies.
    const problems: string[] = [];
    const mismatch = (member: string, got: unknown, want: unknown): void => {
      problems.push(`ACK_BINDING_MISMATCH: ${member} ${JSON.stringify(got)}, sent ${JSON.stringify(want)}`);
    };
    if (ack.vin !== vin) mismatch('vin', ack.vin, vin);
    if (binding.action !== undefined && ack.action !== binding.action)
      mismatch('action', ack.action, binding.action);
    if (binding.deliveryId !== undefined && (ack.deliveryId ?? null) !== binding.deliveryId) {
      mismatch('deliveryId', ack.deliveryId, binding.deliveryId);
    }
    if (problems.length > 0) return problems;
    const signature = verifyAckSignature(ack, deps.vehicleKey);
    if (!signature.ok)
      problems.push(`${signature.code}: the ack is not signed by the key certified for ${vin}`);
    return problems;
  };

  const acksFor = async (commandId: string, count: number, timeoutMs: number, from = acks.length) => {
    const mine = (): ReceivedAck[] => acks.slice(from).filter((a) => a.commandId === commandId);
    await until(() => (mine().length >= count ? true : null), timeoutMs);
    return mine().slice(0, count);
  };

  const send = async (payload: string, binding: AckBinding, replies = 2): Promise<Exchange> => {
    const from = acks.length;
    const sentAt = await publish(payload, replies);
    const [first] = await acksFor(binding.commandId, 1, deps.timeoutMs, from);
    pacer.settle();
    if (!first) return { commandId: binding.commandId, ack: null, problems: [], sentAt, receivedAt: null };
    if (!first.ack) {
      return {
        commandId: binding.commandId,
        ack: null,
        problems: [first.problem ?? 'ack does not decode'],
        sentAt,
        receivedAt: first.receivedAt,
      };
    }
    learnClock(first.ack.at, sentAt, first.receivedAt);
    return {
      commandId: binding.commandId,
      ack: first.ack,
      problems: check(first.ack, binding),
      sentAt,
      receivedAt: first.receivedAt,
    };
  };

  const query = async (commandIds?: string[], timeoutMs = deps.timeoutMs): Promise<Answer> => {
    const message: ToCar = {
      v: 1,
      type: 'state_query',
      nonce: nonce(),
      ...(commandIds === undefined ? {} : { commandIds }),
    };
    const from = seen.length;
    const sentAt = await publish(adapter.encodeToCar(message), 1);
    const answer = await until(
      () => seen.slice(from).find((s) => s.report.nonce === message.nonce) ?? null,
      timeoutMs,
    );
    pacer.settle();
    if (!answer) {
      throw new ConformanceError(
        'CONFORMANCE_NO_ANSWER',
        `no state report echoing the query's nonce within ${timeoutMs} ms`,
      );
    }
    learnClock(answer.report.at, sentAt, answer.receivedAt);
    return { report: answer.report, sentAt, receivedAt: answer.receivedAt };
  };

  const claims = (ids: TokenIds, over: Record<string, unknown> = {}): Record<string, unknown> => {
    const t = Math.floor(now() / 1000);
    const base: Record<string, unknown> = {
      iss: deps.issuer,
      aud: vin,
      sub: ids.deliveryId,
      act: ids.action,
      jti: ids.jti,
      cid: ids.commandId,
      iat: t,
      nbf: t,
      exp: t + 60,
    };
    for (const [k, v] of Object.entries(over)) {
      if (v === undefined) delete base[k];
      else base[k] = v;
    }
    return base;
  };

  const session: Session = {
    vin,
    provider: deps.provider,
    adapter,
    signer: deps.signer,
    issuer: deps.issuer,
    timeoutMs: deps.timeoutMs,
    now,
    id: (prefix) => `${prefix}_cf_${randomBytes(12).toString('hex')}`,
    claims,
    token(ids, options = {}) {
      const header = options.header ?? { alg: 'EdDSA', typ: TOKEN_TYP, kid: deps.signer.kid };
      return compactJws(header, options.claims ?? claims(ids), options.key ?? deps.signer.key);
    },
    command(action, token, ids) {
      const { commandId, deliveryId } = ids;
      const command = { v: 1 as const, type: 'command' as const, commandId, deliveryId, action, token };
      return action === 'revoke' ? encodeMessage(command) : adapter.encodeToCar(command);
    },
    keysCommand: (announcement, commandId) => encodeMessage({ v: 1, type: 'keys', commandId, announcement }),
    send,
    acksFor: (commandId, count, timeoutMs) => acksFor(commandId, count, timeoutMs),
    async sendUnanswerable(payload) {
      const from = acks.length;
      await publish(payload, 1);
      await query();
      // The answer left after every ack the payload caused; acks and reports travel on two topics, so give
      // the broker a moment to have delivered an ack it forwarded just before the report.
      await new Promise((resolve) => setTimeout(resolve, 200));
      return acks.slice(from);
    },
    publish,
    query,
    waitForReport: (match, timeoutMs, since = Date.now()) =>
      until(() => seen.find((s) => s.receivedAt >= since && match(s)) ?? null, timeoutMs),
    reports: () => seen,
    presences: () => presences,
    locked: () => locked,
    lastReport: () => last,
    async ensureLocked() {
      if (locked === true) return true;
      const ids: TokenIds = {
        commandId: session.id('cmd'),
        deliveryId: session.id('dlv'),
        jti: session.id('jti'),
        action: 'lock',
      };
      const exchange = await send(session.command('lock', session.token(ids), ids), {
        commandId: ids.commandId,
        action: 'lock',
      });
      return exchange.ack?.outcome === 'executed' && exchange.ack.locked;
    },
    stateProblems: () => stateProblems,
    close: () => {
      unsubscribe();
      wakers.clear();
    },
  };
  return session;
}

/** Fresh ids for one command. */
export const freshIds = (session: Session, action: TokenAction): TokenIds => ({
  commandId: session.id('cmd'),
  deliveryId: session.id('dlv'),
  jti: session.id('jti'),
  action,
});
