// Owns running a background job on one replica at a time: each tick, the replica that holds (or takes) the job's
// lease runs it and the others skip; a holder that dies stops renewing, and another takes over once it expires.
import type { Logger } from 'pino';
import type { Leases } from './leases.ts';

export interface SingletonJobs {
  /**
   * Runs fn if this replica holds the job's lease (taking or renewing it for ttlMs); resolves with whether it ran.
   * ttlMs must exceed the job's period, or the lease lapses between ticks and the job moves about.
   */
  runIfLeader<T>(
    job: string,
    ttlMs: number,
    fn: () => Promise<T>,
  ): Promise<{ ran: true; value: T } | { ran: false }>;
  /** Gives up every job lease this replica holds (a clean stop hands the jobs over at once). */
  releaseAll(): Promise<void>;
}

export const leaseOfJob = (job: string): string => `job:${job}`;

export function createSingletonJobs(deps: { leases: Leases; logger: Logger }): SingletonJobs {
  const { leases, logger } = deps;
  const led = new Set<string>();
  return {
    async runIfLeader(job, ttlMs, fn) {
      let mine: boolean;
      try {
        mine = await leases.acquire(leaseOfJob(job), ttlMs);
      } catch (err) {
        // The store is down: nobody can run it safely from here, so this tick is skipped.
        logger.warn({ event: 'cluster.lease_failed', job, err }, 'job lease not taken');
        mine = false;
      }
      if (mine !== led.has(job)) {
        logger.info(
          { event: mine ? 'cluster.job_taken' : 'cluster.job_lost', job, holder: leases.holder },
          job,
        );
        if (mine) led.add(job);
        else led.delete(job);
      }
      if (!mine) return { ran: false };
      return { ran: true, value: await fn() };
    },
    async releaseAll() {
      await Promise.all([...led].map((job) => leases.release(leaseOfJob(job)).catch(() => {})));
      led.clear();
    },
  };
}
