// Test child: appends decisions to a real store (the StoreConfig given as JSON: a SQLite file or a PostgreSQL schema)
// as fast as it can, printing each commit, until it is killed.

import { findDelivery, insertDelivery } from '../../gateway/store/deliveries.ts';
import { insertLocation } from '../../gateway/store/locations.ts';
import { openStore, type StoreConfig } from '../../gateway/store/store.ts';
import { appendEvent } from '../../gateway/store/timeline.ts';
import { insertVehicle } from '../../gateway/store/vehicles.ts';

const [config, round] = process.argv.slice(2) as [string, string];
// Never outlive the test: when the parent's end of the pipe closes, stop.
process.stdout.on('error', () => process.exit(1));
const store = await openStore(JSON.parse(config) as StoreConfig);
const deliveryId = 'dlv_crash';
if (!(await findDelivery(store.db, deliveryId))) {
  const t = Date.parse('2026-01-01T10:00:00Z');
  await insertVehicle(store.db, {
    vin: '1G1ZE5ST5KF100231',
    make: 'Chevrolet',
    model: 'Malibu',
    year: 2019,
    provider: 'onstar',
    ownerId: 'owner-ada',
    consent: ['unlock', 'lock'],
    linkedAt: t,
    certPem: '',
  });
  await insertLocation(store.db, {
    id: 'loc_1',
    ownerId: 'owner-ada',
    label: 'x',
    kind: 'home',
    lat: 0,
    lon: 0,
    radiusM: 200,
    access: 'public',
    createdAt: t,
  });
  await insertDelivery(store.db, {
    id: deliveryId,
    vin: '1G1ZE5ST5KF100231',
    locationId: 'loc_1',
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    windowStart: t,
    windowEnd: t + 3_600_000,
    status: 'scheduled',
    unlocksUsed: 0,
    createdAt: t,
    updatedAt: t,
    blocked: false,
    parking: null,
    unlockedAt: null,
    unlockedCarAt: null,
    relockedAt: null,
    relockRetryAt: null,
    lockUnconfirmedAt: null,
  });
}
process.stdout.write('ready\n');
// Each decision writes two events in one transaction, as an unlock does (unlock_granted, command_sent).
for (let n = 0; ; n++) {
  await store.db.transaction().execute(async (trx) => {
    const detail = { round: Number(round), n };
    await appendEvent(trx, deliveryId, {
      at: n,
      kind: 'unlock_granted',
      outcome: 'granted',
      code: null,
      detail,
    });
    await appendEvent(trx, deliveryId, { at: n, kind: 'command_sent', outcome: 'info', code: null, detail });
  });
  // Written after the commit returned: a line here is a decision the caller was told is durable.
  process.stdout.write(`committed ${n}\n`);
}
