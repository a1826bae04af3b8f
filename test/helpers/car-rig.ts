// Test harness: one simulated car with in-memory (or given) stores, a frozen clock and its own P-256 key.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { TrustedKeysFile } from '../../protocols/index.ts';
import { createSimulatedCar, type SimulatedCar } from '../../simulator/car.ts';
import { createMemoryKeyStore, type KeyStore } from '../../simulator/key-store.ts';
import { createMemoryReplayStore, type ReplayStore } from '../../simulator/replay-store.ts';
import { createMemoryRevocationStore, type RevocationStore } from '../../simulator/revocation-store.ts';

export interface CarRig {
  car: SimulatedCar;
  replay: ReplayStore;
  revocations: RevocationStore;
  keys: KeyStore;
  signingKey: KeyObject;
  /** Sets the car's raw clock; null means the car does not know the time. */
  setTime(t: number | null): void;
}

export interface CarRigOptions {
  vin: string;
  now: number;
  trustedKeys: TrustedKeysFile;
  signingKey?: KeyObject;
  replay?: ReplayStore;
  revocations?: RevocationStore;
  keys?: KeyStore;
  failsafeRelockMs?: number;
}

export const newCarKey = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;

export function carRig(options: CarRigOptions): CarRig {
  let time: number | null = options.now;
  const replay = options.replay ?? createMemoryReplayStore({ capacity: 100 });
  const revocations =
    options.revocations ??
    createMemoryRevocationStore({ capacity: 100, lastGoodTime: () => replay.lastGoodTime() });
  const keys = options.keys ?? createMemoryKeyStore(options.trustedKeys);
  const signingKey = options.signingKey ?? newCarKey();
  const car = createSimulatedCar({
    vin: options.vin,
    make: 'Chevrolet',
    model: 'Malibu',
    year: 2019,
    provider: 'onstar',
    initial: { position: { lat: 47.6117, lon: -122.3379 } },
    keys,
    replay,
    revocations,
    signingKey,
    clock: () => time,
    failsafeRelockMs: options.failsafeRelockMs ?? 120_000,
  });
  return {
    car,
    replay,
    revocations,
    keys,
    signingKey,
    setTime(t) {
      time = t;
    },
  };
}
