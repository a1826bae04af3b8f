// What replicas share through PostgreSQL, with two stores (two connections, as two replicas have) on one real schema:
// leases and the jobs they gate, delivery holds, the shared rate limits, and the ack relay over LISTEN/NOTIFY.
import { generateKeyPairSync } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAckRelay } from '../gateway/cluster/ack-relay.ts';
import { createDeliveryHolds } from '../gateway/cluster/delivery-holds.ts';
import { createLeases } from '../gateway/cluster/leases.ts';
import { sharedRateLimitStore, sharedVehicleLimiter } from '../gateway/cluster/rate-limits.ts';
import { createSingletonJobs } from '../gateway/cluster/singleton.ts';
import { openStore, type Store } from '../gateway/store/store.ts';
import type { AckHandover } from '../gateway/vehicles/link.ts';
import { type Ack, PROTOCOL_VERSION, type StateReport, signAck } from '../protocols/index.ts';
import { freshPgSchema, pgUrlWithSchema } from './helpers/pg-schema.ts';

const logger = pino({ level: 'silent' });
const VIN = '1HGCM82633A004352';
let drop: () => Promise<void>;
let url: string;
let a: Store;
let b: Store;

beforeAll(async () => {
  const fresh = await freshPgSchema();
  drop = fresh.drop;
  url = pgUrlWithSchema(fresh.schema);
  a = await openStore(fresh.config);
  b = await openStore(fresh.config);
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await drop?.();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('leases', () => {
  it('gives a free lease to exactly one of two replicas racing for it, round after round', async () => {
    const la = createLeases(a.db, 'r1/aaaa');
    const lb = createLeases(b.db, 'r2/bbbb');
    for (let round = 0; round < 25; round++) {
      const name = `race:${round}`;
      const [ga, gb] = await Promise.all([la.acquire(name, 60_000), lb.acquire(name, 60_000)]);
      expect([ga, gb].filter(Boolean)).toHaveLength(1);
      // The holder renews; the other still cannot take it.
      const holder = ga ? la : lb;
      const other = ga ? lb : la;
      expect(await holder.acquire(name, 60_000)).toBe(true);
      expect(await other.acquire(name, 60_000)).toBe(false);
      expect(await other.heldElsewhere([name, 'nobody'])).toEqual(new Set([name]));
      expect(await holder.heldElsewhere([name])).toEqual(new Set());
    }
  });

  it('passes to another replica once the holder stops renewing (its lease expired) or releases it', async () => {
    const la = createLeases(a.db, 'r1/cccc');
    const lb = createLeases(b.db, 'r2/dddd');
    expect(await la.acquire('expiring', 300)).toBe(true);
    expect(await lb.acquire('expiring', 300)).toBe(false);
    await expect.poll(() => lb.acquire('expiring', 60_000), { timeout: 5_000, interval: 50 }).toBe(true);
    expect(await la.acquire('expiring', 300)).toBe(false);
    await lb.release('expiring');
    expect(await la.acquire('expiring', 60_000)).toBe(true);
    // Releasing a lease one does not hold changes nothing.
    await lb.release('expiring');
    expect(await lb.acquire('expiring', 60_000)).toBe(false);
  });
});

describe('background jobs', () => {
  it('run on one replica per tick, however the ticks interleave', async () => {
    const ja = createSingletonJobs({ leases: createLeases(a.db, 'r1/eeee'), logger });
    const jb = createSingletonJobs({ leases: createLeases(b.db, 'r2/ffff'), logger });
    const ran: string[] = [];
    for (let tick = 0; tick < 20; tick++) {
      const results = await Promise.all([
        ja.runIfLeader('sweep', 60_000, async () => ran.push(`a${tick}`)),
        jb.runIfLeader('sweep', 60_000, async () => ran.push(`b${tick}`)),
      ]);
      expect(results.filter((r) => r.ran)).toHaveLength(1);
    }
    // The first winner keeps the job while it renews it.
    expect(new Set(ran.map((r) => r[0]))).toHaveProperty('size', 1);
    expect(ran).toHaveLength(20);
    // A clean stop hands it over at once.
    const leader = ran[0]?.startsWith('a') ? ja : jb;
    const follower = leader === ja ? jb : ja;
    await leader.releaseAll();
    expect((await follower.runIfLeader('sweep', 60_000, async () => 1)).ran).toBe(true);
  });
});

describe('delivery holds', () => {
  it('refuse a second replica at once while one holds the delivery, or make it wait its turn', async () => {
    const ha = createDeliveryHolds({ leases: createLeases(a.db, 'r1/gggg'), ttlMs: 30_000, retryMs: 20 });
    const hb = createDeliveryHolds({ leases: createLeases(b.db, 'r2/hhhh'), ttlMs: 30_000, retryMs: 20 });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const order: string[] = [];
    const first = ha.run('dlv_1', async () => {
      order.push('a start');
      await gate;
      order.push('a end');
    });
    await expect.poll(() => hb.heldElsewhere(['dlv_1', 'dlv_2'])).toEqual(new Set(['dlv_1']));
    await expect(
      hb.run('dlv_1', async () => order.push('b refused ran'), { busy: () => new Error('BUSY') }),
    ).rejects.toThrow('BUSY');
    const second = hb.run('dlv_1', async () => order.push('b'));
    await sleep(100);
    expect(order).toEqual(['a start']);
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['a start', 'a end', 'b']);
    expect(await ha.heldElsewhere(['dlv_1'])).toEqual(new Set());
  });
});

describe('shared rate limits', () => {
  it('count one API key once across replicas: each replica adds to the same window', async () => {
    const Sa = sharedRateLimitStore(a.db);
    const Sb = sharedRateLimitStore(b.db);
    // biome-ignore lint/suspicious/noExplicitAny: the plugin constructs its store with its own options.
    const sa = new Sa({} as any);
    // biome-ignore lint/suspicious/noExplicitAny: as above.
    const sb = new Sb({} as any);
    const incr = (s: typeof sa, key: string) =>
      new Promise<{ current: number; ttl: number }>((resolve, reject) =>
        s.incr(key, (err, r) => (err || !r ? reject(err) : resolve(r)), 60_000, 10),
      );
    const seen = await Promise.all(
      Array.from({ length: 20 }, (_, i) => incr(i % 2 === 0 ? sa : sb, 'key_shared')),
    );
    expect(seen.map((r) => r.current).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    for (const r of seen) expect(r.ttl).toBeGreaterThan(0);
    expect((await incr(sb, 'key_other')).current).toBe(1);
  });

  it("share a car's budget: one command in flight across replicas, and one bucket of tokens", async () => {
    const config = { burst: 2, perMinute: 1, holdMs: 60_000 };
    const va = sharedVehicleLimiter(a.db, { ...config, holder: 'r1/iiii' });
    const vb = sharedVehicleLimiter(b.db, { ...config, holder: 'r2/jjjj' });
    const [x, y] = await Promise.all([va.acquire(VIN), vb.acquire(VIN)]);
    expect([x.ok, y.ok].filter(Boolean)).toHaveLength(1);
    const refused = x.ok ? y : x;
    expect(refused).toMatchObject({ ok: false, reason: 'IN_FLIGHT' });
    if (x.ok) x.release();
    if (y.ok) y.release();
    await expect.poll(async () => (await vb.acquire(VIN)).ok, { interval: 20 }).toBe(true);
    // Two tokens of burst, both used (one per replica); the third is refused for rate, whoever asks.
    const third = await va.acquire(VIN);
    expect(third.ok).toBe(false);
  });
});

describe('ack relay', () => {
  const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const ackFor = async (commandId: string): Promise<Ack> =>
    signAck(
      {
        v: PROTOCOL_VERSION,
        type: 'ack',
        vin: VIN,
        commandId,
        deliveryId: 'dlv_x',
        action: 'unlock',
        outcome: 'executed',
        locked: false,
        at: Date.now(),
      },
      key,
    );
  const waitingLink = (ids: string[], nonces: string[] = []) => {
    const delivered: Ack[] = [];
    const answers: StateReport[] = [];
    const link: AckHandover = {
      waitingFor: () =>
        ids
          .filter((id) => !delivered.some((d) => d.commandId === id))
          .map((commandId) => ({ commandId, vin: VIN })),
      deliverAck: (_vin, ack) => {
        if (!ids.includes(ack.commandId)) return false;
        delivered.push(ack);
        return true;
      },
      queriesWaiting: () =>
        nonces.filter((n) => !answers.some((r) => r.nonce === n)).map((nonce) => ({ nonce, vin: VIN })),
      deliverReport: (_vin, report) => {
        if (!report.nonce || !nonces.includes(report.nonce)) return false;
        answers.push(report);
        return true;
      },
    };
    return { link, delivered, answers };
  };
  const answerTo = (nonce: string): StateReport => ({
    v: PROTOCOL_VERSION,
    type: 'state',
    vin: VIN,
    seq: 7,
    online: true,
    locked: true,
    doors: { driver: 'closed', passenger: 'closed', rearLeft: 'closed', rearRight: 'closed' },
    trunk: 'closed',
    ignition: 'off',
    position: { lat: 47.6, lon: -122.3 },
    at: Date.now(),
    nonce,
  });

  it('hands the answer to a state query another replica received to the replica that asked', async () => {
    const nonce = 'n'.repeat(22);
    const waiting = waitingLink([], [nonce]);
    const here = createAckRelay({ db: a.db, url, link: () => waiting.link, now: Date.now, logger });
    const there = createAckRelay({ db: b.db, url, link: () => null, now: Date.now, logger });
    await here.start();
    await there.start();
    try {
      await there.recordReport(VIN, answerTo(nonce));
      await expect.poll(() => waiting.answers.map((r) => r.nonce)).toEqual([nonce]);
      // Found by nonce on a timeout's re-read, for its own car only; a report without a nonce is never recorded.
      expect(await here.findReport(VIN, nonce)).toMatchObject({ nonce, locked: true });
      expect(await here.findReport('YV1A22MK3F1900345', nonce)).toBeNull();
      const { nonce: _n, ...plain } = answerTo(nonce);
      await there.recordReport(VIN, plain);
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from report_inbox`.execute(a.db);
      expect(rows[0]?.n).toBe(1);
    } finally {
      await here.close();
      await there.close();
    }
  });

  it('hands an ack another replica received to the request waiting here, through NOTIFY and after a lost LISTEN', async () => {
    const waiting = waitingLink(['cmd_1', 'cmd_2']);
    const here = createAckRelay({
      db: a.db,
      url,
      link: () => waiting.link,
      now: Date.now,
      logger,
      reconnectMs: 50,
      applicationName: `relay-test ${url.slice(-20)}`,
    });
    const there = createAckRelay({ db: b.db, url, link: () => null, now: Date.now, logger });
    await here.start();
    await there.start();
    try {
      const ack1 = await ackFor('cmd_1');
      await there.record(VIN, ack1);
      await expect.poll(() => waiting.delivered.map((d) => d.commandId)).toEqual(['cmd_1']);
      expect(waiting.delivered[0]).toEqual(ack1);
      // A duplicate (QoS 1) records and notifies nothing more.
      await there.record(VIN, ack1);
      // The LISTEN connection is cut; an ack recorded meanwhile is read when it comes back.
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      const { rows } = await admin.query(
        'select pg_terminate_backend(pid) as ended from pg_stat_activity where application_name = $1',
        [`relay-test ${url.slice(-20)}`],
      );
      expect(rows).toEqual([{ ended: true }]);
      await admin.end();
      await there.record(VIN, await ackFor('cmd_2'));
      await expect
        .poll(() => waiting.delivered.map((d) => d.commandId), { timeout: 10_000 })
        .toEqual(['cmd_1', 'cmd_2']);
      // Found by id (the re-read on timeout), only for its own VIN, never for another car.
      expect(await here.find(VIN, 'cmd_2')).toMatchObject({ commandId: 'cmd_2' });
      expect(await here.find('YV1A22MK3F1900345', 'cmd_2')).toBeNull();
      expect(await here.find(VIN, 'cmd_missing')).toBeNull();
      // A record that does not parse as an ack is never handed on.
      await sql`insert into ack_inbox (command_id, vin, body, received_at) values ('cmd_bad', ${VIN}, '{"type":"ack"}', 0)`.execute(
        a.db,
      );
      expect(await here.find(VIN, 'cmd_bad')).toBeNull();
    } finally {
      await here.close();
      await there.close();
    }
  });
});
