// Owns the rate limits that replicas share through PostgreSQL: the per-API-key request window (a store for
// @fastify/rate-limit) and the per-vehicle command budget (a token bucket and one command in flight per VIN).
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import { type Kysely, sql } from 'kysely';
import type { Database } from '../store/schema.ts';
import type { VehicleLimiter, VehicleLimiterConfig, VehicleSlot } from '../vehicles/limiter.ts';

const DB_NOW = sql<number>`(extract(epoch from clock_timestamp()) * 1000)::bigint`;

/**
 * A fixed window per key, counted by one upsert: every replica adds to the same row, so N replicas allow what one
 * does. The window is aligned on the database's clock.
 */
export function sharedRateLimitStore(db: Kysely<Database>): FastifyRateLimitStoreCtor {
  const store: FastifyRateLimitStore = {
    incr(key, callback, timeWindow) {
      sql<{ hits: number; ttl: number }>`
        with t as (select ${DB_NOW} as now)
        insert into rate_windows (key, window_start, hits)
        select ${`http:${key}`}, t.now - t.now % ${timeWindow}, 1 from t
        on conflict (key) do update set
          hits = case when rate_windows.window_start = excluded.window_start then rate_windows.hits + 1 else 1 end,
          window_start = excluded.window_start
        returning hits, (window_start + ${timeWindow} - (select now from t))::integer as ttl`
        .execute(db)
        .then(
          ({ rows }) => {
            const row = rows[0];
            callback(null, {
              current: Number(row?.hits ?? 1),
              ttl: Math.max(1, Number(row?.ttl ?? timeWindow)),
            });
          },
          (err: Error) => callback(err),
        );
    },
    child: () => store,
  };
  return class {
    constructor() {
      // biome-ignore lint/correctness/noConstructorReturn: @fastify/rate-limit constructs its store; one shared object serves every route.
      return store;
    }
  } as unknown as FastifyRateLimitStoreCtor;
}

/**
 * The vehicle's budget in one row: an acquire is a single conditional upsert (refill, take a token, mark in flight),
 * so two replicas racing for the same car cannot both get its last token or both send at once. A slot left in
 * flight by a replica that died expires after holdMs.
 */
export function sharedVehicleLimiter(
  db: Kysely<Database>,
  config: VehicleLimiterConfig & { holdMs: number; holder: string },
): VehicleLimiter {
  const msPerToken = 60_000 / config.perMinute;
  const { burst, holdMs, holder } = config;
  return {
    async acquire(vin): Promise<VehicleSlot> {
      const { rows } = await sql<{ tokens: number; at: number }>`
        with t as (select ${DB_NOW} as now)
        insert into vehicle_budgets (vin, tokens, at, in_flight_until, holder)
        select ${vin}, ${burst - 1}, t.now, t.now + ${holdMs}, ${holder} from t
        on conflict (vin) do update set
          tokens = least(${burst}::float8, vehicle_budgets.tokens + (excluded.at - vehicle_budgets.at) / ${msPerToken}::float8) - 1,
          at = excluded.at, in_flight_until = excluded.in_flight_until, holder = excluded.holder
        where vehicle_budgets.in_flight_until <= excluded.at
          and least(${burst}::float8, vehicle_budgets.tokens + (excluded.at - vehicle_budgets.at) / ${msPerToken}::float8) >= 1
        returning tokens, at`.execute(db);
      const taken = rows[0];
      if (taken) {
        let released = false;
        return {
          ok: true,
          release() {
            if (released) return;
            released = true;
            void sql`update vehicle_budgets set in_flight_until = 0
              where vin = ${vin} and holder = ${holder} and at = ${Number(taken.at)}`
              .execute(db)
              .catch(() => {});
          },
        };
      }
      const { rows: seen } = await sql<{ tokens: number; at: number; in_flight_until: number; now: number }>`
        select tokens, at, in_flight_until, ${DB_NOW} as now from vehicle_budgets where vin = ${vin}`.execute(
        db,
      );
      const b = seen[0];
      if (!b || Number(b.in_flight_until) > Number(b.now))
        return { ok: false, reason: 'IN_FLIGHT', retryAfterS: 1 };
      const tokens = Math.min(burst, Number(b.tokens) + (Number(b.now) - Number(b.at)) / msPerToken);
      return {
        ok: false,
        reason: 'RATE',
        retryAfterS: Math.max(1, Math.ceil(((1 - tokens) * msPerToken) / 1000)),
      };
    },
  };
}
