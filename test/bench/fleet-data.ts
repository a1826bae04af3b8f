// Owns the bench fleet's data: catalog-compatible VINs (2019 Chevrolet, WMI 1G1), the owner, location and couriers.
import { composeVin } from '../../protocols/vin.ts';

const PLANTS = 'ABCDEFGHJKLMNPRSTUVWXYZ';
const PER_PLANT = 1_000_000;

/** The index-th bench VIN: a 2019 Chevrolet Malibu from GM's 1G1 WMI, so the catalog accepts it. */
export function benchVin(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index >= PLANTS.length * PER_PLANT) {
    throw new RangeError(`bench VIN index out of range: ${index}`);
  }
  const plant = PLANTS[Math.floor(index / PER_PLANT)] as string;
  return composeVin('1G1', 'ZE5ST', 2019, `${plant}${String(index % PER_PLANT).padStart(6, '0')}`);
}

export const BENCH_VEHICLE = { make: 'Chevrolet', model: 'Malibu', year: 2019, provider: 'onstar' } as const;
export const BENCH_OWNER = 'owner-bench';
/** Where every bench delivery happens, and where couriers stand (inside the radius). */
export const BENCH_LOCATION = { lat: 47.6114, lon: -122.3381, radiusM: 200 } as const;
export const COURIER_POSITION = { lat: 47.6116, lon: -122.3381 } as const;
export const courierId = (i: number): string => `courier-${i}`;

/**
 * The car courier i uses on its j-th cycle. Courier i only ever uses cars whose index is i modulo C, so
 * no two couriers command the same car at the same time; together they walk over the whole fleet.
 */
export function carFor(courier: number, cycle: number, couriers: number, cars: number): number {
  const perCourier = Math.max(1, Math.floor(cars / couriers));
  return courier + couriers * (cycle % perCourier);
}
