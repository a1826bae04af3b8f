// Owns the simulator's command line: the options it accepts, their validation, and the usage text.
import { parseArgs } from 'node:util';
import { brokerUrlsProblem } from '../protocols/broker-urls.ts';
import { VIN_PATTERN } from '../protocols/vin.ts';
import { SimulatorError } from './errors.ts';
import { FLAW_CHECKS, type Flaw, parseFlaws } from './flaws.ts';
import { MAX_WORKERS } from './fleet-workers.ts';

const FLAW_LINES = Object.entries(FLAW_CHECKS)
  .map(([name, check]) => `  ${name.padEnd(25)}  ${check}`)
  .join('\n');

export const USAGE = `Usage: npm run simulator -- --broker mqtts://HOST:PORT [options]

Simulated OnStar / Volvo On Call telematics units, one MQTT session per car.

Options:
  --broker URL[,URL...]      broker URL, mqtts:// only (TLS 1.3, client certificates), or a cluster's nodes   required
  --certs DIR                dev PKI: ca.crt, vehicles/<VIN>.crt|.key, trusted-keys.json  default certs/dev
  --data DIR                 per-car replay stores                                        default data/sim
  --vin VIN                  simulate only this car (repeatable); default: the seed fleet
  --include-incompatible     also simulate cars the catalog does not support
  --report-interval-ms N     periodic state report interval                               default 30000
  --relock-ms N              fail-safe relock after an unlock with no lock                default 120000
  --servername NAME          TLS server name when --broker names an IP address
  --faults FILE              fault scenario (JSON): seed, fault plan, timed steps; see README
  --seed N                   seed of every random fault, overrides the file's             default 1
  --control-port P           live control API on http://127.0.0.1:P (0: a free port)
  --workers N                worker threads the cars are spread over (1-256)              default: cores
                             (at most one per car); 1 runs every car in the main thread
  --flaw NAME                break the cars on purpose: disable one check (repeatable), to show that
                             the conformance kit (npm run conformance) catches it; never in normal runs
  -h, --help                 show this text

Flaws (--flaw), each disabling exactly one check:
${FLAW_LINES}`;

export interface CliOptions {
  brokerUrl: string;
  certsDir: string;
  dataDir: string;
  /** Empty means every vehicle of the seed fleet. */
  vins: string[];
  includeIncompatible: boolean;
  reportIntervalMs?: number;
  failsafeRelockMs?: number;
  servername?: string;
  faultsFile?: string;
  seed?: number;
  controlPort?: number;
  /** Deliberate flaws, only from explicit --flaw options; absent: none. */
  flaws?: Flaw[];
  /** Worker threads (simulator/fleet-workers.ts); absent: the core count. */
  workers?: number;
}

export type CliCommand = { kind: 'help' } | { kind: 'run'; options: CliOptions };

const bad = (reason: string): SimulatorError => new SimulatorError('SIM_ARGS_INVALID', reason);

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9][0-9]{0,8}$/.test(value)) throw bad(`--${name} must be a positive whole number of ms`);
  return Number(value);
}

/** Parses argv (without node and script); throws SIM_ARGS_INVALID with a one-line reason. */
export function parseCli(argv: string[]): CliCommand {
  let values: ReturnType<typeof parseSpec>['values'];
  try {
    ({ values } = parseSpec(argv));
  } catch (err) {
    throw bad((err as Error).message.split('\n')[0] ?? 'invalid arguments');
  }
  if (values.help) return { kind: 'help' };
  if (values.broker === undefined) throw bad('--broker is required');
  // One mqtts:// URL, or a cluster's nodes comma-separated.
  const problem = brokerUrlsProblem(values.broker);
  if (problem !== null)
    throw bad(`--broker must be an mqtts:// URL or a comma-separated list of them: ${problem}`);
  const vins = values.vin ?? [];
  const malformed = vins.find((v) => !VIN_PATTERN.test(v));
  if (malformed !== undefined) throw bad(`--vin ${malformed} is not a 17-character VIN`);
  const options: CliOptions = {
    brokerUrl: values.broker,
    certsDir: values.certs,
    dataDir: values.data,
    vins,
    includeIncompatible: values['include-incompatible'],
  };
  if (values.flaw !== undefined) {
    try {
      options.flaws = [...parseFlaws(values.flaw)];
    } catch (err) {
      throw bad(`--flaw: ${(err as Error).message}`);
    }
  }
  const reportIntervalMs = positiveInt('report-interval-ms', values['report-interval-ms']);
  const failsafeRelockMs = positiveInt('relock-ms', values['relock-ms']);
  if (reportIntervalMs !== undefined) options.reportIntervalMs = reportIntervalMs;
  if (failsafeRelockMs !== undefined) options.failsafeRelockMs = failsafeRelockMs;
  if (values.servername !== undefined) options.servername = values.servername;
  if (values.faults !== undefined) options.faultsFile = values.faults;
  if (values.seed !== undefined) {
    if (!/^[0-9]{1,10}$/.test(values.seed) || Number(values.seed) > 2 ** 32 - 1) {
      throw bad('--seed must be a whole number from 0 to 4294967295');
    }
    options.seed = Number(values.seed);
  }
  if (values['control-port'] !== undefined) {
    const port = values['control-port'];
    if (!/^[0-9]{1,5}$/.test(port) || Number(port) > 65_535) throw bad('--control-port must be 0-65535');
    options.controlPort = Number(port);
  }
  if (values.workers !== undefined) {
    if (!/^[1-9][0-9]{0,2}$/.test(values.workers) || Number(values.workers) > MAX_WORKERS) {
      throw bad(`--workers must be a whole number from 1 to ${MAX_WORKERS}`);
    }
    options.workers = Number(values.workers);
  }
  return { kind: 'run', options };
}

function parseSpec(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      broker: { type: 'string' },
      certs: { type: 'string', default: 'certs/dev' },
      data: { type: 'string', default: 'data/sim' },
      vin: { type: 'string', multiple: true },
      'include-incompatible': { type: 'boolean', default: false },
      'report-interval-ms': { type: 'string' },
      'relock-ms': { type: 'string' },
      servername: { type: 'string' },
      faults: { type: 'string' },
      seed: { type: 'string' },
      'control-port': { type: 'string' },
      flaw: { type: 'string', multiple: true },
      workers: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
}
