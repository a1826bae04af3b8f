// Owns sending the outbox: lease a due row, sign it, POST it, and settle it or schedule a retry with backoff.
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { WebhookUrlError } from '../errors.ts';
import type { Database } from '../store/schema.ts';
import type { WebhookDestinations } from './destination.ts';
import type { SecretBox } from './secret-box.ts';
import { createWebhookSender, type Resolve, type WebhookSender } from './sender.ts';
import { EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, signatureHeader } from './signature.ts';
import {
  dueOutbox,
  findWebhookTarget,
  leaseOutbox,
  type OutboxRow,
  purgeOutbox,
  settleOutbox,
} from './store.ts';

export interface DispatchPolicy {
  /** How often the outbox is polled when nothing kicks the dispatcher. */
  pollMs: number;
  /** Rows sent per round, in parallel. */
  batch: number;
  /** After this many failed attempts a row is dead (kept for inspection until purged). */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** A leased row is another dispatcher's until then; longer than timeoutMs. */
  leaseMs: number;
  /** One POST may take this long. */
  timeoutMs: number;
  /** Delivered and dead rows are purged after this long. */
  retentionMs: number;
}

export const DEFAULT_DISPATCH_POLICY: DispatchPolicy = {
  pollMs: 1_000,
  batch: 16,
  maxAttempts: 30,
  baseDelayMs: 2_000,
  maxDelayMs: 3_600_000,
  leaseMs: 30_000,
  timeoutMs: 5_000,
  retentionMs: 7 * 24 * 3_600_000,
};

/**
 * Exponential backoff with "equal jitter": half of min(max, base * 2^(attempt-1)) plus a random half, so
 * receivers coming back up are not hit by every sender at once, and no retry comes at once.
 */
export function backoffMs(attempt: number, policy: DispatchPolicy, random: () => number): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

export interface DispatcherDeps {
  db: Kysely<Database>;
  secrets: SecretBox;
  logger: Logger;
  now: () => number;
  random?: () => number;
  /** Where events may go: checked before every attempt, and by the default transport on every resolved address. */
  destinations: WebhookDestinations;
  /** The default transport's resolver (getaddrinfo). */
  resolve?: Resolve;
  /** The transport; by default node:http(s) connecting only to checked addresses (sender.ts). */
  send?: WebhookSender;
  policy?: Partial<DispatchPolicy>;
  /** Hears of every failed attempt (the failure counter): refused, unanswered or answered other than 2xx. */
  onAttemptFailed?: () => void;
  /** Told after each attempt is recorded (the console shows attempts live). */
  onSettled?: (outboxId: string) => void;
}

export interface WebhookDispatcher {
  start(): void;
  /** Looks at the outbox soon (after the current transaction commits). */
  kick(): void;
  /** One round: sends what is due; resolves with how many rows were delivered. */
  runOnce(): Promise<number>;
  /** Stops polling and aborts sends in flight; their rows stay pending for the next start. */
  stop(): Promise<void>;
}

const originOf = (url: string): string => {
  try {
    return new URL(url).origin;
  } catch {
    return 'invalid-url';
  }
};

