// Owns the bench's simulated fleet process: the simulator's own startFleet, N cars over mTLS, in a process
// apart from the broker so that neither's memory or CPU is counted as the other's.
import { readFileSync } from 'node:fs';
import { devPkiPaths } from '../../certs/dev-pki.ts';
import type { SeedVehicle } from '../../seeds/index.ts';
import { type Fleet, startFleet } from '../../simulator/fleet.ts';
import { createMemoryReplayStore, DEFAULT_REPLAY_CAPACITY, readFleetPki } from '../../simulator/index.ts';
import { BENCH_LOCATION, BENCH_OWNER, BENCH_VEHICLE, benchVin } from './fleet-data.ts';
import { idleMemory, serve } from './ipc.ts';
import { profileStart, profileStop } from './profiler.ts';

export interface FleetStartParams {
  brokerUrl: string;
  pkiDir: string;
  count: number;
  concurrency: number;
  tickMs: number;
  reportIntervalMs: number;
}

let fleet: Fleet | null = null;

const { emit } = serve({
  async start(params: FleetStartParams): Promise<{ connected: number; ms: number; cpuMicros: number }> {
    const paths = devPkiPaths(params.pkiDir);
    const _read = (path: string): string => readFileSync(path, 'utf8');
    const vehicles: SeedVehicle[] = Array.from({ length: params.count }, (_, i) => ({
      vin: benchVin(i),
      ...BENCH_VEHICLE,
      ownerId: BENCH_OWNER,
      position: { lat: BENCH_LOCATION.lat, lon: BENCH_LOCATION.lon },
    }));
    let lastEmit = 0;
    const started = performance.now();
    const cpu = process.cpuUsage();
    fleet = await startFleet({
      brokerUrl: params.brokerUrl,
      vehicles,
      ...readFleetPki(paths.dir),
      dataDir: params.pkiDir,
      // The cars' single-use memory stays in memory: the file store fsyncs each claim on the simulator's
      // one thread, which would make the simulator, not the gateway, the thing measured.
      replayStoreFor: () => createMemoryReplayStore({ capacity: DEFAULT_REPLAY_CAPACITY }),
      connectConcurrency: params.concurrency,
      tickIntervalMs: params.tickMs,
      reportIntervalMs: params.reportIntervalMs,
      onConnected: (done, total) => {
        const now = performance.now();
        if (done === total || now - lastEmit > 100) {
          lastEmit = now;
          emit('progress', { done, total });
        }
      },
    });
    const used = process.cpuUsage(cpu);
    return {
      connected: fleet.cars.size,
      ms: performance.now() - started,
      cpuMicros: used.user + used.system,
    };
  },

  connected: (): number => [...(fleet?.cars.values() ?? [])].filter((c) => c.connection.connected).length,

  async memory(): Promise<{ memory: NodeJS.MemoryUsage }> {
    return { memory: await idleMemory() };
  },

  cpu: (): NodeJS.CpuUsage => process.cpuUsage(),
  profileStart,
  profileStop,
});
