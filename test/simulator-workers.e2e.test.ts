// End to end over real mTLS MQTT on loopback: a fleet spread over two worker threads, driven by the gateway and by
// the simulator's control API, and what stopping it (or losing a worker) leaves behind.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ControlServer, startControlServer } from '../simulator/control.ts';
import { SimulatorError } from '../simulator/errors.ts';
import { type FleetRun, startFleetRun } from '../simulator/fleet-workers.ts';
import { playScenario } from '../simulator/scenario.ts';
import { linkSeeded, lockBy, registerSeededLocation, scheduleParked, unlockAt } from './helpers/delivery.ts';
import { type Stack, startStack } from './helpers/stack.ts';
import { DIALECTS } from './helpers/temp-store.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The fleet's worker threads alive in a process now (this one by default), by the OS thread name each is given. */
function fleetThreads(pid: number | 'self' = 'self'): string[] {
  return readdirSync(`/proc/${pid}/task`)
    .map((task) => {
      try {
        return readFileSync(`/proc/${pid}/task/${task}/comm`, 'utf8').trim();
      } catch {
        return ''; // the thread ended while we read
      }
    })
    .filter((name) => name.startsWith('fleet-worker-'));
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// biome-ignore lint/suspicious/noExplicitAny: tests read replies by shape and assert on them.
const json = async (res: Response): Promise<any> => res.json();

interface Logged {
  level: string;
  fields: Record<string, unknown>;
  msg: string;
}

describe.each(DIALECTS)('a fleet over two worker threads, on %s', (dialect) => {
  let stack: Stack;
  let run: FleetRun | null = null;
  let control: ControlServer | null = null;
  const logged: Logged[] = [];

  const startRun = () =>
    startFleetRun({
      brokerUrl: stack.gateway.brokerUrl,
      vehicles: stack.seeds.vehicles,
      certsDir: stack.pki.dir,
      dataDir: join(stack.dir, 'sim-workers'),
      reportIntervalMs: 60_000,
      faults: { seed: 3 },
      workers: 2,
      logger: {
        info: (fields, msg) => logged.push({ level: 'info', fields, msg }),
        warn: (fields, msg) => logged.push({ level: 'warn', fields, msg }),
        error: (fields, msg) => logged.push({ level: 'error', fields, msg }),
      },
    });

  beforeAll(async () => {
    // The stack's own in-thread fleet holds no car: every car lives in a worker.
    stack = await startStack({}, { dialect, fleet: { vehicles: [] } });
  });
  afterEach(async () => {
    await control?.close();
    control = null;
    await run?.stop();
    run = null;
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('connects every car, each in one worker, and stopping ends both workers', async () => {
    expect(fleetThreads()).toEqual([]);
    const clients = () => stack.gateway.broker?.aedes.connectedClients ?? -1;
    const before = clients();
    run = await startRun();
    expect(run.workers).toBe(2);
    const vins = run.vins();
    expect(vins.length).toBeGreaterThan(2);
    // Car i lives in worker i mod 2.
    expect(vins.map((vin) => run?.workerOf(vin))).toEqual(vins.map((_, i) => i % 2));
    expect(fleetThreads().sort()).toEqual(['fleet-worker-1', 'fleet-worker-2']);
    expect(await run.connected()).toBe(vins.length);
    expect(clients()).toBe(before + vins.length);
    const views = await run.views();
    expect(views.map((v) => v.vin)).toEqual(vins);
    expect(views.every((v) => v.connected && v.state.locked)).toBe(true);
    expect(run.skipped.map((s) => s.reason)).toEqual(run.skipped.map(() => 'INCOMPATIBLE'));

    await run.stop();
    run = null;
    expect(fleetThreads()).toEqual([]);
    // Every car said goodbye: the broker has no car session left.
    await waitFor('the broker to drop every car', () => clients() === before);
  });

  it('the gateway unlocks and relocks a car that lives in worker 2', async () => {
    run = await startRun();
    const fleet = run;
    const vin = fleet
      .vins()
      .find(
        (v) =>
          fleet.workerOf(v) === 1 &&
          stack.seeds.locations.some(
            (l) => l.ownerId === stack.seeds.vehicles.find((s) => s.vin === v)?.ownerId,
          ),
      ) as string;
    expect(vin).toBeDefined();
    const vehicle = await linkSeeded(stack, vin);
    const { id: locationId, location } = await registerSeededLocation(stack, vehicle.ownerId);
    const id = await scheduleParked(stack, vin, locationId);

    const unlock = await unlockAt(stack, id, location);
    expect(unlock.status).toBe(200);
    expect((await fleet.view(vin)).state.locked).toBe(false);
    expect((await fleet.view(vin)).executedCommands).toBe(1);

    const lock = await lockBy(stack, id);
    expect(lock.status).toBe(200);
    const after = await fleet.view(vin);
    expect(after.state.locked).toBe(true);
    expect(after.executedCommands).toBe(2);
    expect((await stack.request('GET', `/v1/deliveries/${id}`)).body.status).toBe('completed');
    // The car's log lines reach this thread, with the worker that wrote them.
    expect(logged.some((l) => l.fields.vin === vin && l.fields.worker === 2)).toBe(true);
  });

  it('the control API drives a car in each worker and refuses an unknown VIN', async () => {
    run = await startRun();
    const fleet = run;
    control = await startControlServer({ fleet, faults: null, port: 0 });
    const base = `http://127.0.0.1:${control.port}`;
    const op = (vin: string, body: unknown) =>
      fetch(`${base}/cars/${vin}/ops`, { method: 'POST', body: JSON.stringify(body) });
    const [first, second] = [0, 1].map((w) => fleet.vins().find((v) => fleet.workerOf(v) === w) as string);

    for (const vin of [first, second] as string[]) {
      const opened = await op(vin, { op: 'door', door: 'driver', to: 'open' });
      expect(opened.status).toBe(200);
      const body = await json(opened);
      expect(body.applied).toEqual([vin]);
      expect(body.car.state.doors.driver).toBe('open');

      const offline = await op(vin, { op: 'link', mode: 'offline' });
      expect(offline.status).toBe(200);
      expect((await json(offline)).car.faults.link).toBe('offline');
      await waitFor(`${vin} to drop off`, async () => !(await fleet.view(vin)).connected);
      expect((await op(vin, { op: 'link', mode: 'online' })).status).toBe(200);
      await waitFor(`${vin} to come back`, async () => (await fleet.view(vin)).connected);

      const one = await fetch(`${base}/cars/${vin}`);
      expect((await json(one)).state.doors.driver).toBe('open');
    }
    // The other cars were not touched.
    const all = (await json(await fetch(`${base}/cars`))).cars as Array<{
      vin: string;
      state: { doors: { driver: string } };
    }>;
    expect(all.filter((c) => c.state.doors.driver === 'open').map((c) => c.vin)).toEqual([first, second]);
    // Faults from both workers are in one report.
    const report = await json(await fetch(`${base}/faults`));
    expect(report.seed).toBe(3);
    expect(report.counts.link_down).toBe(2);
    expect(Object.keys(report.cars)).toEqual(expect.arrayContaining([first, second]));

    // A scenario step is routed the same way.
    await playScenario(fleet, [{ atMs: 0, vin: second, op: { op: 'ignition', to: 'on' } }]).done;
    expect((await fleet.view(second as string)).state.ignition).toBe('on');

    // A whole-fleet operation reaches every car in both workers.
    const everyone = await fetch(`${base}/fleet/ops`, {
      method: 'POST',
      body: JSON.stringify({ op: 'trunk', to: 'open' }),
    });
    expect((await json(everyone)).applied.sort()).toEqual([...fleet.vins()].sort());

    const unknown = await fetch(`${base}/cars/1G1ZE5ST5KF999999/ops`, {
      method: 'POST',
      body: JSON.stringify({ op: 'report' }),
    });
    expect(unknown.status).toBe(404);
    expect((await json(unknown)).code).toBe('SIM_UNKNOWN_VIN');
  });

  it('a worker that dies is reported with its cars, its requests fail, and the rest still stops', async () => {
    run = await startRun();
    const fleet = run;
    const lost = fleet.vins().find((v) => fleet.workerOf(v) === 1) as string;
    const kept = fleet.vins().find((v) => fleet.workerOf(v) === 0) as string;
    await fleet.threads()[1]?.terminate();
    const crash = await fleet.crashed;
    expect(crash).toBeInstanceOf(SimulatorError);
    expect(crash.code).toBe('SIM_WORKER_CRASHED');
    expect(crash.message).toMatch(/^worker 2 of 2 \(\d+ cars, /);
    await expect(fleet.view(lost)).rejects.toMatchObject({ code: 'SIM_WORKER_CRASHED' });
    expect((await fleet.view(kept)).connected).toBe(true);
    await fleet.stop();
    run = null;
    expect(fleetThreads()).toEqual([]);
  });

  it('npm run simulator -- --workers 2 runs its cars on two threads, serves control, and exits 0 on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'simulator/main.ts',
        ...['--broker', stack.gateway.brokerUrl, '--certs', stack.pki.dir],
        ...['--data', join(stack.dir, 'sim-program'), '--workers', '2', '--control-port', '0'],
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000, killSignal: 'SIGKILL' },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const exit = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    try {
      await waitFor('the control API', () => /control API listening/.test(out), 30_000);
      expect(out).toMatch(/^cars up cars=\d+ workers=2$/m);
      expect(fleetThreads(child.pid as number).sort()).toEqual(['fleet-worker-1', 'fleet-worker-2']);
      const url = /control API listening url=(\S+)/.exec(out)?.[1] as string;
      const cars = (await json(await fetch(`${url}/cars`))).cars as Array<{
        vin: string;
        connected: boolean;
      }>;
      expect(cars.length).toBeGreaterThan(2);
      expect(cars.every((c) => c.connected)).toBe(true);
      const vin = cars[1]?.vin as string;
      const moved = await fetch(`${url}/cars/${vin}/ops`, {
        method: 'POST',
        body: JSON.stringify({ op: 'ignition', to: 'on' }),
      });
      expect((await json(moved)).car.state.ignition).toBe('on');
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
      expect(out).toMatch(/^stopping signal=SIGTERM cars=\d+$/m);
      expect(out).toMatch(/^fault counts( |$)/m);
      // A car's connection reset by a busy broker is a warning the car recovers from (it reconnects); nothing else
      // may reach stderr.
      const unexpected = err
        .split('\n')
        .filter((l) => l !== '' && !/mqtt error.*\b(ECONNRESET|EPIPE)\b/.test(l));
      expect(unexpected).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
