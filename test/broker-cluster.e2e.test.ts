// The gateway and the simulated fleet, unchanged, on a 3-node nats-server cluster configured by `certs nats`
// (MQTT_URL lists the nodes): failover when a node stops, and revocation that closes a live car.
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeVehicle } from '../certs/index.ts';
import { type BrokerCluster, startBrokerCluster } from '../cluster/broker.ts';
import { COMPLETED, runDelivery } from './helpers/delivery.ts';
import { connectClient } from './helpers/mqtt.ts';
import { read, type Stack, startStack } from './helpers/stack.ts';

const DELIVERED = '1G1ZE5ST5KF100231';
const SENDER = '1FA6P8TH6J5130557'; // has a certificate, not in the fleet

let stack: Stack;
let cluster: BrokerCluster;

beforeAll(async () => {
  stack = await startStack(
    {},
    {
      externalBroker: async (pki, dir) => {
        cluster = await startBrokerCluster({ pki, dir, nodes: 3 });
        return { url: cluster.urls.join(','), close: () => cluster.stop() };
      },
    },
  );
}, 120_000);

afterAll(async () => {
  await stack?.close(); // stops the cluster too
});

const identity = (vin: string) => ({
  ca: read(stack.pki.caCert),
  cert: read(stack.pki.vehicleCert(vin)),
  key: read(stack.pki.vehicleKey(vin)),
});

/**
 * Runs deliveries until one completes. While JetStream elects new leaders for what the stopped node led, the
 * car's state answers do not reach the gateway within QUERY_TIMEOUT_MS, and the unlock is refused with
 * PARKING_NOT_CONFIRMED: the safe failure, which every attempt is checked for. Resolves with the attempts it took.
 * A gateway subscription granted without its JetStream consumer (nats-server under load) delivers nothing: the
 * gateway's subscription probe finds it within MQTT_PROBE_TIMEOUT_MS and makes a clean session (PROTOCOL.md §2.1).
 */
async function untilDelivered(): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const run = await runDelivery(stack, DELIVERED);
    if (run.unlock === 200) {
      expect(run).toEqual(COMPLETED);
      return attempt;
    }
    expect(run).toEqual({ unlock: 409, lock: 409, status: 'scheduled', lockedAfter: true });
    expect(attempt).toBeLessThan(30);
  }
}

/**
 * Speaks the NATS client protocol to a node's NATS port: INFO in the clear, then TLS with the certificate, then
 * CONNECT and PING. Resolves with the server's first answer after CONNECT (`PONG` when let in, `-ERR …` when not).
 */
function natsProtocolAnswer(port: number, who: { ca: string; cert: string; key: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const plain = net.connect(port, '127.0.0.1');
    plain.once('error', reject);
    plain.once('data', (info) => {
      if (!info.toString().startsWith('INFO ')) return reject(new Error(`no INFO: ${info}`));
      const secure = tls.connect({ socket: plain, ...who, servername: 'localhost' }, () => {
        secure.write(
          'CONNECT {"verbose":false,"pedantic":false,"tls_required":true,"protocol":1}\r\nPING\r\n',
        );
      });
      let text = '';
      secure.on('data', (chunk) => {
        text += chunk.toString();
        const line = text.split('\r\n').find((l) => l === 'PONG' || l.startsWith('-ERR'));
        if (line !== undefined) {
          secure.destroy();
          resolve(line);
        }
      });
      secure.once('error', reject);
    });
  });
}

describe('running on a 3-node nats-server cluster', () => {
  it('lets no car and no gateway in on the NATS protocol port: MQTT only', async () => {
    const port = cluster.nodes[0]?.ports.client as number;
    const ca = read(stack.pki.caCert);
    expect(await natsProtocolAnswer(port, identity(DELIVERED))).toBe("-ERR 'Authorization Violation'");
    const gateway = { ca, cert: read(stack.pki.gatewayCert), key: read(stack.pki.gatewayKey) };
    expect(await natsProtocolAnswer(port, gateway)).toBe("-ERR 'Authorization Violation'");
  });

  it('completes a delivery with the gateway and the cars on the first node', async () => {
    expect(stack.gateway.broker).toBeNull();
    expect(stack.gateway.brokerUrl).toBe(cluster.urls.join(','));
    expect(await runDelivery(stack, DELIVERED)).toEqual(COMPLETED);
  });

  it('when the node everyone is on stops, the gateway and the car reconnect through another and a delivery still unlocks and relocks', async () => {
    // Everyone starts on the first URL; mqtt.js moves to the next one on each reconnect.
    const connection = stack.fleet.car(DELIVERED).connection;
    const statuses: string[] = [];
    const back = new Promise<void>((resolve) =>
      connection.onStatus((status) => {
        statuses.push(status);
        if (status === 'connected') resolve();
      }),
    );
    await cluster.stopNode(0);
    expect(cluster.nodes[0]?.running()).toBe(false);
    await back;
    expect(statuses[0]).toBe('reconnecting');
    await stack.gateway.link.untilConnected();
    await untilDelivered();
    expect(stack.fleet.car(DELIVERED).car.snapshot().locked).toBe(true);
    // The node comes back into the cluster and serves MQTT again.
    await cluster.startNode(0);
    const client = await connectClient(cluster.urls[0] as string, identity(SENDER), { clientId: SENDER });
    expect(client.outcome).toEqual({ kind: 'connected' });
    await client.end();
  }, 180_000);

  it('a revoked car is left out of the regenerated users; the rolling restart closes its live connection and everyone else comes back', async () => {
    // Whatever the test before left stopped runs again: the restart below needs a quorum at every step.
    for (const [i] of cluster.nodes.entries()) await cluster.startNode(i);
    const live = await connectClient(cluster.urls[1] as string, identity(SENDER), { clientId: SENDER });
    expect(live.outcome).toEqual({ kind: 'connected' });
    await revokeVehicle({ dir: stack.pki.dir, vin: SENDER });
    const identities = await cluster.applyAuthorization();
    expect(identities.vins).not.toContain(SENDER);
    expect(identities.vins).toContain(DELIVERED);
    await live.closed();
    expect(live.closes).toBe(1);
    // On every node: passes TLS (NATS reads no CRL), refused at CONNECT as not authorized.
    // A fresh client id each time: the cluster may still hold the closed session's id, which it refuses by closing.
    for (const [i, url] of cluster.urls.entries()) {
      const again = await connectClient(url, identity(SENDER), { clientId: `${SENDER}-${i}` });
      expect(again.outcome).toEqual({ kind: 'refused', returnCode: 5 });
    }
    // Everyone else reconnected through the nodes that were up, and is served.
    await expect.poll(() => stack.fleet.car(DELIVERED).connection.connected, { timeout: 60_000 }).toBe(true);
    await stack.gateway.link.untilConnected();
    await untilDelivered();
  }, 180_000);
});
