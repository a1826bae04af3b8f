// A broker that grants the gateway's subscriptions and then delivers nothing (a proxy on the real TLS path swallows
// every PUBLISH to the gateway's session): the probe finds it, the gateway drops the session and makes a clean one,
// and deliveries work again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METRIC_NAMES } from '../gateway/platform/metrics.ts';
import { type DeafProxy, startDeafProxy } from './helpers/deaf-proxy.ts';
import { COMPLETED, runDelivery } from './helpers/delivery.ts';
import { type Mosquitto, startMosquitto } from './helpers/mosquitto.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const DELIVERED = '1G1ZE5ST5KF100231';

let stack: Stack;
let mosquitto: Mosquitto;
let proxy: DeafProxy;

beforeAll(async () => {
  stack = await startStack(
    { MQTT_PROBE_INTERVAL_S: '2', MQTT_PROBE_TIMEOUT_MS: '1500' },
    {
      externalBroker: async (pki, dir) => {
        mosquitto = await startMosquitto(pki, dir);
        proxy = await startDeafProxy(pki, mosquitto.url);
        return {
          url: proxy.url,
          close: async () => {
            await proxy.close();
            await mosquitto.close();
          },
        };
      },
    },
  );
}, 60_000);

afterAll(async () => {
  await stack?.close(); // stops the proxy and Mosquitto too
});

const deafCount = async (): Promise<number> => {
  const r = await stack.gateway.app.inject({ method: 'GET', url: '/metrics' });
  const line = r.body.split('\n').find((l: string) => l.startsWith(`${METRIC_NAMES.deafSubscriptions} `));
  return Number(line?.split(' ')[1]);
};

const deafLogs = () => stack.logs.filter((l) => l.event === 'mqtt.subscription_deaf');

describe('a subscription granted that delivers nothing', () => {
  it('is found by the probe; the gateway makes a clean session and delivers again', async () => {
    expect(await runDelivery(stack, DELIVERED)).toEqual(COMPLETED);
    expect(await deafCount()).toBe(0);
    expect((await stack.gateway.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);

    proxy.deafen();
    // The next probe round cannot come back: one line with its stable code, then a session on a fresh connection.
    while (deafLogs().length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(deafLogs()[0]).toMatchObject({ code: 'SUBSCRIPTION_DEAF', missing: expect.any(Array) });
    expect(proxy.swallowed()).toBeGreaterThan(0);
    expect(await deafCount()).toBeGreaterThanOrEqual(1);

    await stack.gateway.link.untilConnected();
    expect(stack.gateway.link.problem()).toBeNull();
    expect((await stack.gateway.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    expect(await runDelivery(stack, DELIVERED)).toEqual(COMPLETED);
    expect(stack.fleet.car(DELIVERED).car.snapshot().locked).toBe(true);
  }, 60_000);
});
