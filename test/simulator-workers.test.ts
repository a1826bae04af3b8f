// Unit tests of the fleet's worker threads: how many, which car goes where, the --workers flag, and errors crossing
// back from a worker.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { trustedJwkFor } from '../protocols/keys.ts';
import { loadSeeds } from '../seeds/index.ts';
import { parseCli, USAGE } from '../simulator/cli.ts';
import { SimulatorError } from '../simulator/errors.ts';
import { type Persistence, startFleet } from '../simulator/fleet.ts';
import {
  fromWorkerError,
  MAX_WORKERS,
  partition,
  toWorkerError,
  workerCount,
} from '../simulator/fleet-workers.ts';

import { fakeClients } from './helpers/fake-mqtt.ts';

const BROKER = ['--broker', 'mqtts://127.0.0.1:8883'];

describe('workerCount', () => {
  it('defaults to the core count, never more workers than cars, and at least one', () => {
    expect(workerCount(undefined, 10_000, 2)).toBe(2);
    expect(workerCount(undefined, 10_000, 8)).toBe(8);
    expect(workerCount(4, 10_000, 2)).toBe(4);
    expect(workerCount(8, 3, 2)).toBe(3);
    expect(workerCount(undefined, 1, 16)).toBe(1);
    expect(workerCount(2, 0, 2)).toBe(1);
    expect(workerCount(MAX_WORKERS, 100_000, 2)).toBe(MAX_WORKERS);
  });

  it.each([0, -1, 1.5, Number.NaN, MAX_WORKERS + 1])('refuses %s with SIM_ARGS_INVALID', (n) => {
    expect(() => workerCount(n, 10, 2)).toThrow(
      expect.objectContaining({
        code: 'SIM_ARGS_INVALID',
        message: `workers must be a whole number from 1 to ${MAX_WORKERS}`,
      }),
    );
  });
});

describe('partition', () => {
  it('puts car i in worker i mod n: every car in exactly one worker, shares within one of each other', () => {
    const vins = Array.from({ length: 11 }, (_, i) => `car-${i}`);
    const shares = partition(vins, 3);
    expect(shares).toEqual([
      ['car-0', 'car-3', 'car-6', 'car-9'],
      ['car-1', 'car-4', 'car-7', 'car-10'],
      ['car-2', 'car-5', 'car-8'],
    ]);
    expect(shares.flat().sort()).toEqual([...vins].sort());
  });

  it('one worker holds everything, and a worker per car holds one each', () => {
    expect(partition(['a', 'b'], 1)).toEqual([['a', 'b']]);
    expect(partition(['a', 'b'], 2)).toEqual([['a'], ['b']]);
  });
});

describe('errors crossing back from a worker', () => {
  it('keep their code, and name the car when the message does not', () => {
    const vin = '1G1ZE5ST5KF100231';
    const crossed = fromWorkerError(
      toWorkerError(new SimulatorError('SIM_CONTROL_FAILED', 'runs without fault injection')),
      vin,
    );
    expect(crossed).toBeInstanceOf(SimulatorError);
    expect(crossed).toMatchObject({
      code: 'SIM_CONTROL_FAILED',
      message: `${vin}: runs without fault injection`,
    });
    const named = fromWorkerError(toWorkerError(new SimulatorError('SIM_UNKNOWN_VIN', `no ${vin}`)), vin);
    expect(named.message).toBe(`no ${vin}`);
  });

  it('a foreign error stays a plain Error (the control API answers 500), with the car named', () => {
    const crossed = fromWorkerError(toWorkerError(new TypeError('boom')), 'VIN1');
    expect(crossed).not.toBeInstanceOf(SimulatorError);
    expect(crossed.message).toBe('VIN1: boom');
    expect(toWorkerError('thrown string')).toEqual({ code: null, message: 'thrown string' });
  });
});

describe('--workers', () => {
  it('takes a whole number from 1 to 256, absent by default (the core count)', () => {
    const run = (argv: string[]) => {
      const parsed = parseCli([...BROKER, ...argv]);
      if (parsed.kind !== 'run') throw new Error('expected a run');
      return parsed.options.workers;
    };
    expect(run([])).toBeUndefined();
    expect(run(['--workers', '1'])).toBe(1);
    expect(run(['--workers', '4'])).toBe(4);
    expect(run(['--workers', String(MAX_WORKERS)])).toBe(MAX_WORKERS);
    expect(USAGE).toContain('--workers N');
  });

  it.each([['0'], ['-1'], ['1.5'], ['two'], ['01'], [''], ['257'], ['1e2']])(
    'refuses %j with one line',
    (n) => {
      expect(() => parseCli([...BROKER, `--workers=${n}`])).toThrow(
        expect.objectContaining({
          code: 'SIM_ARGS_INVALID',
          message: `--workers must be a whole number from 1 to ${MAX_WORKERS}`,
        }),
      );
    },
  );
});

describe('persistence', () => {
  const MALIBU = '1G1ZE5ST5KF100231';

  async function oneCar(dataDir: string, persistence: Persistence) {
    const carKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    return startFleet({
      brokerUrl: 'mqtts://127.0.0.1:8883',
      vehicles: loadSeeds().vehicles.filter((v) => v.vin === MALIBU),
      pki: { ca: 'CA', certFor: () => ({ cert: 'C', key: carKey }) },
      trustedKeys: { keys: [await trustedJwkFor(generateKeyPairSync('ed25519').publicKey)] },
      dataDir,
      createClient: fakeClients().create,
      persistence,
    });
  }

  // State is written on every change; outcomes and the replay guard only once a command arrives.
  it.each([
    ['memory', []],
    ['files', [`${MALIBU}.state.json`]],
  ] as const)('%s: a reboot keeps the car state; state files written: %j', async (persistence, written) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sim-persistence-'));
    const fleet = await oneCar(dataDir, persistence);
    try {
      fleet.car(MALIBU).car.openDoor('driver');
      await fleet.reboot(MALIBU, 0);
      expect(fleet.car(MALIBU).car.snapshot().doors.driver).toBe('open');
      expect(readdirSync(dataDir).filter((f) => /\.(state|outcomes|replay)\.json$/.test(f))).toEqual(written);
    } finally {
      await fleet.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('CPU of a fleet over worker threads', () => {
  // The bench meters the fleet process with process.cpuUsage() (test/bench/fleet-child.ts): it must count the
  // workers' threads, where the cars run, and not only the main thread.
  it('process.cpuUsage() counts the CPU time of worker threads', async () => {
    const before = process.cpuUsage();
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads');
       let x = 0; for (let i = 0; i < 2e7; i++) x += i;
       const u = process.threadCpuUsage();
       parentPort.postMessage(u.user + u.system);`,
      { eval: true },
    );
    const workerMicros = await new Promise<number>((resolve) => worker.once('message', resolve));
    const used = process.cpuUsage(before);
    await worker.terminate();
    expect(workerMicros).toBeGreaterThan(0);
    expect(used.user + used.system).toBeGreaterThanOrEqual(workerMicros);
  });
});
