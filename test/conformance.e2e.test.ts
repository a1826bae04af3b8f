// The conformance kit against simulated cars over real brokers and real mTLS: the correct car passes every case
// through `npm run conformance` (exit 0, a JUnit report), and every deliberate flaw is caught by its case.
import { type ChildProcess, spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DevPkiPaths, ensureDevPki } from '../certs/index.ts';
import { type Broker, type BrokerRefusal, createBroker } from '../gateway/broker/broker.ts';
import {
  CASES,
  type ConformanceReport,
  runConformance,
  simulatorHook,
} from '../protocols/conformance/index.ts';
import { TrustedKeysFileSchema } from '../protocols/keys.ts';
import { composeVin } from '../protocols/vin.ts';
import type { SeedVehicle } from '../seeds/index.ts';
import {
  type ControlServer,
  createFleetFaults,
  FLAWS,
  type Flaw,
  type Fleet,
  readFleetPki,
  startControlServer,
  startFleet,
} from '../simulator/index.ts';
import { parseJunit } from './helpers/junit.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Short, so a whole run stays within seconds; the kit is told the same (--relock-ms). */
const RELOCK_MS = 1_500;
/** Flaw runs at once. */
const FLAW_LANES = 5;

/** The case that must fail for each flaw: the one written to catch it. */
const CATCHES: Record<Flaw, string> = {
  'skip-aud': 'token.aud-mismatch',
  'skip-act': 'token.act-mismatch-lock',
  'skip-binding': 'token.binding-cid',
  'skip-iss': 'token.issuer-mismatch',
  'skip-lifetime': 'token.lifetime-301',
  'skip-nbf': 'token.nbf-beyond-skew',
  'skip-exp': 'token.exp-beyond-skew',
  'skip-signature': 'token.signed-by-other-key',
  'accept-hs256': 'token.alg-hs256-pem',
  'accept-retired-key': 'keys.retired-key-refused',
  'skip-replay': 'replay.jti-reused',
  'forget-replay-on-reboot': 'reboot.replay-kept',
  'ignore-revoke': 'revoke.outstanding-unlock-refused',
  'revoke-leaves-open': 'revoke.locks-open-car',
  'accept-stale-keys': 'keys.seq-replayed',
  'unsigned-acks': 'ack.signature',
  'no-failsafe': 'failsafe.relock',
  'no-disown': 'state.query-disowns',
  'no-dedupe': 'command.redelivery',
};

/** One simulated car of its own per run: a Chevrolet (OnStar) or a Volvo (Volvo On Call), alternately. */
function vehicle(i: number): SeedVehicle {
  const volvo = i % 2 === 1;
  return {
    vin: volvo
      ? composeVin('YV1', 'A22MK', 2015, `F${String(900_100 + i)}`)
      : composeVin('1G1', 'ZE5ST', 2019, `K${String(300_100 + i)}`),
    make: volvo ? 'Volvo' : 'Chevrolet',
    model: volvo ? 'XC90' : 'Malibu',
    year: volvo ? 2015 : 2019,
    provider: volvo ? 'volvo-on-call' : 'onstar',
    ownerId: 'owner-conformance',
    position: { lat: 47.6117, lon: -122.3379 },
  };
}

interface Car {
  vehicle: SeedVehicle;
  fleet: Fleet;
  control: ControlServer;
}

let dir: string;
let pki: DevPkiPaths;
/** Default limits (a car: 20 at once, then 5/s, PROTOCOL.md §2): the CLI run, paced as by default. */
let strict: Broker;
/** Cars may publish as fast as they like: the flaw runs, unpaced. */
let relaxed: Broker;
const strictRefusals: BrokerRefusal[] = [];
const cars: Car[] = [];
const children = new Set<ChildProcess>();
const read = (path: string): string => readFileSync(path, 'utf8');
/** Every run's vehicle: 0 for the CLI, 1 for the correct Volvo, then one per flaw. */
const VEHICLES = Array.from({ length: FLAWS.length + 2 }, (_, i) => vehicle(i));

async function startBroker(relaxedLimits: boolean): Promise<Broker> {
  return createBroker({
    tls: { ca: read(pki.caCert), cert: read(pki.brokerCert), key: read(pki.brokerKey), crl: read(pki.crl) },
    host: '127.0.0.1',
    port: 0,
    logger: pino({ level: 'silent' }),
    ...(relaxedLimits
      ? {
          limits: {
            publishRate: {
              vehicle: { burst: 100_000, perSecond: 100_000 },
              gateway: { burst: 100_000, perSecond: 100_000 },
            },
          },
        }
      : {}),
  });
}

