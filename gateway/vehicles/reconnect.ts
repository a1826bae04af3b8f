// Owns when the gateway's MQTT link tries again after a failed or lost session: bounded exponential backoff.

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

/** 0.5 s, doubling, at most 30 s: a broker that comes back is found within about 30 s. */
export const DEFAULT_BACKOFF: Backoff = { initialMs: 500, maxMs: 30_000 };

/**
 * The wait before attempt `attempt + 1` (0 after a session ended): equal jitter, half of the step fixed and
 * half random, so that replicas restarted together do not knock on the broker in step.
 */
export function reconnectDelay(attempt: number, backoff: Backoff, random: () => number): number {
  const step = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + random() * (step / 2));
}
