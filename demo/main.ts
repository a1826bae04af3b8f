// Owns `npm start`: gateway, embedded broker and the simulated fleet in one process, plus the scripted demo delivery.
// It is the one program that wires gateway/ and simulator/ together; neither imports the other.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootGateway, untilSignal } from '../gateway/bootstrap.ts';
import { CONFIG_HELP, ConfigError, parseConfig } from '../gateway/config.ts';
import { createLogger } from '../gateway/logger.ts';
import { TrustedKeysFileSchema } from '../protocols/index.ts';
import { loadSeeds, type SeedLocation } from '../seeds/index.ts';
import { type Fleet, startFleet } from '../simulator/index.ts';
import { playDemoDelivery } from './script.ts';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(
    'Usage: npm start [-- --help]\n\nRuns the gateway, the embedded MQTT broker and the simulated fleet, plays a demo\ndelivery, and keeps serving until SIGINT or SIGTERM. Environment:',
  );
  for (const [name, help] of Object.entries(CONFIG_HELP)) console.log(`  ${name.padEnd(20)} ${help}`);
  process.exit(0);
}

const read = (path: string): string => readFileSync(path, 'utf8');

try {
  // The demo prints a human timeline on stdout; logs go to stderr at warn unless LOG_LEVEL says otherwise.
  const config = parseConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  const seeds = loadSeeds();
  const logger = createLogger(config.LOG_LEVEL, process.stderr);
  const print = (line: string): void => console.log(line);
  const booted = await bootGateway({
    config,
    catalog: seeds.catalog,
    seededVins: seeds.vehicles.map((v) => v.vin),
    logger,
    print,
  });
  const { pki } = booted;
  print(
    `Gateway HTTP API on ${booted.baseUrl}, MQTT broker on ${booted.gateway.brokerUrl} (TLS 1.3, mutual TLS).`,
  );
  print(
    `API key: in ${join(config.CERTS_DIR, 'api-key')} (use: Authorization: Bearer $(cat ${join(config.CERTS_DIR, 'api-key')})).`,
  );

  let fleet: Fleet | null = null;
  if (config.SIMULATOR === 'on') {
    fleet = await startFleet({
      brokerUrl: booted.gateway.brokerUrl,
      vehicles: seeds.vehicles,
      pki: {
        ca: read(pki.caCert),
        certFor: (vin) => ({ cert: read(pki.vehicleCert(vin)), key: read(pki.vehicleKey(vin)) }),
      },
      trustedKeys: TrustedKeysFileSchema.parse(JSON.parse(read(pki.trustedKeys))),
      dataDir: join(config.DATA_DIR, 'simulator'),
      failsafeRelockMs: config.FAILSAFE_RELOCK_S * 1000,
    });
    print(
      `Simulated fleet: ${fleet.cars.size} cars connected; skipped as incompatible: ${fleet.skipped.map((s) => s.vin).join(', ') || 'none'}.`,
    );
  }

  if (config.DEMO === 'on' && fleet && booted.apiKey) {
    const vehicle = [...fleet.cars.values()][0]?.vehicle;
    const location = seeds.locations.find((l) => l.ownerId === vehicle?.ownerId) as SeedLocation | undefined;
    if (vehicle && location) {
      await playDemoDelivery({ baseUrl: booted.baseUrl, apiKey: booted.apiKey, vehicle, location, print });
      const car = fleet.car(vehicle.vin).car.snapshot();
      print(`\nThe simulated car now reports locked=${car.locked}.`);
    }
  }
  print('\nServing. Ctrl-C stops.');
  await untilSignal();
  await fleet?.stop();
  await booted.stop();
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : `start failed: ${(err as Error).message}`);
  process.exit(1);
}
