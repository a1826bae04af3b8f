// Owns the relock watchdog: locks every car left open longer than the relock time, driven from the store so
// that it survives a gateway restart.
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { overdueRelocks } from '../store/deliveries.ts';
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
  deliveries: Pick<DeliveryService, 'relock'>;
  /** A car unlocked this long ago and not confirmed locked since is locked by the gateway. */
  relockAfterMs: number;
  /** The watchdog's clock: it decides which unlocks are overdue (tokens still use the service's clock). */
  now: () => number;
  logger: Logger;
  every?: Every;
  /** Hears each car the watchdog locked and the car confirmed (metrics); it must not throw. */
  onRelocked?: () => void;
}

export interface SweepResult {
  deliveryId: string;
  outcome: RelockOutcome | 'error';
}

export interface RelockWatchdog {
  /** Finds the overdue unlocks in the store and locks each car; one sweep at a time. */
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
