// Owns the gateway's settings: one zod schema over the environment and an optional JSON file, read once at start.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import { brokerUrlsProblem } from '../../protocols/index.ts';

/** Digits only: Number() would also take '0x10', '1e3' and ' 8 ', which no operator means. */
const wholeNumber = (min: number, max: number) => {
  const allowed = `must be a whole number from ${min} to ${max}`;
  return z.preprocess(
    (v) => (typeof v === 'number' ? String(v) : v),
    z
      .string({ error: allowed })
      .regex(/^(0|[1-9][0-9]*)$/, allowed)
      .transform(Number)
      .pipe(z.number().min(min, allowed).max(max, allowed)),
  );
};
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `must be one of ${values.join(' | ')}` });
const text = z.string({ error: 'must be a non-empty string' }).min(1, 'must be a non-empty string');
const port = wholeNumber(0, 65_535);
const onOff = oneOf(['on', 'off']);

/** An address range: `family` as node:net's BlockList names it. */
export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/**
 * A comma-separated list of CIDRs (`10.1.2.0/24,::1`); a bare address is a range of one. Addresses only in
 * the plain notation node:net's isIP accepts: 0177.0.0.1 or 127.1 are refused, not guessed at.
 */
const cidrList = z
  .string({ error: 'must be a comma-separated list of CIDRs such as 127.0.0.1/32,::1/128' })
  .transform((text, ctx): Cidr[] => {
    const out: Cidr[] = [];
    for (const item of text.split(',').map((s) => s.trim())) {
      const [address = '', prefixText, ...rest] = item.split('/');
      const version = isIP(address);
      const bits = version === 6 ? 128 : 32;
      const prefix =
        prefixText === undefined ? bits : /^(0|[1-9][0-9]{0,2})$/.test(prefixText) ? Number(prefixText) : NaN;
      if (version === 0 || rest.length > 0 || !(prefix >= 0 && prefix <= bits)) {
        ctx.addIssue({
          code: 'custom',
          message: `must be a comma-separated list of CIDRs such as 127.0.0.1/32,::1/128; ${JSON.stringify(item)} is not one`,
        });
        return z.NEVER;
      }
      out.push({ address, prefix, family: version === 6 ? 'ipv6' : 'ipv4' });
    }
    return out;
  });

