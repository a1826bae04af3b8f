// Owns `npm run demo`: plays the demo delivery again on a fresh store of its own, whatever the state of the one
// `npm start` serves, then stops. It reads no setting but LOG_LEVEL and LOG_PRETTY: its store, PKI, API key
// and ports are its own, so that it neither touches DATA_DIR or CERTS_DIR nor collides with a running start.
import '../runtime.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StartupError } from '../gateway/platform/bootstrap.ts';
import { ConfigError, loadConfig } from '../gateway/platform/config.ts';
import { createLogger, flushLogger } from '../gateway/platform/logger.ts';
import {
  EXIT_FAILED,
  EXIT_OK,
  EXIT_USAGE,
  parseProgramArgs,
  watchStopSignals,
} from '../gateway/platform/program.ts';
import { loadSeeds } from '../seeds/index.ts';
import { playDemo, startDemoSystem } from './system.ts';

const USAGE = `Usage: npm run demo [-- --help]

Plays the demo delivery that npm start plays on its first start, on a fresh store of its own: a new
development PKI, store and API key in a temporary folder, an embedded broker and the HTTP API on free
loopback ports, the simulated fleet. It prints the delivery and its timeline, stops, and removes the folder.
The store npm start serves (DATA_DIR) is never touched, and npm start may keep running meanwhile.
Exits 0 when the delivery completed, 1 otherwise. Settings read: LOG_LEVEL (default warn), LOG_PRETTY.
`;

const args = parseProgramArgs(process.argv.slice(2));
if (args.kind === 'help') {
  process.stdout.write(USAGE);
  process.exit(EXIT_OK);
}
if (args.kind === 'usage') {
  console.error(`npm run demo: ${args.reason}`);
  process.exit(EXIT_USAGE);
}

const stop = watchStopSignals();
const dir = mkdtempSync(join(tmpdir(), 'curbside-demo-'));
let code = EXIT_FAILED;
try {
  const config = loadConfig({
    env: {
      LOG_LEVEL: process.env.LOG_LEVEL,
      LOG_PRETTY: process.env.LOG_PRETTY,
      DATA_DIR: join(dir, 'data'),
      CERTS_DIR: join(dir, 'pki'),
      HOST: '127.0.0.1',
      HTTP_PORT: '0',
      MQTT_HOST: '127.0.0.1',
      MQTT_PORT: '0',
    },
    defaults: { LOG_LEVEL: 'warn' },
  });
  const logger = createLogger({
    level: config.LOG_LEVEL,
    pretty: config.LOG_PRETTY === 'on',
    destination: 2,
  });
  const print = (line: string): void => console.log(line);
  print(`A fresh store in ${dir} (removed at the end); npm start's store is not touched.`);
  let completed = false;
  const system = await startDemoSystem({
    config,
    seeds: loadSeeds(),
    logger,
    print,
    stop,
    showApiKey: false,
    demo: async (ctx) => {
      await playDemo(ctx, print);
      completed = true;
    },
  });
  const outcome = await Promise.race([system.startUp, stop.first.then(() => 'stopped' as const)]);
  if (outcome === 'stopped') print(`\nStopping (${stop.received()}).`);
  await system.shutdown();
  await flushLogger(logger);
  // As npm start and npm run gateway: a stop signal drains and exits 0.
  code = completed || outcome === 'stopped' ? EXIT_OK : EXIT_FAILED;
} catch (err) {
  const known = err instanceof ConfigError || err instanceof StartupError;
  console.error(known ? (err as Error).message : `demo failed: ${(err as Error).message}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
