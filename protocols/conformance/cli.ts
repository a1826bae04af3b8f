// Owns the conformance kit's command line: the options, their checks (one-line refusals) and the usage text.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type ProviderId, ProviderIdSchema } from '../catalog.ts';
import { TOKEN_ISSUER } from '../token.ts';
import { vinProblem } from '../vin.ts';
import { CASES } from './cases/index.ts';
import { ConformanceError } from './errors.ts';
import { type HookSpec, parseHookSpec } from './hook.ts';
import { DEFAULT_PACE } from './pacer.ts';
import {
  DEFAULT_CLIENT_ID,
  DEFAULT_REBOOT_TIMEOUT_MS,
  DEFAULT_RELOCK_MS,
  DEFAULT_TIMEOUT_MS,
} from './run.ts';

export const DEFAULT_PKI_DIR = 'certs/dev';
export const DEFAULT_JUNIT = 'conformance-report.xml';

export const USAGE = `Usage: npm run conformance -- --broker mqtts://HOST:PORT --vin VIN --provider ID [options]

Runs the protocol's conformance cases against one vehicle endpoint (a telematics unit, a bench harness
or the simulator), acting as the gateway towards it over the broker. Prints one line per case, writes a
JUnit XML report, and exits 0 only when every case passes (1 otherwise, 2 for bad arguments).

The endpoint:
  --broker URL            broker the endpoint is connected to, mqtts:// only          required
  --vin VIN               the endpoint's VIN                                         required
  --provider ID           its dialect: onstar | volvo-on-call                        required
  --relock-ms N           its fail-safe relock time (PROTOCOL.md §5)                 default ${DEFAULT_RELOCK_MS}
  --issuer ISS            the token issuer it was enrolled with                      default ${TOKEN_ISSUER}

The kit's identity and keys (files from: npm run certs -- dev --dir DIR):
  --pki DIR               a PKI as npm run certs makes it: the defaults below        default ${DEFAULT_PKI_DIR}
  --ca FILE               the CA certificate                                         default DIR/ca.crt
  --cert FILE             the kit's client certificate: a gateway identity           default DIR/gateway.crt
  --key FILE              its private key                                            default DIR/gateway.key
  --signing-key FILE      Ed25519 key the kit signs tokens with; the endpoint
                          must trust it (its trusted-keys.json)                      default DIR/token-signing.key
  --trusted-keys FILE     the keys the endpoint trusts now; kept in every key
                          announcement the kit sends                                 default DIR/trusted-keys.json
  --vehicle-cert FILE     the endpoint's certificate: every ack must verify under it default DIR/vehicles/VIN.crt
  --client-id ID          MQTT client id, gateway-<name>                             default ${DEFAULT_CLIENT_ID}
  --servername NAME       TLS server name when --broker names an IP address

The run:
  --hook SPEC             how the kit gets states it cannot cause over the protocol
                          (doors closed, a power cycle, a lost clock):
                            interactive      print what to do, wait for Enter (default)
                            sim:URL          the simulator's control API (--control-port)
                            command:SCRIPT   run SCRIPT <baseline|reboot|clock-unknown|clock-known> VIN:
                                             exit 0 done, 3 cannot (skipped), other failed
                            none             ask for nothing; cases that need it are skipped
  --junit FILE            where the JUnit XML report goes                            default ${DEFAULT_JUNIT}
  --only PREFIX           run only cases whose id starts with PREFIX (repeatable);
                          the two opening cases always run
  --pace N                endpoint messages per second the kit may cause: a broker
                          drops a car above 5/s (PROTOCOL.md §2); 0: no pacing       default ${DEFAULT_PACE.perSecond}
  --timeout-ms N          how long an ack or an answer may take                      default ${DEFAULT_TIMEOUT_MS}
  --reboot-timeout-ms N   how long a power-cycled endpoint may take to answer        default ${DEFAULT_REBOOT_TIMEOUT_MS}
  --list                  print every case (id, spec section, needs, expected), exit
  -h, --help              show this text`;

export interface CliOptions {
  brokerUrl: string;
  vin: string;
  provider: ProviderId;
  relockMs: number;
  issuer: string;
  files: {
    ca: string;
    cert: string;
    key: string;
    signingKey: string;
    /** Null: the default path, which may be missing (then the kit's key alone is kept). */
    trustedKeys: { path: string; explicit: boolean };
    vehicleCert: string;
  };
  clientId: string;
  servername?: string;
  hook: HookSpec;
  junit: string;
  only: string[];
  pace: number;
  timeoutMs: number;
  rebootTimeoutMs: number;
}

export type CliCommand = { kind: 'help' } | { kind: 'list' } | { kind: 'run'; options: CliOptions };

const bad = (reason: string): ConformanceError => new ConformanceError('CONFORMANCE_ARGS_INVALID', reason);