export const ConfigSchema = z
  .object({
    NODE_ENV: oneOf(['development', 'production', 'test']).default('development'),
    CONFIG_FILE: text.optional(),
    HOST: text.default('127.0.0.1'),
    HTTP_PORT: port.default(8080),
    MQTT_HOST: text.default('127.0.0.1'),
    MQTT_PORT: port.default(8883),
    MQTT_URL: z
      .string({ error: 'must be an mqtts://host:port URL' })
      .superRefine((value, ctx) => {
        const problem = brokerUrlsProblem(value);
        if (problem !== null)
          ctx.addIssue({
            code: 'custom',
            message: `must be an mqtts://host:port URL or a comma-separated list of a cluster's nodes; ${problem}`,
          });
      })
      .optional(),
    DATA_DIR: text.default('./data'),
    DATABASE_URL: z
      .url({ protocol: /^postgres(ql)?$/, error: 'must be a postgres://user@host:port/database URL' })
      .optional(),
    DATABASE_POOL_SIZE: wholeNumber(1, 100).default(8),
    CERTS_DIR: text.default('./certs/dev'),
    LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    LOG_PRETTY: onOff.default('off'),
    METRICS_HOST: text.default('127.0.0.1'),
    METRICS_PORT: port.optional(),
    SHUTDOWN_DRAIN_MS: wholeNumber(0, 120_000).default(10_000),
    GATEWAY_REPLICA: z
      .string()
      .regex(/^[A-Za-z0-9_]{1,32}$/, 'must be 1 to 32 of A-Z a-z 0-9 _')
      .default('r1'),
    JOB_LEASE_S: wholeNumber(1, 3_600).default(15),
    MQTT_PROBE_INTERVAL_S: wholeNumber(1, 3_600).default(30),
    MQTT_PROBE_TIMEOUT_MS: wholeNumber(100, 60_000).default(5_000),
    COMMAND_TIMEOUT_MS: wholeNumber(1, 120_000).default(10_000),
    TOKEN_TTL_S: wholeNumber(1, 300).default(60),
    MAX_WINDOW_H: wholeNumber(1, 24).default(24),
    DEFAULT_WINDOW_H: wholeNumber(1, 24).default(4),
    MAX_UNLOCKS: wholeNumber(1, 10).default(1),
    MAX_RADIUS_M: wholeNumber(1, 5_000).default(1_000),
    PARKING_TOLERANCE_M: wholeNumber(1, 500).default(30),
    RELOCK_AFTER_S: wholeNumber(1, 3_600).default(90),
    WATCHDOG_INTERVAL_S: wholeNumber(1, 3_600).default(5),
    SIMULATOR: onOff.default('on'),
    SIMULATOR_CONTROL_URL: z
      .url({ protocol: /^https?$/, error: 'must be an http://host:port URL' })
      .optional(),
    DEMO: onOff.default('on'),
    FAILSAFE_RELOCK_S: wholeNumber(1, 3_600).default(120),
    AUDIT_ORIGIN: z
      .string()
      .regex(/^[^\s+]{1,256}$/, 'must be 1 to 256 characters without spaces or +')
      .default('curbside-key.dev/audit'),
    AUDIT_CHECKPOINT_S: wholeNumber(1, 86_400).default(300),
    QUERY_TIMEOUT_MS: wholeNumber(1, 60_000).default(3_000),
    RECONCILE_INTERVAL_MS: wholeNumber(0, 3_600_000).default(15_000),
    RATE_LIMIT_PER_KEY_PER_MIN: wholeNumber(1, 100_000).default(600),
    VEHICLE_COMMAND_BURST: wholeNumber(1, 100).default(5),
    VEHICLE_COMMANDS_PER_MIN: wholeNumber(1, 600).default(12),
    HTTP_REQUEST_TIMEOUT_MS: wholeNumber(1, 300_000).default(30_000),
    WEBHOOK_ALLOW_PRIVATE: cidrList.optional(),
  })
  // Rules across settings: each message names the other setting and its value, and says what is allowed.
  .superRefine((c, ctx) => {
    // A round must be over before the next one starts.
    if (c.MQTT_PROBE_TIMEOUT_MS >= c.MQTT_PROBE_INTERVAL_S * 1_000) {
      ctx.addIssue({
        code: 'custom',
        path: ['MQTT_PROBE_TIMEOUT_MS'],
        message: `must be a whole number from 100 to below MQTT_PROBE_INTERVAL_S (${c.MQTT_PROBE_INTERVAL_S} s) in ms`,
      });
    }
    if (c.DEFAULT_WINDOW_H > c.MAX_WINDOW_H) {
      ctx.addIssue({
        code: 'custom',
        path: ['DEFAULT_WINDOW_H'],
        message: `must be a whole number from 1 to MAX_WINDOW_H (${c.MAX_WINDOW_H})`,
      });
    }
    if (c.NODE_ENV === 'production' && c.LOG_PRETTY === 'on') {
      ctx.addIssue({
        code: 'custom',
        path: ['LOG_PRETTY'],
        message:
          'must be off in production (NODE_ENV=production): log collectors read one JSON object per line',
      });
    }
    if (c.METRICS_PORT !== undefined && c.METRICS_PORT !== 0 && c.METRICS_PORT === c.HTTP_PORT) {
      ctx.addIssue({
        code: 'custom',
        path: ['METRICS_PORT'],
        message: `must differ from HTTP_PORT (${c.HTTP_PORT}); leave it unset to serve /metrics on the HTTP port`,
      });
    }
  });
export type Config = z.infer<typeof ConfigSchema>;
export type ConfigName = keyof Config;

/**
 * One line per variable; each ends with "(default X)", X as the schema has it ("unset" when optional).
 * --help prints these and README's table is generated from them (test/config.test.ts checks both).
 */
