// Owns the gateway program (no simulator): the composition root, the only reader of process.env here.
import { loadSeeds } from '../seeds/index.ts';
import { bootGateway, untilSignal } from './bootstrap.ts';
import { CONFIG_HELP, ConfigError, parseConfig } from './config.ts';
import { createLogger } from './logger.ts';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(
    'Usage: tsx gateway/main.ts\n\nThe gateway alone (HTTP API, embedded or external broker). Environment:',
  );
  for (const [name, help] of Object.entries(CONFIG_HELP)) console.log(`  ${name.padEnd(20)} ${help}`);
  process.exit(0);
}

try {
  const config = parseConfig(process.env);
  const seeds = loadSeeds();
  const logger = createLogger(config.LOG_LEVEL);
  const booted = await bootGateway({
    config,
    catalog: seeds.catalog,
    seededVins: seeds.vehicles.map((v) => v.vin),
    logger,
    print: (line) => console.log(line),
  });
  console.log(`Gateway on ${booted.baseUrl}, broker ${booted.gateway.brokerUrl}.`);
  const signal = await untilSignal();
  logger.info({ event: 'shutdown', signal }, 'stopping');
  await booted.stop();
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : `start failed: ${(err as Error).message}`);
  process.exit(1);
}
