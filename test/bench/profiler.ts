// Owns CPU profiling inside a bench child: the V8 sampling profiler that `node --cpu-prof` drives, started
// and stopped around one phase so the profile holds that phase and not the process's whole life.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

/** `node --cpu-prof`'s default sampling interval. */
export const CPU_PROF_INTERVAL_US = 1000;

let session: Session | null = null;

export async function profileStart(params: { intervalUs?: number }): Promise<void> {
  if (session) throw new Error('profiler already running');
  session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: params.intervalUs ?? CPU_PROF_INTERVAL_US });
  await session.post('Profiler.start');
}

/** Stops the profiler and writes a .cpuprofile (the format --cpu-prof writes) to file. */
export async function profileStop(params: { file: string }): Promise<void> {
  if (!session) throw new Error('profiler not started');
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  session = null;
  writeFileSync(params.file, JSON.stringify(profile));
}
