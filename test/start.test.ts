// `npm start` and `npm run demo` as an operator runs them: the demo plays once on a fresh store and never
// rewrites an owner's choices, a signal during start-up drains, and an external broker may come up later.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureDevPki } from '../certs/index.ts';
import { type Broker, createBroker } from '../gateway/broker/broker.ts';
import { loadGatewayMaterial } from '../gateway/platform/material.ts';
import { loadSeeds } from '../seeds/index.ts';
import { freePort } from './helpers/child-gateway.ts';
import { killPrograms, type Program, runProgram } from './helpers/program.ts';
import { type ScratchStore, scratchStore } from './helpers/temp-store.ts';

const DEMO_CAR = '1G1ZE5ST5KF100231';
const HINT = /npm run demo/;
const SERVING = /Serving\. Ctrl-C stops\./;

const dirs: string[] = [];
const stores: ScratchStore[] = [];
let broker: Broker | null = null;

afterEach(async () => {
  killPrograms();
  await broker?.close();
  broker = null;
  for (const store of stores.splice(0)) await store.drop();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A folder and a store (the run's dialect) for one start, with the settings that name them. */
async function workDir(): Promise<{ dir: string; env: Record<string, string>; store: ScratchStore }> {
  const dir = mkdtempSync(join(tmpdir(), 'curbside-start-'));
  dirs.push(dir);
  const store = await scratchStore(join(dir, 'data'));
  stores.push(store);
  const env = {
    HTTP_PORT: '0',
    MQTT_PORT: '0',
    ...store.env,
    CERTS_DIR: join(dir, 'pki'),
    LOG_LEVEL: 'info',
  };
  return { dir, env, store };
}

const startProgram = (env: Record<string, string>): Program => runProgram('demo/main.ts', env);

const exited = (p: Program): boolean => p.child.exitCode !== null || p.child.signalCode !== null;

/** The HTTP API's address, once the start printed it. */
async function baseUrlOf(p: Program): Promise<string> {
  const pattern = /Gateway HTTP API on (http:\/\/\S+?),/;
  await expect.poll(() => pattern.test(p.out()) || exited(p), { timeout: 90_000, interval: 50 }).toBe(true);
  const found = pattern.exec(p.out());
  expect(found, `stdout:\n${p.out()}\nstderr:\n${p.err()}`).not.toBeNull();
  return (found as RegExpExecArray)[1] as string;
}

/** Waits until the start is over and it serves; fails with what it printed if it exited instead. */
async function serving(p: Program): Promise<string> {
  const base = await baseUrlOf(p);
  await expect.poll(() => SERVING.test(p.out()) || exited(p), { timeout: 90_000, interval: 100 }).toBe(true);
  expect(exited(p), `stdout:\n${p.out()}\nstderr:\n${p.err()}`).toBe(false);
  return base;
}

async function stop(p: Program): Promise<void> {
  p.child.kill('SIGTERM');
  expect(await p.exit, `stdout:\n${p.out()}\nstderr:\n${p.err()}`).toEqual({ code: 0, signal: null });
}

async function call(base: string, key: string, method: string, path: string, body?: unknown) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

/** How many unlock commands the gateway ever sent to the car, from its store (the program is stopped). */
async function unlocksSent(scratch: ScratchStore): Promise<number> {
  const store = await scratch.open();
  try {
    const rows = await store.db
      .selectFrom('commands')
      .select('id')
      .where('vin', '=', DEMO_CAR)
      .where('action', '=', 'unlock')
      .execute();
    return rows.length;
  } finally {
    await store.close();
  }
}

describe('npm start on a store that is not fresh', { timeout: 400_000 }, () => {
  it("keeps the owner's block and unlink, unlocks nothing, serves and says how to replay the demo", async () => {
    const { env, store } = await workDir();
    const first = startProgram(env);
    const base = await serving(first);
    expect(first.out()).toContain(`Demo delivery into a 2019 Chevrolet Malibu (${DEMO_CAR}, onstar)`);
    expect(first.out()).toMatch(/\(status completed\)/);
    expect(first.out()).not.toMatch(HINT);
    const key = readFileSync(join(env.CERTS_DIR as string, 'api-key'), 'utf8').trim();
    expect(
      (await call(base, key, 'POST', `/v1/vehicles/${DEMO_CAR}/block`, { reason: 'not today' })).status,
    ).toBe(200);
    await stop(first);
    expect(await unlocksSent(store)).toBe(1);

    // The owner blocked the car: a later start serves, leaves it blocked and opens nothing.
    const second = startProgram(env);
    const again = await serving(second);
    expect(second.out()).not.toContain('Demo delivery into');
    expect(second.out()).toMatch(HINT);
    const blocked = await call(again, key, 'GET', `/v1/vehicles/${DEMO_CAR}`);
    expect(blocked.body).toMatchObject({ blocked: true });
    expect((await call(again, key, 'DELETE', `/v1/vehicles/${DEMO_CAR}`)).status).toBe(200);
    await stop(second);
    expect(await unlocksSent(store)).toBe(1);

    // The owner unlinked the car: a later start does not link it again.
    const third = startProgram(env);
    const once = await serving(third);
    expect(third.out()).not.toContain('Demo delivery into');
    expect(third.out()).toMatch(HINT);
    expect((await call(once, key, 'GET', `/v1/vehicles/${DEMO_CAR}`)).status).toBe(404);
    await stop(third);
    expect(await unlocksSent(store)).toBe(1);

    // npm run demo replays it on a store of its own: this one stays as the owner left it.
    const replay = runProgram('demo/replay-main.ts', env);
    expect(await replay.exit, `stdout:\n${replay.out()}\nstderr:\n${replay.err()}`).toEqual({
      code: 0,
      signal: null,
    });
    expect(replay.out()).toContain(`Demo delivery into a 2019 Chevrolet Malibu (${DEMO_CAR}, onstar)`);
    expect(replay.out()).toMatch(/\(status completed\)/);
    expect(await unlocksSent(store)).toBe(1);
  });
});

describe('a stop signal during start-up', { timeout: 200_000 }, () => {
  it('SIGTERM as soon as /readyz answers 200, before the demo is over: drains and exits 0', async () => {
    const { env } = await workDir();
    const p = startProgram(env);
    const base = await baseUrlOf(p);
    await expect
      .poll(async () => (await fetch(`${base}/readyz`).catch(() => null))?.status, {
        timeout: 60_000,
        interval: 20,
      })
      .toBe(200);
    p.child.kill('SIGTERM');
    const servingAlready = SERVING.test(p.out());
    expect(await p.exit, `stdout:\n${p.out()}\nstderr:\n${p.err()}`).toEqual({ code: 0, signal: null });
    expect(servingAlready).toBe(false);
    expect(p.out()).toMatch(/Stopping \(SIGTERM\)/);
    expect(p.out()).not.toMatch(SERVING);
    const events = p
      .err()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l) as { event?: string }).event);
    expect(events).toContain('shutdown.drain');
    expect(events.at(-1)).toBe('shutdown.done');
  });
});

