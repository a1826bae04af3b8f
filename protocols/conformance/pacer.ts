// Owns the kit's pacing: it sends only when the endpoint's answers fit the publish budget a broker grants a car.
/**
 * PROTOCOL.md §2: a car may publish a burst of 20 messages and 5 per second after that; a broker drops a car
 * that goes beyond. The kit counts every message it sees from the endpoint against a smaller bucket (the
 * endpoint may have spent some of its burst before the run, and its periodic reports come on top), and waits
 * before a command until the answers it expects fit.
 */
export interface Pacer {
  /**
   * Resolves once `messages` more publishes by the endpoint fit its budget, and reserves them: the next
   * messages it sees use the reservation up, so none is counted twice; settle() gives back what is left.
   */
  ready(messages: number): Promise<void>;
  /** Counts one message the endpoint published. */
  spent(): void;
  /** Gives back what the last reservations did not use: called once the answer they were for has come. */
  settle(): void;
  /** Time spent waiting so far, ms. */
  waitedMs(): number;
}

export interface PacerOptions {
  /** Sustained endpoint publishes per second; 0 turns pacing off. */
  perSecond: number;
  /** Publishes allowed at once. */
  burst: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** 4 a second after a burst of 16: below PROTOCOL.md §2's 5 and 20, with room for the endpoint's own reports. */
export const DEFAULT_PACE = { perSecond: 4, burst: 16 } as const;

export function createPacer(options: PacerOptions): Pacer {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  let tokens = options.burst;
  let reserved = 0;
  let at = now();
  let waited = 0;
  const refill = (): void => {
    const t = now();
    tokens = Math.min(options.burst, tokens + ((t - at) / 1000) * options.perSecond);
    at = t;
  };
  return {
    async ready(messages) {
      if (options.perSecond <= 0) return;
      const need = Math.min(messages, options.burst);
      refill();
      while (tokens < need) {
        const ms = Math.ceil(((need - tokens) / options.perSecond) * 1000);
        waited += ms;
        await sleep(ms);
        refill();
      }
      tokens -= need;
      reserved += need;
    },
    spent() {
      if (options.perSecond <= 0) return;
      if (reserved > 0) {
        reserved -= 1;
        return;
      }
      refill();
      tokens -= 1;
    },
    settle() {
      tokens += reserved;
      reserved = 0;
    },
    waitedMs: () => waited,
  };
}
