// Owns the gateway program (no simulator): the composition root, the only reader of process.env here.
import '../runtime.ts';
import { loadSeeds } from '../seeds/index.ts';
import { ReplicaError } from './errors.ts';
import { bootGateway, StartupError } from './platform/bootstrap.ts';
import { ConfigError, loadConfig } from './platform/config.ts';
import { createLogger, flushLogger } from './platform/logger.ts';
import {
  EXIT_FAILED,
  EXIT_OK,
  EXIT_USAGE,
  parseProgramArgs,
  programHelp,
  watchStopSignals,
} from './platform/program.ts';

const USAGE = `Usage: npm run gateway [-- --help]

The gateway alone: HTTP API, embedded or external MQTT broker, /healthz, /readyz and /metrics.
SIGTERM or SIGINT drains in-flight commands (SHUTDOWN_DRAIN_MS) and stops; a second one exits at once.`;

const args = parseProgramArgs(process.argv.slice(2));
if (args.kind === 'help') {
  process.stdout.write(programHelp(USAGE));
  process.exit(EXIT_OK);
}
if (args.kind === 'usage') {
  console.error(`gateway: ${args.reason}`);
  process.exit(EXIT_USAGE);
}

// Before the HTTP port opens: a signal from then on drains (see watchStopSignals).
const stopSignals = watchStopSignals();

try {
  const config = loadConfig({ env: process.env });
  const seeds = loadSeeds();
  const logger = createLogger({
    level: config.LOG_LEVEL,
    pretty: config.LOG_PRETTY === 'on',
    destination: 1,
  });
  const booted = await bootGateway({
    config,
    catalog: seeds.catalog,
    seededVins: seeds.vehicles.map((v) => v.vin),
    logger,
    // stdout carries JSON lines only, so what a start has to say goes through the logger too.
    print: (line) => logger.info({ event: 'bootstrap' }, line),
  });
  logger.info(
    { event: 'started', http: booted.baseUrl, metrics: booted.metricsUrl, broker: booted.gateway.brokerUrl },
    'gateway started',
  );
  const signal = await stopSignals.first;
  logger.info({ event: 'shutdown', signal }, 'stopping');
  await booted.stop();
  await flushLogger(logger);
  process.exit(EXIT_OK);
} catch (err) {
  const known = err instanceof ConfigError || err instanceof StartupError || err instanceof ReplicaError;
  console.error(known ? (err as Error).message : `start failed: ${(err as Error).message}`);
  process.exit(EXIT_FAILED);
}
