// Owns `npm run bench:console`: how long the console takes to first draw a large fleet. A gateway runs in this
// process on a store seeded with N cars (their last reports), locations and deliveries with timelines; a real
// Chromium (Debian's, through playwright-core) loads /console signed in with an admin key, and the page's own
// mark after its first drawn frame (map and list) is read, in ms since navigation start.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { ensureDevPki } from '../../certs/dev-pki.ts';
import { startGateway } from '../../gateway/gateway.ts';
import { parseConfig } from '../../gateway/platform/config.ts';
import { loadGatewayMaterial } from '../../gateway/platform/material.ts';
import type { Db } from '../../gateway/store/db.ts';
import { loadSeeds } from '../../seeds/index.ts';
import { launchChromium } from '../helpers/browser.ts';
import { BENCH_VEHICLE, benchVin } from './fleet-data.ts';

const USAGE = `Usage: npm run bench:console -- [--cars N] [--runs R]

Seeds a store with N cars (default 10000), N/50 locations and 100 deliveries with their timelines, starts a
gateway on a free loopback port and loads /console R times (default 5) in Debian's Chromium, each in a new tab,
after one unmeasured load. Prints each load's first render (the page's mark after the frame that first draws the
map and the car list, in ms since navigation start) and their median; the target is under 1000 ms.`;

/** A small deterministic PRNG (mulberry32), so every run seeds the same fleet. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Around Seattle, where the seed fleet lives. */
const AREA = { lat: 47.5, lon: -122.45, dLat: 0.25, dLon: 0.3 };

async function seed(db: Db, cars: number, now: number): Promise<void> {
  const random = prng(42);
  const owners = Math.max(1, Math.floor(cars / 20));
  await db.transaction().execute(async (trx) => {
    const rows = [];
    for (let i = 0; i < cars; i++) {
      const r = random();
      // 80 % locked and online, 5 % open, 10 % offline, 5 % not reported yet.
      const reported = r < 0.95;
      rows.push({
        vin: benchVin(i),
        ...BENCH_VEHICLE,
        owner_id: `owner-${i % owners}`,
        consent: 'unlock,lock',
        linked_at: now - 86_400_000,
        online: r < 0.85 ? 1 : 0,
        locked: reported ? (r >= 0.8 && r < 0.85 ? 0 : 1) : null,
        lat: reported ? AREA.lat + random() * AREA.dLat : null,
        lon: reported ? AREA.lon + random() * AREA.dLon : null,
        ignition: reported ? 'off' : null,
        doors_open: reported ? 0 : null,
        last_seen: reported ? now - Math.floor(random() * 30_000) : null,
        last_seq: reported ? 1 : null,
        cert_pem: null,
        blocked: 0,
        unlinked_at: null,
      });
    }
    for (let i = 0; i < rows.length; i += 500)
      await trx
        .insertInto('vehicles')
        .values(rows.slice(i, i + 500))
        .execute();
    const locations = [];
    for (let i = 0; i < Math.max(1, Math.floor(cars / 50)); i++) {
      locations.push({
        id: `loc_bench_${i}`,
        owner_id: `owner-${i % owners}`,
        label: `Bench place ${i}`,
        kind: 'home',
        lat: AREA.lat + random() * AREA.dLat,
        lon: AREA.lon + random() * AREA.dLon,
        radius_m: 100 + Math.floor(random() * 300),
        created_at: now - 86_400_000,
        access: 'public',
      });
    }
    for (let i = 0; i < locations.length; i += 500)
      await trx
        .insertInto('locations')
        .values(locations.slice(i, i + 500))
        .execute();
    const kinds: Array<[string, string, string | null]> = [
      ['delivery_scheduled', 'info', null],
      ['unlock_requested', 'denied', 'PARKING_NOT_CONFIRMED'],
      ['parking_confirmed', 'granted', null],
      ['unlock_granted', 'granted', null],
      ['command_sent', 'info', null],
      ['vehicle_unlocked', 'granted', null],
      ['lock_granted', 'granted', null],
      ['vehicle_locked', 'granted', null],
      ['delivery_completed', 'info', null],
    ];
    for (let i = 0; i < 100; i++) {
      const id = `dlv_bench_${i}`;
      const at = now - (100 - i) * 60_000;
      await trx
        .insertInto('deliveries')
        .values({
          id,
          vin: benchVin(i * Math.max(1, Math.floor(cars / 100))),
          location_id: `loc_bench_${i % locations.length}`,
          driver_id: 'driver-7',
          package_ids: '["pkg-1"]',
          window_start: at,
          window_end: at + 4 * 3_600_000,
          status: 'completed',
          unlocks_used: 1,
          created_at: at,
          updated_at: at + 9_000,
          blocked: 0,
          parking_confirmed_at: at + 2_000,
          parking_lat: null,
          parking_lon: null,
          parking_invalid_code: null,
          unlocked_at: at + 5_000,
          unlocked_car_at: at + 5_000,
          relocked_at: at + 8_000,
          relock_retry_at: null,
          lock_unconfirmed_at: null,
          carrier_id: 'carrier-bench',
        })
        .execute();
      await trx
        .insertInto('delivery_events')
        .values(
          kinds.map(([kind, outcome, code], k) => ({
            delivery_id: id,
            at: at + k * 1_000,
            kind,
            outcome,
            code,
            detail: '{}',
          })),
        )
        .execute();
    }
  });
}

