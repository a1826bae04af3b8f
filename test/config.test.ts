// Configuration: one schema over the environment and CONFIG_FILE; every bad value named with what it allows.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CONFIG_HELP,
  CONFIG_NAMES,
  ConfigError,
  ConfigSchema,
  configMarkdownTable,
  helpParts,
  loadConfig,
  parseConfig,
} from '../gateway/platform/config.ts';

/** The problems of a configuration that must not load. */
function problems(env: Record<string, string>, files: Record<string, string> = {}): string[] {
  try {
    loadConfig({
      env,
      readFile: (path) => {
        const body = files[path];
        if (body === undefined) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
        return body;
      },
    });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    return (err as ConfigError).problems;
  }
  throw new Error('the configuration loaded');
}

describe('loading', () => {
  it('has a default for everything but the optional settings', () => {
    const c = parseConfig({});
    expect(c).toMatchObject({
      NODE_ENV: 'development',
      HTTP_PORT: 8080,
      LOG_LEVEL: 'info',
      LOG_PRETTY: 'off',
    });
    expect(c.METRICS_PORT).toBeUndefined();
    expect(c.MQTT_URL).toBeUndefined();
    expect(c.SHUTDOWN_DRAIN_MS).toBe(10_000);
  });

  it('takes the environment over CONFIG_FILE over the program default, and an empty variable as unset', () => {
    const file = JSON.stringify({ HTTP_PORT: 9000, MQTT_PORT: '9001', LOG_LEVEL: 'debug' });
    const c = loadConfig({
      env: { CONFIG_FILE: 'gw.json', HTTP_PORT: '9100', MQTT_PORT: '', OTHER: 'ignored' },
      readFile: (path) => (path === 'gw.json' ? file : ''),
      defaults: { LOG_LEVEL: 'warn', DATA_DIR: '/var/lib/curbside' },
    });
    expect(c.HTTP_PORT).toBe(9100);
    expect(c.MQTT_PORT).toBe(9001);
    expect(c.LOG_LEVEL).toBe('debug');
    expect(c.DATA_DIR).toBe('/var/lib/curbside');
    expect(c.CONFIG_FILE).toBe('gw.json');
  });

  it('reports every bad value at once', () => {
    expect(problems({ HTTP_PORT: 'x', LOG_LEVEL: 'loud', DEMO: 'yes' })).toHaveLength(3);
  });
});

describe('a bad value stops the start with its name and what is allowed', () => {
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    [
      'not a number',
      { HTTP_PORT: 'eighty' },
      /^HTTP_PORT="eighty" \(from the environment\): must be a whole number from 0 to 65535\. HTTP_PORT: HTTP port/,
    ],
    [
      'a fraction',
      { COMMAND_TIMEOUT_MS: '1.5' },
      /^COMMAND_TIMEOUT_MS="1.5" .*must be a whole number from 1 to 120000/,
    ],
    [
      'hex that Number() would take',
      { MQTT_PORT: '0x10' },
      /^MQTT_PORT="0x10" .*must be a whole number from 0 to 65535/,
    ],
    [
      'a port out of range',
      { MQTT_PORT: '70000' },
      /^MQTT_PORT="70000" .*must be a whole number from 0 to 65535/,
    ],
    [
      'a limit above its cap',
      { TOKEN_TTL_S: '301' },
      /^TOKEN_TTL_S="301" .*from 1 to 300\. TOKEN_TTL_S: command token lifetime/,
    ],
    ['zero where positive is needed', { MAX_UNLOCKS: '0' }, /^MAX_UNLOCKS="0" .*from 1 to 10/],
    [
      'a word outside an enum',
      { LOG_LEVEL: 'loud' },
      /^LOG_LEVEL="loud" .*must be one of fatal \| error \| warn \| info \| debug \| trace \| silent/,
    ],
    ['on/off spelled otherwise', { LOG_PRETTY: 'true' }, /^LOG_PRETTY="true" .*must be one of on \| off/],
    [
      'an unknown mode',
      { NODE_ENV: 'staging' },
      /^NODE_ENV="staging" .*must be one of development \| production \| test/,
    ],
    [
      'a broker URL without TLS',
      { MQTT_URL: 'mqtt://broker:1883' },
      /^MQTT_URL="mqtt:\/\/broker:1883" .*must be an mqtts:\/\/host:port URL/,
    ],
    [
      'a broker that is not a URL',
      { MQTT_URL: 'broker:8883' },
      /^MQTT_URL=.*must be an mqtts:\/\/host:port URL/,
    ],
    [
      'a list of brokers with one without TLS',
      { MQTT_URL: 'mqtts://127.0.0.1:8883,mqtt://127.0.0.1:1883' },
      /^MQTT_URL=".*" .*must be an mqtts:\/\/host:port URL or a comma-separated list of a cluster's nodes; "mqtt:\/\/127.0.0.1:1883" is not an mqtts:\/\/host:port URL/,
    ],
    [
      'a list of brokers with an empty entry',
      { MQTT_URL: 'mqtts://127.0.0.1:8883,' },
      /^MQTT_URL=".*" .*comma-separated list of a cluster's nodes; "" is not an mqtts:\/\/host:port URL/,
    ],
    [
      'a broker URL carrying a password',
      { MQTT_URL: 'mqtts://gw:secret@127.0.0.1:8883' },
      /^MQTT_URL=.*must not carry credentials/,
    ],
    [
      'a replica name with spaces',
      { GATEWAY_REPLICA: 'replica one' },
      /^GATEWAY_REPLICA="replica one" .*must be 1 to 32 of A-Z a-z 0-9 _/,
    ],
    [
      'a drain bound too long',
      { SHUTDOWN_DRAIN_MS: '600000' },
      /^SHUTDOWN_DRAIN_MS="600000" .*from 0 to 120000/,
    ],
    [
      'pretty logs in production',
      { NODE_ENV: 'production', LOG_PRETTY: 'on' },
      /^LOG_PRETTY="on" .*must be off in production/,
    ],
    [
      'metrics on the HTTP port',
      { HTTP_PORT: '8080', METRICS_PORT: '8080' },
      /^METRICS_PORT="8080" .*must differ from HTTP_PORT/,
    ],
    [
      'a metrics address without a port',
      { METRICS_HOST: '0.0.0.0' },
      /^METRICS_HOST="0.0.0.0" \(from the environment\): needs METRICS_PORT as well/,
    ],
  ];
  for (const [kind, env, message] of cases) {
    it(kind, () => {
      const found = problems(env);
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(message);
    });
  }
});