export const CONFIG_HELP: Record<ConfigName, string> = {
  NODE_ENV:
    'development | production | test; production refuses development keys and http webhook URLs (default development)',
  CONFIG_FILE: 'JSON file of these settings by name; the environment wins over it (default unset)',
  HOST: 'HTTP listen address (default 127.0.0.1)',
  HTTP_PORT: 'HTTP port, 0 picks a free one (default 8080)',
  MQTT_HOST: 'embedded broker listen address (default 127.0.0.1)',
  MQTT_PORT: 'embedded broker TLS port, 0 picks a free one (default 8883)',
  MQTT_URL:
    "external broker, mqtts://host:port, e.g. Mosquitto set up by npm run certs -- mosquitto, or a comma-separated list of a cluster's nodes (npm run certs -- nats), tried in turn on each reconnect; when set the embedded broker is off (default unset)",
  DATA_DIR: 'SQLite store (when DATABASE_URL is unset) and simulator state (default ./data)',
  DATABASE_URL:
    'PostgreSQL store, postgres://user@host:port/database (a search_path may be set with ?options=-c%20search_path%3Dname); unset: SQLite in DATA_DIR (default unset)',
  DATABASE_POOL_SIZE:
    'with DATABASE_URL, connections to PostgreSQL: reads and coordination run beside the transaction in flight, 1..100 (default 8)',
  CERTS_DIR: 'PKI folder; in development it is created when missing (default ./certs/dev)',
  LOG_LEVEL: 'fatal | error | warn | info | debug | trace | silent; npm start uses warn (default info)',
  LOG_PRETTY: 'on | off: human-readable logs through pino-pretty, not in production (default off)',
  METRICS_HOST: 'listen address of the separate metrics server, with METRICS_PORT (default 127.0.0.1)',
  METRICS_PORT: 'serve /metrics on this port only, 0 picks a free one; unset: on HTTP_PORT (default unset)',
  SHUTDOWN_DRAIN_MS: 'on SIGTERM/SIGINT, how long in-flight commands may finish, 0..120000 (default 10000)',
  GATEWAY_REPLICA:
    'replica name, unique per replica: its MQTT client id gateway-<replica>, its certificate if CERTS_DIR/gateways has one (default r1)',
  JOB_LEASE_S:
    'with several replicas (DATABASE_URL), shortest lease on a background job: a dead holder hands it over within this, 1..3600 (default 15)',
  MQTT_PROBE_INTERVAL_S:
    'how often the gateway proves its MQTT subscriptions deliver, by a probe through each that must come back (also after every reconnect), 1..3600 (default 30)',
  MQTT_PROBE_TIMEOUT_MS:
    'how long a probe may take to come back before the session is dropped and made again (SUBSCRIPTION_DEAF), 100..60000 and below MQTT_PROBE_INTERVAL_S (default 5000)',
  COMMAND_TIMEOUT_MS: 'how long an unlock or lock waits for the car ack, 1..120000 (default 10000)',
  TOKEN_TTL_S: 'command token lifetime, 1..300 and never past the window (default 60)',
  MAX_WINDOW_H: 'longest delivery window in hours, 1..24 (default 24)',
  DEFAULT_WINDOW_H: 'window length when a delivery gives only its start, 1..MAX_WINDOW_H (default 4)',
  MAX_UNLOCKS: 'unlocks allowed per delivery, 1..10 (default 1)',
  MAX_RADIUS_M: 'largest location radius accepted in metres, 1..5000 (default 1000)',
  PARKING_TOLERANCE_M:
    'how far a car may drift after its parking confirmation before it counts as moved, 1..500 (default 30)',
  RELOCK_AFTER_S:
    'the gateway watchdog locks a car still open this long after its unlock, 1..3600 (default 90)',
  WATCHDOG_INTERVAL_S: 'how often the relock watchdog looks for overdue unlocks, 1..3600 (default 5)',
  SIMULATOR: 'on | off: run the seeded simulated fleet in-process with npm start (default on)',
  SIMULATOR_CONTROL_URL:
    "the simulator's control API that the console drives, http://host:port; npm start sets it to its own fleet (default unset)",
  DEMO: 'on | off: play the scripted demo delivery at start (default on)',
  FAILSAFE_RELOCK_S: 'simulated cars relock by themselves this long after an unlock, 1..3600 (default 120)',
  AUDIT_ORIGIN:
    'audit log name: first line of its checkpoints, name of its key (default curbside-key.dev/audit)',
  AUDIT_CHECKPOINT_S: 'sign an audit checkpoint this often when the log grew, 1..86400 (default 300)',
  QUERY_TIMEOUT_MS:
    'how long a state query waits for the car, after a lost ack or on reconcile, 1..60000 (default 3000)',
  RECONCILE_INTERVAL_MS:
    'period of the sweep that settles outstanding commands, 0..3600000; 0 turns it off (default 15000)',
  RATE_LIMIT_PER_KEY_PER_MIN: 'HTTP requests per minute per API key, then 429, 1..100000 (default 600)',
  VEHICLE_COMMAND_BURST: 'unlock commands one vehicle may get back to back, 1..100 (default 5)',
  VEHICLE_COMMANDS_PER_MIN: 'sustained unlock commands per minute per vehicle, then 429, 1..600 (default 12)',
  HTTP_REQUEST_TIMEOUT_MS:
    'longest time to receive a whole HTTP request, then 408, 1..300000 (default 30000)',
  WEBHOOK_ALLOW_PRIVATE:
    'CIDRs webhooks may reach though not public (loopback, private…), e.g. 127.0.0.1/32,::1/128; the only way past that rule (default unset)',
};

export const CONFIG_NAMES = Object.keys(ConfigSchema.shape) as ConfigName[];

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  /** One line each, naming the variable, where its value came from and what is allowed. */
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Raw = string | number;
type Source = 'environment' | 'file' | 'program default';

export interface ConfigSources {
  env: Record<string, string | undefined>;
  /** Reads CONFIG_FILE; node:fs unless a test passes one. */
  readFile?: (path: string) => string;
  /** The program's own defaults: they beat the schema's and lose to the file and the environment. */
  defaults?: Partial<Record<ConfigName, string>>;
}