export function createWebhookDispatcher(deps: DispatcherDeps): WebhookDispatcher {
  const { db, logger, now } = deps;
  const policy = { ...DEFAULT_DISPATCH_POLICY, ...deps.policy };
  const random = deps.random ?? Math.random;
  const send =
    deps.send ??
    createWebhookSender({
      destinations: deps.destinations,
      ...(deps.resolve ? { resolve: deps.resolve } : {}),
    });
  const aborter = new AbortController();
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<unknown> | null = null;
  let again = false;
  let started = false;
  let stopped = false;
  let lastPurge = 0;

  const settle = async (id: string, s: Parameters<typeof settleOutbox>[2]): Promise<void> => {
    await settleOutbox(db, id, s);
    deps.onSettled?.(id);
  };

  async function deliver(row: OutboxRow): Promise<boolean> {
    const target = await findWebhookTarget(db, row.webhookId);
    const attempts = row.attempts + 1;
    if (!target) {
      await settle(row.id, {
        status: 'dead',
        attempts: row.attempts,
        nextAttemptAt: row.nextAttemptAt,
        lastError: 'webhook deleted',
        at: now(),
      });
      return false;
    }
    let error: string | null = null;
    let refused = false;
    try {
      // Whatever the transport, a URL of a forbidden form (a row from before the rules, a rule tightened) is not
      // sent, and its secret is not even opened.
      deps.destinations.checkUrl(target.url);
      const secret = deps.secrets.open(row.webhookId, target.secretSealed);
      const res = await send({
        url: target.url,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'curbside-webhooks/1',
          [SIGNATURE_HEADER]: signatureHeader(secret, row.payload, now()),
          [EVENT_ID_HEADER]: row.eventId,
          [EVENT_TYPE_HEADER]: row.eventType,
        },
        body: row.payload,
        timeoutMs: policy.timeoutMs,
        signal: aborter.signal,
      });
      if (res.status >= 300 && res.status < 400) error = `HTTP ${res.status}: redirects are not followed`;
      else if (res.status < 200 || res.status >= 300) error = `HTTP ${res.status}`;
    } catch (err) {
      if (aborter.signal.aborted) {
        // Stopping: not the receiver's fault; hand the row back untouched for the next start.
        await settle(row.id, {
          status: 'pending',
          attempts: row.attempts,
          nextAttemptAt: row.nextAttemptAt,
          lastError: row.lastError,
          at: now(),
        });
        return false;
      }
      refused = err instanceof WebhookUrlError;
      error = `${refused ? 'refused: ' : ''}${(err as Error).message}`.slice(0, 200);
    }
    const t = now();
    const log = { event: 'webhook.attempt', eventId: row.eventId, webhookId: row.webhookId, attempts };
    if (error === null) {
      await settle(row.id, {
        status: 'delivered',
        attempts,
        nextAttemptAt: row.nextAttemptAt,
        lastError: null,
        at: t,
      });
      logger.debug({ ...log, outcome: 'delivered' }, 'webhook delivered');
      return true;
    }
    deps.onAttemptFailed?.();
    const dead = attempts >= policy.maxAttempts;
    const next = t + backoffMs(attempts, policy, random);
    await settle(row.id, {
      status: dead ? 'dead' : 'pending',
      attempts,
      nextAttemptAt: dead ? row.nextAttemptAt : next,
      lastError: error,
      at: t,
    });
    logger.warn(
      {
        ...log,
        outcome: dead ? 'dead' : 'retry',
        origin: originOf(target.url),
        error,
        ...(refused ? { code: 'WEBHOOK_URL_FORBIDDEN' } : {}),
        nextAttemptAt: next,
      },
      dead ? 'webhook given up' : 'webhook failed, will retry',
    );
    return false;
  }

  async function round(): Promise<number> {
    const t = now();
    if (t - lastPurge > 3_600_000) {
      lastPurge = t;
      await purgeOutbox(db, t - policy.retentionMs);
    }
    const due = await dueOutbox(db, t, policy.batch);
    const results = await Promise.all(
      due.map(async (row) => {
        if (stopped || !(await leaseOutbox(db, row.id, now(), policy.leaseMs))) return false;
        return deliver(row);
      }),
    );
    return results.filter(Boolean).length;
  }

  function runOnce(): Promise<number> {
    if (running) {
      again = true;
      return running.then(() => 0);
    }
    const p = round()
      .catch((err: unknown) => {
        if (!stopped) logger.error({ err, event: 'webhook.round_failed' }, 'webhook round failed');
        return 0;
      })
      .finally(() => {
        running = null;
        if (again && !stopped) {
          again = false;
          schedule(0);
        }
      });
    running = p;
    return p;
  }

  function schedule(ms: number): void {
    if (stopped || !started) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      void runOnce().finally(() => {
        if (!timer) schedule(policy.pollMs);
      });
    }, ms);
    timer.unref?.();
  }

  return {
    start() {
      if (started) return;
      started = true;
      schedule(0);
    },
    kick() {
      if (running) again = true;
      else schedule(0);
    },
    runOnce,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      aborter.abort();
      await running;
    },
  };
}
