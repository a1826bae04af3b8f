// Owns the delivery watchdog's sweep: locks every car left open longer than the relock time, and expires every
// delivery whose window passed before it was opened; driven from the store so that it survives a gateway restart.
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { overdueRelocks, unopenedPastWindow } from '../store/deliveries.ts';
import type { Database } from '../store/schema.ts';
import type { RelockOutcome } from './relock.ts';
import type { DeliveryService } from './service.ts';

/** Runs fn every ms until the returned function is called; injected so tests drive sweeps themselves. */
export type Every = (ms: number, fn: () => void) => () => void;

export const realEvery: Every = (ms, fn) => {
  const timer = setInterval(fn, ms);
  // The watchdog alone must not keep a process alive.
  timer.unref();
  return () => clearInterval(timer);
};

export interface RelockWatchdogDeps {
  db: Kysely<Database>;
  deliveries: Pick<DeliveryService, 'relock' | 'expire'>;
  /** A car unlocked this long ago and not confirmed locked since is locked by the gateway. */
  relockAfterMs: number;
  /**
   * The watchdog's clock: it decides which unlocks are overdue and which windows have ended (tokens and timeline
   * entries still use the service's clock).
   */
  now: () => number;
  logger: Logger;
  every?: Every;
  /** Hears each car the watchdog locked and the car confirmed (metrics); it must not throw. */
  onRelocked?: () => void;
}

export interface SweepResult {
  deliveryId: string;
  /** What the sweep did: a relock's outcome, or `expired` (its window passed unused). */
  outcome: RelockOutcome | 'expired' | 'error';
}

/** Deliveries expired per sweep at most; the next sweep takes the rest. */
const EXPIRE_BATCH = 500;

export interface RelockWatchdog {
  /**
   * Finds the overdue unlocks in the store and locks each car, and expires the deliveries whose window ended
   * unused; one sweep at a time.
   */
  sweep(): Promise<SweepResult[]>;
  start(intervalMs: number): void;
  /** Stops the timer and waits for a sweep in progress. */
  stop(): Promise<void>;
}

export function createRelockWatchdog(deps: RelockWatchdogDeps): RelockWatchdog {
  const every = deps.every ?? realEvery;
  let running: Promise<SweepResult[]> | null = null;
  let cancel: (() => void) | null = null;

  async function run(): Promise<SweepResult[]> {
    const now = deps.now();
    const [relocked, expired] = await Promise.all([relockOverdue(now), expireUnopened(now)]);
    return [...relocked, ...expired];
  }

  async function expireUnopened(now: number): Promise<SweepResult[]> {
    const ended = await unopenedPastWindow(deps.db, now, EXPIRE_BATCH);
    const results = await Promise.all(
      ended.map(async (d): Promise<SweepResult | null> => {
        try {
          // False when a request or another replica changed it first: nothing to report.
          if (!(await deps.deliveries.expire(d.id, now))) return null;
          deps.logger.info({ event: 'watchdog.expired', deliveryId: d.id, vin: d.vin }, 'delivery expired');
          return { deliveryId: d.id, outcome: 'expired' };
        } catch (err) {
          deps.logger.error(
            { err, event: 'watchdog.expire_failed', deliveryId: d.id },
            'delivery expiry failed',
          );
          return { deliveryId: d.id, outcome: 'error' };
        }
      }),
    );
    return results.filter((r): r is SweepResult => r !== null);
  }

  async function relockOverdue(now: number): Promise<SweepResult[]> {
    const due = await overdueRelocks(deps.db, now, deps.relockAfterMs);
    return Promise.all(
      due.map(async (d): Promise<SweepResult> => {
        try {
          // Retries are scheduled on the watchdog's own clock, like the sweep that found them.
          const outcome = await deps.deliveries.relock(d.id, 'watchdog', {
            retryAt: now + deps.relockAfterMs,
          });
          deps.logger.info(
            { event: 'watchdog.relock', deliveryId: d.id, vin: d.vin, outcome },
            'watchdog relock',
          );
          if (outcome === 'locked') deps.onRelocked?.();
          return { deliveryId: d.id, outcome };
        } catch (err) {
          deps.logger.error(
            { err, event: 'watchdog.relock_failed', deliveryId: d.id },
            'watchdog relock failed',
          );
          return { deliveryId: d.id, outcome: 'error' };
        }
      }),
    );
  }

  function sweep(): Promise<SweepResult[]> {
    running ??= run().finally(() => {
      running = null;
    });
    return running;
  }

  return {
    sweep,
    start(intervalMs) {
      cancel?.();
      cancel = every(intervalMs, () => {
        sweep().catch((err: unknown) => deps.logger.error({ err }, 'watchdog sweep failed'));
      });
    },
    async stop() {
      cancel?.();
      cancel = null;
      await running?.catch(() => undefined);
    },
  };
}
