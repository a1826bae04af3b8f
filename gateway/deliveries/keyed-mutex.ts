// Owns serialising work per key (a delivery id) within one process: commands to one delivery never interleave.

export interface RunOptions {
  /**
   * When another replica holds the key (gateway/cluster/delivery-holds.ts): throw this at once instead of waiting.
   * Within one process the caller checks held() first.
   */
  busy?: () => Error;
}

export interface KeyedMutex {
  /** Runs fn after every earlier holder of key has finished. */
  run<T>(key: string, fn: () => Promise<T>, options?: RunOptions): Promise<T>;
  /** Whether something holds or waits for key right now. */
  held(key: string): boolean;
}

export function createKeyedMutex(): KeyedMutex {
  const tails = new Map<string, Promise<void>>();
  return {
    run(key, fn) {
      const previous = tails.get(key) ?? Promise.resolve();
      const result = previous.then(fn);
      const tail = result.then(
        () => undefined,
        () => undefined,
      );
      tails.set(key, tail);
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return result;
    },
    held: (key) => tails.has(key),
  };
}