function whole(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^[0-9]{1,10}$/.test(value) || Number(value) < min || Number(value) > max) {
    throw bad(`--${name} must be a whole number from ${min} to ${max}`);
  }
  return Number(value);
}

const spec = {
  broker: { type: 'string' },
  vin: { type: 'string' },
  provider: { type: 'string' },
  'relock-ms': { type: 'string' },
  issuer: { type: 'string' },
  pki: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'signing-key': { type: 'string' },
  'trusted-keys': { type: 'string' },
  'vehicle-cert': { type: 'string' },
  'client-id': { type: 'string' },
  servername: { type: 'string' },
  hook: { type: 'string' },
  junit: { type: 'string' },
  only: { type: 'string', multiple: true },
  pace: { type: 'string' },
  'timeout-ms': { type: 'string' },
  'reboot-timeout-ms': { type: 'string' },
  list: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** Parses argv (without node and script); throws CONFORMANCE_ARGS_INVALID with a one-line reason. */
export function parseCli(argv: string[]): CliCommand {
  let values: ReturnType<
    typeof parseArgs<{ options: typeof spec; strict: true; allowPositionals: false }>
  >['values'];
  try {
    ({ values } = parseArgs({ args: argv, options: spec, strict: true, allowPositionals: false }));
  } catch (err) {
    throw bad((err as Error).message.split('\n')[0] ?? 'invalid arguments');
  }
  if (values.help) return { kind: 'help' };
  if (values.list) return { kind: 'list' };
  if (values.broker === undefined) throw bad('--broker is required');
  let url: URL;
  try {
    url = new URL(values.broker);
  } catch {
    throw bad(`--broker ${values.broker} is not a URL`);
  }
  if (url.protocol !== 'mqtts:') throw bad('--broker must be an mqtts:// URL: the broker only speaks TLS');
  if (values.vin === undefined) throw bad('--vin is required');
  const problem = vinProblem(values.vin);
  if (problem !== null) throw bad(`--vin ${values.vin}: ${problem}`);
  if (values.provider === undefined)
    throw bad(`--provider is required: ${ProviderIdSchema.options.join(' | ')}`);
  const provider = ProviderIdSchema.safeParse(values.provider);
  if (!provider.success) throw bad(`--provider must be one of ${ProviderIdSchema.options.join(' | ')}`);
  const hook = parseHookSpec(values.hook ?? 'interactive');
  if (hook === null)
    throw bad(`--hook ${values.hook}: interactive | none | sim:http://HOST:PORT | command:SCRIPT`);
  const clientId = values['client-id'] ?? DEFAULT_CLIENT_ID;
  if (!/^[A-Za-z0-9_]{1,32}(-[A-Za-z0-9_]{1,32})?$/.test(clientId)) {
    throw bad('--client-id must be <name> or <name>-<replica> (PROTOCOL.md §1)');
  }
  const unmatched = (values.only ?? []).find((prefix) => !CASES.some((c) => c.id.startsWith(prefix)));
  if (unmatched !== undefined) throw bad(`--only ${unmatched} matches no case (see --list)`);
  const pki = values.pki ?? DEFAULT_PKI_DIR;
  const options: CliOptions = {
    brokerUrl: values.broker,
    vin: values.vin,
    provider: provider.data,
    relockMs: whole('relock-ms', values['relock-ms'], DEFAULT_RELOCK_MS, 1, 3_600_000),
    issuer: values.issuer ?? TOKEN_ISSUER,
    files: {
      ca: values.ca ?? join(pki, 'ca.crt'),
      cert: values.cert ?? join(pki, 'gateway.crt'),
      key: values.key ?? join(pki, 'gateway.key'),
      signingKey: values['signing-key'] ?? join(pki, 'token-signing.key'),
      trustedKeys: {
        path: values['trusted-keys'] ?? join(pki, 'trusted-keys.json'),
        explicit: values['trusted-keys'] !== undefined,
      },
      vehicleCert: values['vehicle-cert'] ?? join(pki, 'vehicles', `${values.vin}.crt`),
    },
    clientId,
    hook,
    junit: values.junit ?? DEFAULT_JUNIT,
    only: values.only ?? [],
    pace: whole('pace', values.pace, DEFAULT_PACE.perSecond, 0, 1_000),
    timeoutMs: whole('timeout-ms', values['timeout-ms'], DEFAULT_TIMEOUT_MS, 1, 600_000),
    rebootTimeoutMs: whole(
      'reboot-timeout-ms',
      values['reboot-timeout-ms'],
      DEFAULT_REBOOT_TIMEOUT_MS,
      1,
      3_600_000,
    ),
  };
  if (values.servername !== undefined) options.servername = values.servername;
  return { kind: 'run', options };
}
