// Over real mTLS MQTT on loopback (the stack's embedded broker and simulated cars): how the gateway's link hands
// cars' messages on. Each car's messages keep their order; one car's message being recorded slowly never holds up
// another car's answer to a state query (a connect storm once held every answer back past its timeout).
import { readFileSync } from 'node:fs';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectVehicleLink, type MqttVehicleLink } from '../gateway/vehicles/link.ts';
import type { StateMessage } from '../protocols/index.ts';
import { type Stack, startStack } from './helpers/stack.ts';

async function until(check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('the vehicle link hands messages on per car', () => {
  let stack: Stack;
  let link: MqttVehicleLink | null = null;

  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await link?.close();
    await stack?.close();
  });

  it("answers a car's state query while another car's message is still being recorded", async () => {
    const [slow, other] = stack.seeds.vehicles;
    if (!slow || !other) throw new Error('the seed fleet has fewer than two cars');
    const providers = new Map(stack.seeds.vehicles.map((v) => [v.vin, v.provider]));
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const handed: Array<{ vin: string; message: StateMessage }> = [];
    const read = (path: string): string => readFileSync(path, 'utf8');
    // A second gateway session beside the stack's own: it receives every car's acks and state too.
    link = await connectVehicleLink({
      url: stack.gateway.brokerUrl,
      clientId: 'gateway-probe',
      tls: { ca: read(stack.pki.caCert), cert: read(stack.pki.gatewayCert), key: read(stack.pki.gatewayKey) },
      logger: pino({ level: 'silent' }),
      providerOf: async (vin) => providers.get(vin) ?? null,
      // Recording the slow car's messages takes until the test releases it (a store busy with its commit).
      onState: async (vin, message) => {
        handed.push({ vin, message });
        if (vin === slow.vin) await gate;
      },
    });
    try {
      const first = link.query(slow.vin, 30_000);
      await until(() => handed.some((h) => h.vin === slow.vin));
      // Its next message waits behind the one being recorded, whenever it arrives.
      const second = link.query(slow.vin, 30_000);
      const answer = await link.query(other.vin, 10_000);
      expect(answer.kind).toBe('state');
      if (answer.kind !== 'state') return;
      expect(answer.report.vin).toBe(other.vin);
      expect(handed.filter((h) => h.vin === slow.vin)).toHaveLength(1);
      release();
      // Neither of the slow car's answers was lost; they were handed on in the order the car sent them.
      const answers = [await first, await second];
      expect(answers.map((a) => a.kind)).toEqual(['state', 'state']);
      const seqs = handed
        .filter((h) => h.vin === slow.vin)
        .map((h) => (h.message.type === 'state' ? h.message.seq : -1));
      expect(seqs).toHaveLength(2);
      expect(seqs[0]).toBeLessThan(seqs[1] as number);
    } finally {
      release();
    }
  });
});