function readConfigFile(path: string, readFile: (path: string) => string): Record<string, Raw> {
  const where = `CONFIG_FILE=${JSON.stringify(path)}`;
  let body: string;
  try {
    body = readFile(path);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError([`${where}: cannot be read (${reason})`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    throw new ConfigError([`${where}: is not JSON (${(err as Error).message})`]);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ConfigError([`${where}: must be a JSON object of settings, e.g. {"HTTP_PORT": 8080}`]);
  }
  const problems: string[] = [];
  const values: Record<string, Raw> = {};
  for (const [name, value] of Object.entries(json)) {
    if (name === 'CONFIG_FILE' || !(CONFIG_NAMES as string[]).includes(name)) {
      problems.push(
        `${where}: ${name} is not a setting; allowed: the names listed by --help but CONFIG_FILE`,
      );
    } else if (typeof value !== 'string' && typeof value !== 'number') {
      problems.push(`${name}=${JSON.stringify(value)} (from ${path}): must be a string or a number`);
    } else {
      values[name] = value;
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return values;
}

/**
 * Reads every setting once: the environment wins over CONFIG_FILE, which wins over the program's defaults,
 * which win over the schema's. An empty variable counts as unset. Every bad value is reported at once.
 */
export function loadConfig(sources: ConfigSources): Config {
  const fromEnv = (name: string): string | undefined => {
    const v = sources.env[name];
    return v === '' ? undefined : v;
  };
  const configFile = fromEnv('CONFIG_FILE');
  const file = configFile
    ? readConfigFile(configFile, sources.readFile ?? ((p) => readFileSync(p, 'utf8')))
    : {};
  const input: Record<string, Raw | undefined> = {};
  const source: Record<string, Source> = {};
  for (const name of CONFIG_NAMES) {
    const layers: Array<[Raw | undefined, Source]> = [
      [fromEnv(name), 'environment'],
      [file[name], 'file'],
      [sources.defaults?.[name], 'program default'],
    ];
    const found = layers.find(([value]) => value !== undefined);
    if (found) {
      input[name] = found[0];
      source[name] = found[1];
    }
  }
  const issues: Array<{ name: string; message: string }> = [];
  // Only here is "set" distinguishable from the schema's default, so this rule cannot live in the schema.
  if (input.METRICS_HOST !== undefined && input.METRICS_PORT === undefined) {
    issues.push({
      name: 'METRICS_HOST',
      message: 'needs METRICS_PORT as well (a whole number from 0 to 65535), or leave METRICS_HOST unset',
    });
  }
  const parsed = ConfigSchema.safeParse(input);
  if (parsed.success && issues.length === 0) return parsed.data;
  for (const issue of parsed.error?.issues ?? [])
    issues.push({ name: String(issue.path[0]), message: issue.message });
  // Every problem reads the same way: the setting, its value and where it came from, why, and its help line.
  throw new ConfigError(
    issues.map(({ name, message }) => {
      const from =
        source[name] === 'file' ? `from ${configFile}` : `from the ${source[name] ?? 'environment'}`;
      const help = CONFIG_HELP[name as ConfigName] ?? '';
      return `${name}=${shown(name, input[name])} (${from}): ${message}. ${name}: ${help}`;
    }),
  );
}

/** A value as an error may show it: a database URL's password never is. */
function shown(name: string, value: Raw | undefined): string {
  if (name !== 'DATABASE_URL' || typeof value !== 'string') return JSON.stringify(value);
  return JSON.stringify(value.replace(/^([^:/]+:\/\/[^:@/]*:)[^@/]*@/, '$1***@'));
}

/** The environment alone (no defaults of a program); CONFIG_FILE is honoured when set. */
export const parseConfig = (env: Record<string, string | undefined>): Config => loadConfig({ env });

const DEFAULT_IN_HELP = /^(.*) \(default (.+)\)$/;

/** Splits a help line into what it does and its default as written. */
export function helpParts(name: ConfigName): { what: string; default: string } {
  const m = DEFAULT_IN_HELP.exec(CONFIG_HELP[name]);
  return { what: m?.[1] ?? CONFIG_HELP[name], default: m?.[2] ?? 'unset' };
}

/** The --help listing: one aligned line per variable. */
export function configHelpText(): string {
  const width = Math.max(...CONFIG_NAMES.map((n) => n.length)) + 2;
  return CONFIG_NAMES.map((name) => `  ${name.padEnd(width)}${CONFIG_HELP[name]}`).join('\n');
}

/** README's table of variables, generated from CONFIG_HELP and padded as the formatter pads it (test/config.test.ts). */
export function configMarkdownTable(): string {
  const rows = CONFIG_NAMES.map((name) => {
    const { what, default: d } = helpParts(name);
    return [
      `\`${name}\``,
      d === 'unset' ? 'unset' : `\`${d}\``,
      what.replaceAll('|', '\\|').replaceAll('<', '&lt;'),
    ];
  });
  const header = ['variable', 'default', 'what it sets'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
