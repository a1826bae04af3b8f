// Owns the gateway's drain state: which commands are in flight, refusing new ones, and waiting for the rest.
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