/** One simulated car with its control API (the kit's sim: hook), its own data dir, and maybe one flaw. */
async function startCar(broker: Broker, v: SeedVehicle, flaws: Flaw[]): Promise<Car> {
  const faults = createFleetFaults({ seed: 1 });
  const fleet = await startFleet({
    brokerUrl: `mqtts://127.0.0.1:${broker.port}`,
    vehicles: [v],
    ...readFleetPki(pki.dir),
    dataDir: join(dir, 'sim', v.vin),
    failsafeRelockMs: RELOCK_MS,
    reportIntervalMs: 60_000,
    faults,
    flaws,
  });
  const control = await startControlServer({ fleet, faults, port: 0 });
  const car = { vehicle: v, fleet, control };
  cars.push(car);
  return car;
}

/** The kit's programmatic run, as `npm run conformance` does it, unpaced (the relaxed broker allows it). */
function runKit(car: Car): Promise<ConformanceReport> {
  return runConformance({
    brokerUrl: `mqtts://127.0.0.1:${relaxed.port}`,
    vin: car.vehicle.vin,
    provider: car.vehicle.provider,
    tls: { ca: read(pki.caCert), cert: read(pki.gatewayCert), key: read(pki.gatewayKey) },
    // One MQTT session per run: the runs go side by side under the one gateway identity.
    clientId: `gateway-cf${car.vehicle.vin.slice(-6)}`,
    signingKey: createPrivateKey(read(pki.tokenSigningKey)),
    vehicleCert: read(pki.vehicleCert(car.vehicle.vin)),
    enrolledKeys: TrustedKeysFileSchema.parse(JSON.parse(read(pki.trustedKeys))).keys,
    hook: simulatorHook(`http://127.0.0.1:${car.control.port}`, car.vehicle.vin),
    relockMs: RELOCK_MS,
    pacePerSecond: 0,
  });
}

interface Finished {
  code: number | null;
  out: string;
  err: string;
}

/** Runs the kit's program the way `npm run conformance` does (tsx), without npm in between. */
function conformanceCli(args: string[]): Promise<Finished> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'protocols/conformance/main.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 150_000,
    killSignal: 'SIGKILL',
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return new Promise((resolve) =>
    child.once('close', (code) => {
      children.delete(child);
      resolve({ code, out, err });
    }),
  );
}

