// Owns the per-vehicle command budget: a token bucket and one command in flight per VIN, so a flood of
// requests never becomes a flood of broker messages to one car.

export interface VehicleLimiterConfig {
  /** Commands a VIN may get back to back. */
  burst: number;
  /** Sustained commands per minute per VIN. */
  perMinute: number;
}

export type VehicleSlot =
  | { ok: true; release(): void }
  | { ok: false; reason: 'IN_FLIGHT' | 'RATE'; retryAfterS: number };

export interface VehicleLimiter {
  /**
   * Takes one command slot for this VIN; the caller releases it when the command has settled. Shared by replicas
   * through the store when there are several (gateway/cluster/rate-limits.ts), hence possibly asynchronous.
   */
  acquire(vin: string): VehicleSlot | Promise<VehicleSlot>;
}

interface Bucket {
  tokens: number;
  at: number;
  inFlight: boolean;
}

/** The in-process limiter of a single replica: it answers at once. */
export interface LocalVehicleLimiter extends VehicleLimiter {
  acquire(vin: string): VehicleSlot;
}

export function createVehicleLimiter(config: VehicleLimiterConfig, now: () => number): LocalVehicleLimiter {
  const buckets = new Map<string, Bucket>();
  const msPerToken = 60_000 / config.perMinute;
  return {
    acquire(vin) {
      const t = now();
      const b = buckets.get(vin) ?? { tokens: config.burst, at: t, inFlight: false };
      b.tokens = Math.min(config.burst, b.tokens + (t - b.at) / msPerToken);
      b.at = t;
      buckets.set(vin, b);
      // A car handles one command at a time; a second one would only queue behind the first at the broker.
      if (b.inFlight) return { ok: false, reason: 'IN_FLIGHT', retryAfterS: 1 };
      if (b.tokens < 1) {
        return {
          ok: false,
          reason: 'RATE',
          retryAfterS: Math.max(1, Math.ceil(((1 - b.tokens) * msPerToken) / 1000)),
        };
      }
      b.tokens -= 1;
      b.inFlight = true;
      let released = false;
      return {
        ok: true,
        release() {
          if (released) return;
          released = true;
          b.inFlight = false;
        },
      };
    },
  };
}
