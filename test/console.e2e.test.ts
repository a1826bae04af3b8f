// The fleet console in a real browser (Debian's Chromium, driven by playwright-core): a scripted delivery shows
// up live, an owner's key sees only its own cars, and the console drives a simulated car.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SeedVehicle } from '../seeds/index.ts';
import { launchChromium, type TestBrowser } from './helpers/browser.ts';
import {
  type Call,
  callerWith,
  callWithKey,
  deliveryBody,
  unlockBody,
  vehicleOf,
} from './helpers/platform.ts';
import { type Stack, startStack } from './helpers/stack.ts';

/** Gitignored: where the browser tests leave what they saw. */
const RESULTS_DIR = join(import.meta.dirname, '..', 'test-results');

let stack: Stack;
let browser: TestBrowser;
let base: string;
let admin: Call;
let ada: SeedVehicle;
let ben: SeedVehicle;
const keys: Record<'ada' | 'ben', string> = { ada: '', ben: '' };
let customerAda: Call;
let carrier: Call;
let driver: Call;

const row = (vin: string, state?: string) =>
  `#car-list .car-row[data-vin="${vin}"]${state ? `[data-state="${state}"]` : ''}`;

/** Links a seeded car with the owner's consent, and has it report at once (a car reports when it changes). */
async function linkAndReport(call: Call, v: SeedVehicle): Promise<void> {
  const r = await call('POST', '/v1/vehicles', {
    vin: v.vin,
    make: v.make,
    model: v.model,
    year: v.year,
    provider: v.provider,
    ownerId: v.ownerId,
    consent: ['unlock', 'lock'],
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  stack.fleet.car(v.vin).connection.reportState();
  const deadline = Date.now() + 10_000;
  while ((await admin('GET', `/v1/vehicles/${v.vin}`)).body.position === null) {
    if (Date.now() > deadline) throw new Error(`${v.vin} did not report`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function signIn(page: Page, key: string): Promise<void> {
  await page.goto(`${base}/console`);
  await page.fill('#signin-key', key);
  await page.click('#signin-form button[type="submit"]');
  await page.waitForSelector('body[data-ready="true"]');
}

beforeAll(async () => {
  stack = await startStack({}, { simulatorControl: true });
  base = await stack.gateway.app.listen({ host: '127.0.0.1', port: 0 });
  admin = callWithKey(stack, stack.apiKey);
  ada = vehicleOf(stack, 'owner-ada');
  ben = vehicleOf(stack, 'owner-ben');
  const { parseGrant } = await import('../gateway/access/api-keys.ts');
  keys.ada = await stack.gateway.createApiKey(
    'ada',
    parseGrant({ scopes: ['customer'], ownerId: 'owner-ada' }),
  );
  keys.ben = await stack.gateway.createApiKey(
    'ben',
    parseGrant({ scopes: ['customer'], ownerId: 'owner-ben' }),
  );
  customerAda = callWithKey(stack, keys.ada);
  carrier = await callerWith(stack, ['carrier'], { carrierId: 'carrier-acme' });
  driver = await callerWith(stack, ['driver'], { carrierId: 'carrier-acme' });
  await linkAndReport(customerAda, ada);
  await linkAndReport(callWithKey(stack, keys.ben), ben);
  browser = await launchChromium();
  browser.context.setDefaultTimeout(10_000);
});

afterAll(async () => {
  await browser?.close();
  await stack?.close();
});

describe('the console in a browser', () => {
  it('shows a scripted delivery live: the car turns open, then locked, and the timeline rows appear', async () => {
    const page = await browser.context.newPage();
    await signIn(page, stack.apiKey);
    await page.waitForSelector(row(ada.vin, 'locked'));
    expect(await page.textContent('#feed-status')).toBe('live');

    const location = await customerAda('POST', '/v1/locations', {
      ownerId: ada.ownerId,
      label: 'curb',
      kind: 'home',
      lat: ada.position.lat,
      lon: ada.position.lon,
      radiusM: 200,
      access: 'public',
    });
    const scheduled = await carrier('POST', '/v1/deliveries', deliveryBody(ada, location.body.id));
    expect(scheduled.status).toBe(201);
    const id: string = scheduled.body.id;
    const card = `article.delivery[data-delivery="${id}"]`;
    await page.waitForSelector(`${card} li[data-kind="delivery_scheduled"]`);

    expect((await customerAda('POST', `/v1/deliveries/${id}/parking`, {})).status).toBe(200);
    await page.waitForSelector(`${card} li[data-kind="parking_confirmed"][data-outcome="granted"]`);

    const wrong = await driver(
      'POST',
      `/v1/deliveries/${id}/unlock`,
      unlockBody(ada, { driverId: 'driver-9' }),
    );
    expect(wrong.body.code).toBe('DRIVER_NOT_ASSIGNED');
    const refusal = page.locator(
      `${card} li[data-kind="unlock_requested"][data-outcome="denied"] code.refusal`,
    );
    await refusal.waitFor();
    expect(await refusal.textContent()).toBe('DRIVER_NOT_ASSIGNED');

    expect((await driver('POST', `/v1/deliveries/${id}/unlock`, unlockBody(ada))).status).toBe(200);
    await page.waitForSelector(row(ada.vin, 'open'));
    await page.waitForSelector(`${card} li[data-kind="vehicle_unlocked"]`);

    expect((await driver('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' })).status).toBe(200);
    await page.waitForSelector(row(ada.vin, 'locked'));
    await page.waitForSelector(`${card}[data-status="completed"] li[data-kind="delivery_completed"]`);

    const kinds = await page.$$eval(`${card} li`, (items) => items.map((li) => li.getAttribute('data-kind')));
    expect(kinds).toEqual([
      'delivery_scheduled',
      'parking_confirmed',
      'unlock_requested',
      'unlock_granted',
      'command_sent',
      'vehicle_unlocked',
      'lock_granted',
      'command_sent',
      'vehicle_locked',
      'delivery_completed',
    ]);
    // Nothing was reloaded: the page's first load is its only one.
    expect(await page.evaluate(() => performance.getEntriesByName('console:lists-loaded').length)).toBe(1);
    mkdirSync(RESULTS_DIR, { recursive: true });
    await page.screenshot({ path: join(RESULTS_DIR, 'console.png') });
    await page.close();
  });

  it("does not show an owner's key another owner's car, in the list, on the map or live", async () => {
    const page = await browser.context.newPage();
    await signIn(page, keys.ada);
    await page.waitForSelector(row(ada.vin));
    expect(await page.locator(row(ben.vin)).count()).toBe(0);
    expect(await page.getAttribute('#map', 'data-drawn')).toBe('1');
    // An owner's key holds no delivery or timeline scope: that panel is not there at all.
    expect(await page.isHidden('#deliveries-panel')).toBe(true);

    // Ben's car changes first, then Ada's: once Ada's change is on the page, Ben's would have been too.
    expect(
      (
        await admin('POST', `/v1/console/vehicles/${ben.vin}/simulator`, {
          op: 'door',
          door: 'driver',
          to: 'open',
        })
      ).status,
    ).toBe(200);
    expect(
      (
        await admin('POST', `/v1/console/vehicles/${ada.vin}/simulator`, {
          op: 'door',
          door: 'driver',
          to: 'open',
        })
      ).status,
    ).toBe(200);
    await page.waitForSelector(`${row(ada.vin)}[data-doors="open"]`);
    expect(await page.locator(row(ben.vin)).count()).toBe(0);
    expect(await page.getAttribute('#map', 'data-drawn')).toBe('1');
    for (const v of [ada, ben])
      await admin('POST', `/v1/console/vehicles/${v.vin}/simulator`, {
        op: 'door',
        door: 'driver',
        to: 'closed',
      });
    await page.close();
  });

  it('drives the simulated car from the page: a door, then its link', async () => {
    const page = await browser.context.newPage();
    await signIn(page, keys.ada);
    await page.click(row(ada.vin));
    await page.click('#car-detail button:text("Open driver door")');
    await page.waitForSelector('#sim-status[data-outcome="ok"]');
    await page.waitForSelector(`${row(ada.vin)}[data-doors="open"]`);
    await page.click('#car-detail button:text("Close driver door")');
    await page.waitForSelector(`${row(ada.vin)}[data-doors="shut"]`);

    await page.click('#car-detail button:text("Offline")');
    await page.waitForSelector(row(ada.vin, 'offline'));
    await page.click('#car-detail button:text("Online")');
    await page.waitForSelector(row(ada.vin, 'locked'));
    expect(await page.textContent('#car-detail')).toContain('Simulator linkonline');
    await page.close();
  });
});