describe('an external broker (MQTT_URL) that is down at start', { timeout: 200_000 }, () => {
  it('serves not ready naming MQTT_URL, then becomes ready, starts the fleet and plays the demo once it answers', async () => {
    const { env } = await workDir();
    const seeds = loadSeeds();
    // The PKI first, so that the test's broker and the program trust the same CA.
    const pki = await ensureDevPki({ dir: env.CERTS_DIR as string, vins: seeds.vehicles.map((v) => v.vin) });
    const port = await freePort();
    const url = `mqtts://127.0.0.1:${port}`;
    const p = startProgram({ ...env, MQTT_URL: url });
    const base = await baseUrlOf(p);
    const readyz = async () => {
      const r = await fetch(`${base}/readyz`);
      return { status: r.status, body: (await r.json()) as { detail?: string } };
    };
    const down = await readyz();
    expect(down.status).toBe(503);
    expect(down.body.detail).toContain(`no MQTT session with ${url} (MQTT_URL)`);
    await expect.poll(() => p.out(), { timeout: 30_000 }).toContain(`${url} (MQTT_URL)`);
    expect(exited(p)).toBe(false);
    expect(p.out()).not.toContain('Simulated fleet');

    const material = await loadGatewayMaterial(pki);
    broker = await createBroker({
      tls: { ca: material.ca, cert: material.brokerCert, key: material.brokerKey, crl: material.crl },
      host: '127.0.0.1',
      port,
      logger: pino({ level: 'silent' }),
    });
    await expect.poll(async () => (await readyz()).status, { timeout: 60_000, interval: 200 }).toBe(200);
    await serving(p);
    expect(p.out()).toMatch(/Simulated fleet: 11 cars connected/);
    expect(p.out()).toMatch(/\(status completed\)/);
    await stop(p);
  });
});
