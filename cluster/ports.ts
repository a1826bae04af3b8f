// Owns finding a free loopback port for the local cluster's parts (and the tests' brokers).
import { createServer } from 'node:net';

/** A port that was free on host a moment ago; whoever loses it to another process fails its start and says so. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
