// Test harness: the gateway's services on a real store (a SQLite file, or a PostgreSQL schema), wired to a pure
// simulated car by an in-process link.
import { createPrivateKey, createPublicKey, type KeyObject, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { type DevPkiPaths, ensureDevPki } from '../../certs/index.ts';
import { createDeliveryService, type DeliveryService } from '../../gateway/deliveries/service.ts';
import { openStore, type Store } from '../../gateway/store/store.ts';
import { pinVehicleCertificate } from '../../gateway/vehicles/certificates.ts';
import { createKeyRotation, type KeyRotation } from '../../gateway/vehicles/key-rotation.ts';
import type { VehicleLink } from '../../gateway/vehicles/link.ts';
import { createSigningKeyRing, type SigningKeyRing } from '../../gateway/vehicles/signing-keys.ts';
import { createVehicleService, type VehicleService } from '../../gateway/vehicles/vehicles.ts';
import { type Ack, type CommandMessage, encodeMessage, trustedJwkFor } from '../../protocols/index.ts';
import { loadSeeds } from '../../seeds/index.ts';
import { type CarRig, carRig } from './car-rig.ts';
import { freshPgSchema } from './pg-schema.ts';
import { type Dialect, testDialect } from './temp-store.ts';

export const LOOP_NOW = Date.parse('2026-01-01T12:00:00Z');
export const CAR_VIN = '1G1ZE5ST5KF100231';
/** A second enrolled car: its key is "another car's key". */
export const OTHER_CAR_VIN = '1GNSKBKC3FR200114';

export interface Loopback {
  store: Store;
  pki: DevPkiPaths;
  vehicles: VehicleService;
  deliveries: DeliveryService;
  signingKeys: SigningKeyRing;
  rotation: KeyRotation;
  rig: CarRig;
  /** The private key certified for OTHER_CAR_VIN. */
  otherCarKey: KeyObject;
  /** Every command the gateway sent, in order. */
  sent: CommandMessage[];
  /**
   * Rewrites the car's ack before the gateway sees it (a compromised broker, a stolen car key); returning null drops
   * it. `deliver: false` drops the command itself on the way to the car.
   */
  network: {
    tamper: ((ack: Ack, command: CommandMessage) => Ack | null) | null;
    deliver: boolean;
    /** Awaited after the car handled a command and before its ack reaches the gateway (to interleave another call). */
    meanwhile: (() => Promise<unknown>) | null;
  };
  setTime(ms: number): void;
  close(): Promise<void>;
}

export async function startLoopback(options: { dialect?: Dialect } = {}): Promise<Loopback> {
  const dir = mkdtempSync(join(tmpdir(), 'curbside-loopback-'));
  let time = LOOP_NOW;
  const now = () => time;
  const pki = await ensureDevPki({
    dir: join(dir, 'pki'),
    vins: [CAR_VIN, OTHER_CAR_VIN],
    now: () => new Date(LOOP_NOW),
  });
  const read = (path: string) => readFileSync(path, 'utf8');
  const pg = (options.dialect ?? testDialect()) === 'postgres' ? await freshPgSchema() : null;
  const store = await openStore(pg?.config ?? { kind: 'sqlite', file: join(dir, 'gateway.sqlite') });
  const gatewayKey = createPrivateKey(read(pki.tokenSigningKey));
  const signingKeys = await createSigningKeyRing(gatewayKey);
  const rig = carRig({
    vin: CAR_VIN,
    now: LOOP_NOW,
    trustedKeys: { keys: [await trustedJwkFor(createPublicKey(gatewayKey))] },
    signingKey: createPrivateKey(read(pki.vehicleKey(CAR_VIN))),
  });
  const sent: CommandMessage[] = [];
  const network: Loopback['network'] = { tamper: null, deliver: true, meanwhile: null };
  const link: VehicleLink = {
    connected: () => true,
    async send(vin, command) {
      sent.push(command);
      if (vin !== CAR_VIN || !network.deliver) return { kind: 'timeout' };
      rig.setTime(time);
      const { ack } = await rig.car.handleCommand(Buffer.from(encodeMessage(command)));
      const meanwhile = network.meanwhile;
      network.meanwhile = null;
      await meanwhile?.();
      const seen = ack && network.tamper ? network.tamper(ack, command) : ack;
      return seen ? { kind: 'ack', ack: seen } : { kind: 'timeout' };
    },
    async query(vin) {
      if (vin !== CAR_VIN || !network.deliver) return { kind: 'timeout' };
      rig.setTime(time);
      const report = rig.car.stateReport(randomUUID());
      // As the real link does: every state message is recorded before the query is answered.
      await vehicles.observe(vin, report);
      await deliveries.observe(vin, report);
      return { kind: 'state', report };
    },
    close: async () => {},
  };
  const logger = pino({ level: 'silent' });
  let serial = 0;
  const newId = () => `loop${++serial}`;
  const vehicles = createVehicleService({
    db: store.db,
    write: store.write,
    catalog: loadSeeds().catalog,
    now,
    newId,
    maxRadiusM: 1_000,
    certificateFor: (vin, at) => {
      let pem: string | null = null;
      try {
        pem = read(pki.vehicleCert(vin));
      } catch {
        pem = null;
      }
      return pinVehicleCertificate({ pem, caPem: read(pki.caCert), vin, now: at });
    },
  });
  const deliveries = createDeliveryService({
    db: store.db,
    write: store.write,
    link: () => link,
    signer: { keys: signingKeys, issuer: 'urn:gateway:gateway' },
    policy: {
      maxWindowMs: 86_400_000,
      defaultWindowMs: 4 * 3_600_000,
      maxUnlocks: 3,
      tokenTtlS: 60,
      commandTimeoutMs: 1_000,
      relockAfterMs: 90_000,
      parkingToleranceM: 30,
    },
    now,
    newId,
    logger,
  });
  const rotation = createKeyRotation({
    db: store.db,
    link: () => link,
    keys: signingKeys,
    issuer: 'urn:gateway:gateway',
    commandTimeoutMs: 1_000,
    now,
    newId,
    logger,
  });
  return {
    store,
    pki,
    vehicles,
    deliveries,
    signingKeys,
    rotation,
    rig,
    otherCarKey: createPrivateKey(read(pki.vehicleKey(OTHER_CAR_VIN))),
    sent,
    network,
    setTime(ms) {
      time = ms;
    },
    async close() {
      await store.close();
      await pg?.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Links the car, adds a location and schedules a delivery whose window is open; returns its id. */
export async function scheduleDelivery(loop: Loopback): Promise<string> {
  if ((await loop.vehicles.list()).length === 0) {
    await loop.vehicles.link({
      vin: CAR_VIN,
      make: 'Chevrolet',
      model: 'Malibu',
      year: 2019,
      provider: 'onstar',
      ownerId: 'owner-ada',
      consent: ['unlock', 'lock'],
    });
  }
  const location = await loop.vehicles.addLocation({
    ownerId: 'owner-ada',
    label: 'Office lot',
    kind: 'workplace',
    lat: 47.6114,
    lon: -122.3381,
    radiusM: 200,
    access: 'public',
  });
  const d = await loop.deliveries.schedule({
    vin: CAR_VIN,
    locationId: location.id,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: LOOP_NOW - 60_000, end: LOOP_NOW + 3_600_000 },
  });
  // Unlocks need the car's own confirmation that it is parked at the location (PROTOCOL.md §3.5).
  await loop.deliveries.confirmParking(d.id);
  return d.id;
}

export const unlockInput = {
  driverId: 'driver-7',
  position: { lat: 47.6116, lon: -122.3381 },
  packageId: 'pkg-1',
};