/** A script run in the page before its own: the key as the sign-in form would have left it. */
export const signedIn = (key: string): string =>
  `sessionStorage.setItem('curbside.console.key', ${JSON.stringify(key)});`;

interface Measure {
  firstRender: number;
  me: number;
  lists: number;
  loaded: number;
  vehiclesMs: number;
  vehiclesBytes: number;
  drawn: number;
  rowsInDom: number;
}

/** Evaluated in the page (a string: this file is type-checked without the DOM's types). */
const MEASURE = `(() => {
  const res = (path) => performance.getEntriesByType('resource').find((e) => new URL(e.name).pathname === path);
  const vehicles = res('/v1/console/vehicles');
  return {
    firstRender: performance.getEntriesByName('console:first-render')[0]?.startTime ?? NaN,
    me: res('/v1/console/me')?.responseEnd ?? NaN,
    loaded: performance.getEntriesByName('console:lists-loaded')[0]?.startTime ?? NaN,
    lists: vehicles?.requestStart ?? NaN,
    vehiclesMs: vehicles ? vehicles.responseEnd - vehicles.requestStart : NaN,
    vehiclesBytes: vehicles?.encodedBodySize ?? 0,
    drawn: Number(document.getElementById('map')?.dataset.drawn ?? 0),
    rowsInDom: document.querySelectorAll('#car-list .car-row:not([hidden])').length,
  };
})()`;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function main(): Promise<void> {
  let values: { cars?: string; runs?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: { cars: { type: 'string' }, runs: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    process.stderr.write(`bench:console: ${(err as Error).message.split('\n')[0]}; see --help\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const cars = Number(values.cars ?? 10_000);
  const runs = Number(values.runs ?? 5);
  if (
    !Number.isInteger(cars) ||
    cars < 1 ||
    cars > 100_000 ||
    !Number.isInteger(runs) ||
    runs < 1 ||
    runs > 50
  ) {
    process.stderr.write('bench:console: --cars is 1..100000 and --runs 1..50\n');
    process.exit(2);
  }

  const dir = mkdtempSync(join(tmpdir(), 'curbside-console-bench-'));
  const pki = await ensureDevPki({ dir: join(dir, 'pki'), vins: [] });
  const gateway = await startGateway({
    config: parseConfig({
      NODE_ENV: 'test',
      HTTP_PORT: '0',
      MQTT_PORT: '0',
      DATA_DIR: join(dir, 'data'),
      LOG_LEVEL: 'silent',
      RATE_LIMIT_PER_KEY_PER_MIN: '100000',
    }),
    material: await loadGatewayMaterial(pki),
    catalog: loadSeeds().catalog,
    logger: pino({ level: 'silent' }),
  });
  const browser = await launchChromium({ width: 1440, height: 900 });
  try {
    const t0 = performance.now();
    await seed(gateway.store.db, cars, Date.now());
    process.stdout.write(`seeded ${cars} cars in ${Math.round(performance.now() - t0)} ms\n`);
    const key = await gateway.createApiKey('bench admin');
    const base = await gateway.app.listen({ host: '127.0.0.1', port: 0 });

    const load = async () => {
      const page = await browser.context.newPage();
      await page.addInitScript(signedIn(key));
      await page.goto(`${base}/console`);
      await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
      const m = (await page.evaluate(MEASURE)) as Measure;
      await page.close();
      return m;
    };
    await load(); // unmeasured: Chromium's own caches, and the page built by esbuild
    const results = [];
    for (let i = 0; i < runs; i++) {
      const r = await load();
      results.push(r);
      process.stdout.write(
        `load ${i + 1}: first render ${r.firstRender.toFixed(0)} ms (key known ${r.me.toFixed(0)}, lists asked ${r.lists.toFixed(0)}, ` +
          `GET /v1/console/vehicles ${r.vehiclesMs.toFixed(0)} ms, lists parsed ${r.loaded.toFixed(0)}, ` +
          `${(r.vehiclesBytes / 1024).toFixed(0)} KiB); cars drawn ${r.drawn}; list rows in the DOM ${r.rowsInDom}\n`,
      );
    }
    const med = median(results.map((r) => r.firstRender));
    process.stdout.write(
      `\n${cars} cars: first render median ${med.toFixed(0)} ms over ${runs} loads ` +
        `(min ${Math.min(...results.map((r) => r.firstRender)).toFixed(0)}, max ${Math.max(...results.map((r) => r.firstRender)).toFixed(0)}); target < 1000 ms\n`,
    );
  } finally {
    await browser.close();
    await gateway.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
