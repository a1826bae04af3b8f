// Owns the gateway's settings: one zod schema over the environment, read once by the composition root.
import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65_535);
const positiveInt = z.coerce.number().int().positive();
const onOff = z.enum(['on', 'off']);

export const ConfigSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().min(1).default('127.0.0.1'),
  HTTP_PORT: port.default(8080),
  MQTT_HOST: z.string().min(1).default('127.0.0.1'),
  MQTT_PORT: port.default(8883),
  MQTT_URL: z.url({ protocol: /^mqtts$/ }).optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  CERTS_DIR: z.string().min(1).default('./certs/dev'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  GATEWAY_REPLICA: z
    .string()
    .regex(/^[A-Za-z0-9_]{1,32}$/)
    .default('r1'),
  COMMAND_TIMEOUT_MS: positiveInt.max(120_000).default(10_000),
  TOKEN_TTL_S: positiveInt.max(300).default(60),
  MAX_WINDOW_H: positiveInt.max(24).default(24),
  DEFAULT_WINDOW_H: positiveInt.max(24).default(4),
  MAX_UNLOCKS: positiveInt.max(10).default(1),
  MAX_RADIUS_M: positiveInt.max(5_000).default(1_000),
  PARKING_TOLERANCE_M: positiveInt.max(500).default(30),
  RELOCK_AFTER_S: positiveInt.max(3_600).default(90),
  WATCHDOG_INTERVAL_S: positiveInt.max(3_600).default(5),
  SIMULATOR: onOff.default('on'),
  DEMO: onOff.default('on'),
  FAILSAFE_RELOCK_S: positiveInt.max(3_600).default(120),
});
export type Config = z.infer<typeof ConfigSchema>;

/** One line per variable with its default, for --help and README. */
export const CONFIG_HELP: Record<keyof Config, string> = {
  NODE_ENV: 'development | production | test (default development)',
  HOST: 'HTTP listen address (default 127.0.0.1)',
  HTTP_PORT: 'HTTP port, 0 picks a free one (default 8080)',
  MQTT_HOST: 'embedded broker listen address (default 127.0.0.1)',
  MQTT_PORT: 'embedded broker TLS port, 0 picks a free one (default 8883)',
  MQTT_URL: 'external broker, mqtts://host:port; when set the embedded broker is off (default unset)',
  DATA_DIR: 'SQLite store and simulator state (default ./data)',
  CERTS_DIR: 'development PKI, created when missing (default ./certs/dev)',
  LOG_LEVEL: 'fatal | error | warn | info | debug | trace | silent (default info)',
  GATEWAY_REPLICA: 'replica name, part of the MQTT client id gateway-<replica> (default r1)',
  COMMAND_TIMEOUT_MS: 'how long an unlock or lock waits for the car ack (default 10000)',
  TOKEN_TTL_S: 'command token lifetime, at most 300 and never past the window (default 60)',
  MAX_WINDOW_H: 'longest delivery window in hours, at most 24 (default 24)',
  DEFAULT_WINDOW_H: 'window length when a delivery gives only its start, at most MAX_WINDOW_H (default 4)',
  MAX_UNLOCKS: 'unlocks allowed per delivery (default 1)',
  MAX_RADIUS_M: 'largest location radius accepted (default 1000)',
  PARKING_TOLERANCE_M:
    'how far a car may drift after its parking confirmation before it counts as moved (default 30)',
  RELOCK_AFTER_S: 'the gateway watchdog locks a car still open this long after its unlock (default 90)',
  WATCHDOG_INTERVAL_S: 'how often the relock watchdog looks for overdue unlocks (default 5)',
  SIMULATOR: 'on | off: run the seeded simulated fleet in-process with npm start (default on)',
  DEMO: 'on | off: play the scripted demo delivery at start (default on)',
  FAILSAFE_RELOCK_S: 'simulated cars relock by themselves this long after an unlock (default 120)',
};

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Parses the environment; every bad variable is named with what it allows. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const known = Object.fromEntries(
    Object.keys(ConfigSchema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]),
  );
  const parsed = ConfigSchema.refine((c) => c.DEFAULT_WINDOW_H <= c.MAX_WINDOW_H, {
    path: ['DEFAULT_WINDOW_H'],
    message: 'must not exceed MAX_WINDOW_H',
  }).safeParse(known);
  if (parsed.success) return parsed.data;
  throw new ConfigError(
    parsed.error.issues.map((i) => {
      const name = String(i.path[0]);
      return `${name}=${JSON.stringify(env[name])}: ${i.message}; allowed: ${CONFIG_HELP[name as keyof Config] ?? ''}`;
    }),
  );
}
