// Test helper program: one gateway replica in its own process, so a test can kill -9 it and start it again.
// Environment: the gateway's own settings (DATA_DIR, CERTS_DIR, MQTT_PORT, HTTP_PORT, ...), plus API_KEY to
// reuse a key made by an earlier run. Prints one JSON line when ready: {"ready":true,"http":…,"mqtt":…,"apiKey":…}.
import pino from 'pino';
import { loadDevPki } from '../../certs/index.ts';
import { startGateway } from '../../gateway/gateway.ts';
import { parseConfig } from '../../gateway/platform/config.ts';
import { loadGatewayMaterial } from '../../gateway/platform/material.ts';
import { loadSeeds } from '../../seeds/index.ts';

const config = parseConfig({ ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'silent' });
const gateway = await startGateway({
  config,
  material: await loadGatewayMaterial(loadDevPki(config.CERTS_DIR), config.GATEWAY_REPLICA),
  catalog: loadSeeds().catalog,
  logger: pino({ level: 'silent' }),
});
const apiKey = process.env.API_KEY || (await gateway.createApiKey('child process'));
await gateway.app.listen({ host: '127.0.0.1', port: config.HTTP_PORT });
const http = (gateway.app.server.address() as { port: number }).port;
process.stdout.write(`${JSON.stringify({ ready: true, http, mqtt: gateway.broker?.port, apiKey })}\n`);

process.once('SIGTERM', () => {
  gateway.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
