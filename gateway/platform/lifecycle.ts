// Owns the gateway's drain state: which commands are in flight, refusing new ones, and waiting for the rest.
import type { Logger } from 'pino';
import { ApiError } from '../errors.ts';

export interface Lifecycle {
  /** True once shutdown began: new requests and new commands are refused. */
  draining(): boolean;
  inFlight(): number;
  /** Runs one command as in flight (shutdown waits for it); refused with SHUTTING_DOWN while draining. */
  track<T>(work: () => Promise<T>): Promise<T>;
  beginDrain(): void;
  /** Resolves true once nothing is in flight, or false when boundMs passes first. */
  idle(boundMs: number): Promise<boolean>;
}

export function createLifecycle(): Lifecycle {
  let draining = false;
  const running = new Set<Promise<unknown>>();

  return {
    draining: () => draining,
    inFlight: () => running.size,
    async track(work) {
      if (draining) throw new ApiError('SHUTTING_DOWN');
      const p = work();
      const settled = p.then(
        () => undefined,
        () => undefined,
      );
      running.add(settled);
      void settled.then(() => running.delete(settled));
      return p;
    },
    beginDrain() {
      draining = true;
    },
    async idle(boundMs) {
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), boundMs);
      });
      try {
        while (running.size > 0) {
          const done = await Promise.race([Promise.all([...running]).then(() => true as const), bound]);
          if (!done) return false;
        }
        return true;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** After the drain bound, commands still waiting are ended as timeouts; this bounds their last store writes. */
const SETTLE_AFTER_DRAIN_MS = 5_000;

/**
 * The drain of a gateway, run once however often it is asked for: refuses new commands, waits for those in
 * flight up to the bound, then ends the link so the ones still waiting end as timeouts with their timelines.
 */
export function drainOnce(
  lifecycle: Lifecycle,
  options: { logger: Logger; defaultMs: number; endLink: () => Promise<void> },
): (drainOptions?: { drainMs?: number }) => Promise<void> {
  const { logger } = options;
  let draining: Promise<void> | null = null;
  const drainCommands = async (drainMs: number): Promise<void> => {
    lifecycle.beginDrain();
    logger.info({ event: 'shutdown.drain', inFlight: lifecycle.inFlight(), drainMs }, 'draining');
    if (!(await lifecycle.idle(drainMs))) {
      logger.warn(
        { event: 'shutdown.drain_timeout', inFlight: lifecycle.inFlight(), drainMs },
        'commands still waiting for acks are ended as timeouts',
      );
      await options.endLink();
      await lifecycle.idle(SETTLE_AFTER_DRAIN_MS);
    }
  };
  return (drainOptions = {}) => {
    draining ??= drainCommands(drainOptions.drainMs ?? options.defaultMs);
    return draining;
  };
}
