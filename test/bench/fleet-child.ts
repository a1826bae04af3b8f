// Owns the bench's simulated fleet process: the simulator's own startFleetRun, N cars over mTLS spread over
// --sim-workers worker threads, in a process apart from the broker so that neither's memory or CPU is counted as the other's.
import { devPkiPaths } from '../../certs/dev-pki.ts';
import type { SeedVehicle } from '../../seeds/index.ts';
import type { Persistence } from '../../simulator/fleet.ts';
import { type FleetRun, startFleetRun } from '../../simulator/fleet-workers.ts';
import { BENCH_LOCATION, BENCH_OWNER, BENCH_VEHICLE, benchVin } from './fleet-data.ts';
import { idleMemory, serve } from './ipc.ts';
import { profileStart, profileStop } from './profiler.ts';

export interface FleetStartParams {
  brokerUrl: string;
  pkiDir: string;
  count: number;
  /** Index of the first car's VIN (benchVin), so that several fleets connect different cars; 0 by default. */
  first?: number;
  concurrency: number;
  /** Worker threads the cars are spread over (simulator --workers). */
  workers: number;
  persistence: Persistence;
  tickMs: number;
  reportIntervalMs: number;
}

let fleet: FleetRun | null = null;

const { emit } = serve({
  async start(
    params: FleetStartParams,
  ): Promise<{ connected: number; ms: number; cpuMicros: number; workers: number }> {
    const first = params.first ?? 0;
    const vehicles: SeedVehicle[] = Array.from({ length: params.count }, (_, i) => ({
      vin: benchVin(first + i),
      ...BENCH_VEHICLE,
      ownerId: BENCH_OWNER,
      position: { lat: BENCH_LOCATION.lat, lon: BENCH_LOCATION.lon },
    }));
    let lastEmit = 0;
    const started = performance.now();
    // process.cpuUsage() is getrusage(RUSAGE_SELF): every thread of this process, so every worker's cars too.
    const cpu = process.cpuUsage();
    fleet = await startFleetRun({
      brokerUrl: params.brokerUrl,
      vehicles,
      certsDir: devPkiPaths(params.pkiDir).dir,
      dataDir: params.pkiDir,
      // The cars' single-use memory, state and command outcomes stay in memory: the file stores fsync each
      // change, which would make the simulator, not the gateway, the thing measured.
      persistence: params.persistence,
      workers: params.workers,
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
      connected: await fleet.connected(),
      ms: performance.now() - started,
      cpuMicros: used.user + used.system,
      workers: fleet.workers,
    };
  },

  connected: async (): Promise<number> => (await fleet?.connected()) ?? 0,

  async memory(): Promise<{ memory: NodeJS.MemoryUsage }> {
    return { memory: await idleMemory() };
  },

  // Every thread of this process: the main thread and each worker's cars.
  cpu: (): NodeJS.CpuUsage => process.cpuUsage(),
  profileStart,
  profileStop,
});