beforeAll(async () => {
  // Twenty simulated cars fsync their state files on the test's one thread (simulator/state-file.ts): on a
  // disk each fsync stalls every car and kit in the process, so the cars keep their files in memory (tmpfs).
  dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'curbside-conformance-kit-'));
  pki = await ensureDevPki({ dir: join(dir, 'pki'), vins: VEHICLES.map((v) => v.vin) });
  [strict, relaxed] = await Promise.all([startBroker(false), startBroker(true)]);
  strict.onRefusal((r) => strictRefusals.push(r));
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.allSettled(
    cars.map(async (c) => {
      await c.control.close();
      await c.fleet.stop();
    }),
  );
  await Promise.allSettled([strict?.close(), relaxed?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the conformance kit over real brokers', () => {
  // The paced CLI run waits most of its time; the flaw runs use the CPU meanwhile.
  it.concurrent('npm run conformance against the correct simulator, paced for the default broker: every case passes, exit 0, a JUnit report', {
    timeout: 150_000,
  }, async () => {
    const car = await startCar(strict, VEHICLES[0] as SeedVehicle, []);
    const junit = join(dir, 'report.xml');
    const started = Date.now();
    const r = await conformanceCli([
      '--broker',
      `mqtts://127.0.0.1:${strict.port}`,
      '--vin',
      car.vehicle.vin,
      '--provider',
      car.vehicle.provider,
      '--pki',
      pki.dir,
      '--relock-ms',
      String(RELOCK_MS),
      '--hook',
      `sim:http://127.0.0.1:${car.control.port}`,
      '--junit',
      junit,
    ]);
    const seconds = (Date.now() - started) / 1000;
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n').filter((l) => /^(PASS|FAIL|SKIP) /.test(l));
    expect(lines).toHaveLength(CASES.length);
    expect(lines.every((l) => l.startsWith('PASS'))).toBe(true);
    expect(r.out).toMatch(
      new RegExp(`${CASES.length} cases: ${CASES.length} passed, 0 failed, 0 skipped in`),
    );
    expect(r.out).toMatch(
      /PASS {2}token\.aud-mismatch +refused TOKEN_AUDIENCE_MISMATCH +TOKEN\.md §5 step 12/,
    );
    // The pacing kept the car inside its publish budget: the broker never dropped it.
    expect(strictRefusals).toEqual([]);
    const report = parseJunit(read(junit));
    expect(report.tests).toBe(CASES.length);
    expect(report.failures).toBe(0);
    expect(report.skipped).toBe(0);
    expect(report.testcases.map((t) => t.name).sort()).toEqual(CASES.map((c) => c.id).sort());
    console.log(
      `conformance run through the CLI, paced (default): ${seconds.toFixed(1)} s for ${CASES.length} cases`,
    );
  });

  it.concurrent('every flaw makes the kit fail, naming the case written to catch it; the correct car (other dialect) passes', {
    timeout: 150_000,
  }, async () => {
    const runs = [{ flaw: null as Flaw | null, v: VEHICLES[1] as SeedVehicle }].concat(
      FLAWS.map((flaw, i) => ({ flaw, v: VEHICLES[i + 2] as SeedVehicle })),
    );
    const started = Date.now();
    // A few at a time: the batch still fits within the paced CLI run beside it, without a load spike that
    // would slow down the other test files sharing the machine.
    const results: Array<{ flaw: Flaw | null; provider: string; report: ConformanceReport }> = [];
    const pending = [...runs];
    const lane = async (): Promise<void> => {
      for (let next = pending.shift(); next; next = pending.shift()) {
        const car = await startCar(relaxed, next.v, next.flaw ? [next.flaw] : []);
        results.push({ flaw: next.flaw, provider: next.v.provider, report: await runKit(car) });
      }
    };
    await Promise.all(Array.from({ length: FLAW_LANES }, lane));
    results.sort(
      (a, b) => runs.findIndex((r) => r.flaw === a.flaw) - runs.findIndex((r) => r.flaw === b.flaw),
    );
    const table = results.map(({ flaw, provider, report }) => ({
      flaw: flaw ?? '(none)',
      provider,
      passed: report.passed,
      failed: report.results.filter((r) => r.verdict === 'fail').map((r) => r.id),
      skipped: report.results.filter((r) => r.verdict === 'skip').length,
      seconds: report.durationMs / 1000,
    }));
    console.log(
      `flaw runs, ${FLAW_LANES} at a time, unpaced: ${((Date.now() - started) / 1000).toFixed(1)} s\n${table
        .map(
          (t) =>
            `  ${t.flaw.padEnd(24)} ${t.provider.padEnd(14)} ${t.seconds.toFixed(1)} s  ${t.passed ? 'all passed' : `failed: ${t.failed.join(', ')}`}`,
        )
        .join('\n')}`,
    );
    const [correct, ...flawed] = table;
    expect(correct).toMatchObject({ passed: true, failed: [], skipped: 0 });
    for (const t of flawed) {
      expect(t.passed, t.flaw).toBe(false);
      expect(t.failed, t.flaw).toContain(CATCHES[t.flaw as Flaw]);
    }
  });
});

describe('the command lines', () => {
  it.concurrent('conformance --help prints the usage and exits 0', { timeout: 60_000 }, async () => {
    const r = await conformanceCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: npm run conformance --/);
  });

  it.concurrent.each([
    [
      ['--broker', 'mqtt://127.0.0.1:1883', '--vin', '1G1ZE5ST5KF100231'],
      /^conformance: --broker must be an mqtts:\/\/ URL/,
    ],
    [
      ['--broker', 'mqtts://127.0.0.1:8883', '--vin', '1G1ZE5ST5KF100231'],
      /^conformance: --provider is required/,
    ],
    [
      [
        '--broker',
        'mqtts://127.0.0.1:8883',
        '--vin',
        '1G1ZE5ST5KF100231',
        '--provider',
        'onstar',
        '--pki',
        '/nonexistent',
      ],
      /^conformance: --signing-key \/nonexistent\/token-signing\.key: ENOENT/,
    ],
  ])('conformance %j refuses in one line with exit 2', { timeout: 60_000 }, async (args, reason) => {
    const r = await conformanceCli(args);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(reason);
    expect(r.err.trimEnd().split('\n')).toHaveLength(1);
  });
});