describe('a rule across settings is reported like any bad value: name, value, source, what is allowed', () => {
  // [what, environment, the setting reported, what the message must also name]
  const rules: Array<[string, Record<string, string>, string, RegExp]> = [
    [
      'METRICS_HOST without METRICS_PORT',
      { METRICS_HOST: '0.0.0.0' },
      'METRICS_HOST',
      /needs METRICS_PORT as well \(a whole number from 0 to 65535\), or leave METRICS_HOST unset/,
    ],
    [
      'DEFAULT_WINDOW_H above MAX_WINDOW_H',
      { MAX_WINDOW_H: '8', DEFAULT_WINDOW_H: '10' },
      'DEFAULT_WINDOW_H',
      /must be a whole number from 1 to MAX_WINDOW_H \(8\)/,
    ],
    [
      'LOG_PRETTY=on with NODE_ENV=production',
      { NODE_ENV: 'production', LOG_PRETTY: 'on' },
      'LOG_PRETTY',
      /must be off in production \(NODE_ENV=production\)/,
    ],
    [
      'METRICS_PORT equal to HTTP_PORT',
      { HTTP_PORT: '9000', METRICS_PORT: '9000' },
      'METRICS_PORT',
      /must differ from HTTP_PORT \(9000\)/,
    ],
  ];
  for (const [kind, env, name, names] of rules) {
    it(kind, () => {
      const found = problems(env);
      expect(found).toHaveLength(1);
      const line = found[0] as string;
      const value = JSON.stringify(env[name]);
      expect(line.startsWith(`${name}=${value} (from the environment): `), line).toBe(true);
      expect(line.endsWith(`. ${name}: ${CONFIG_HELP[name as keyof typeof CONFIG_HELP]}`), line).toBe(true);
      expect(line).toMatch(names);
    });
  }

  it('names the file a setting of the rule came from', () => {
    expect(problems({ CONFIG_FILE: 'gw.json' }, { 'gw.json': '{"METRICS_HOST": "0.0.0.0"}' })[0]).toMatch(
      /^METRICS_HOST="0.0.0.0" \(from gw.json\): needs METRICS_PORT as well/,
    );
  });
});

describe('CONFIG_FILE', () => {
  const file = (body: string) => problems({ CONFIG_FILE: 'gw.json' }, { 'gw.json': body });

  it('that cannot be read', () => {
    expect(problems({ CONFIG_FILE: 'missing.json' })).toEqual([
      'CONFIG_FILE="missing.json": cannot be read (ENOENT)',
    ]);
  });
  it('that is not JSON', () => {
    expect(file('HTTP_PORT=1')[0]).toMatch(/^CONFIG_FILE="gw.json": is not JSON/);
  });
  it('that is not an object', () => {
    expect(file('[1]')[0]).toMatch(/^CONFIG_FILE="gw.json": must be a JSON object of settings/);
  });
  it('with a name that is not a setting', () => {
    expect(file('{"HTTP_PROT": 1, "CONFIG_FILE": "x"}')).toEqual([
      expect.stringMatching(/^CONFIG_FILE="gw.json": HTTP_PROT is not a setting/),
      expect.stringMatching(/^CONFIG_FILE="gw.json": CONFIG_FILE is not a setting/),
    ]);
  });
  it('with a value that is neither string nor number', () => {
    expect(file('{"DEMO": false}')).toEqual(['DEMO=false (from gw.json): must be a string or a number']);
  });
  it('with a bad value, naming the file as its source', () => {
    expect(file('{"HTTP_PORT": 123456}')[0]).toMatch(
      /^HTTP_PORT=123456 \(from gw.json\): must be a whole number from 0 to 65535/,
    );
  });
});

describe('help and README', () => {
  const schemaDefault = (name: string): string => {
    const def = (
      ConfigSchema.shape[name as keyof typeof ConfigSchema.shape] as unknown as {
        _zod: { def: { type: string; defaultValue?: unknown } };
      }
    )._zod.def;
    return def.type === 'default' ? String(def.defaultValue) : 'unset';
  };

  it('has one help line per setting, whose default is the schema default', () => {
    expect(Object.keys(CONFIG_HELP).sort()).toEqual([...CONFIG_NAMES].sort());
    for (const name of CONFIG_NAMES) {
      expect(CONFIG_HELP[name], name).toMatch(/ \(default [^()]+\)$/);
      expect(helpParts(name).default, name).toBe(schemaDefault(name));
    }
  });

  it("README's table of variables is the one generated from CONFIG_HELP", () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const table = configMarkdownTable();
    // On failure, paste the table printed here into README's "Operating it" section.
    expect(readme.includes(table), `README must contain:\n${table}`).toBe(true);
  });
});
