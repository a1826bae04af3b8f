// Owns what the page knows: the lists as loaded, with each live frame merged in unless it is older than what is
// already there (a frame read before the list can arrive after it).
import type { ConsoleDelivery, ConsoleLocation, ConsoleVehicle, ConsoleWebhookDelivery } from '../schemas.ts';

const lastSeq = (d: ConsoleDelivery): number => d.timeline.at(-1)?.seq ?? 0;

/** What changed in one merge, so that only that part of the page is drawn again. */
export interface Changes {
  vehicles: boolean;
  /** Which cars changed (the selected car's panel is drawn again only when it did). */
  vins: Set<string>;
  /** A location came (the map draws its radius). */
  locations: boolean;
  /** The order of the car list changed (a car came or went), not only a car in it. */
  vehicleSet: boolean;
  deliveries: Set<string>;
  webhookDeliveries: Set<string>;
}

export const noChanges = (): Changes => ({
  vehicles: false,
  vins: new Set(),
  locations: false,
  vehicleSet: false,
  deliveries: new Set(),
  webhookDeliveries: new Set(),
});

export function createState() {
  const vehicles = new Map<string, ConsoleVehicle>();
  /** VINs in list order (sorted), rebuilt only when a car comes or goes. */
  let order: string[] = [];
  const locations = new Map<string, ConsoleLocation>();
  /** The owners' locations and those of the deliveries (a carrier sees no owner's list), built when asked. */
  let places: ConsoleLocation[] | null = null;
  const deliveries = new Map<string, ConsoleDelivery>();
  const webhookDeliveries = new Map<string, ConsoleWebhookDelivery>();

  const reorder = (): void => {
    order = [...vehicles.keys()].sort();
  };

  return {
    vehicles,
    deliveries,
    webhookDeliveries,
    order: (): readonly string[] => order,
    locations(): readonly ConsoleLocation[] {
      if (!places) {
        const all = new Map(locations);
        for (const d of deliveries.values())
          if (d.location && !all.has(d.location.id)) all.set(d.location.id, { ownerId: '', ...d.location });
        places = [...all.values()];
      }
      return places;
    },

    replaceVehicles(list: ConsoleVehicle[], locs: ConsoleLocation[]): void {
      vehicles.clear();
      for (const v of list) vehicles.set(v.vin, v);
      locations.clear();
      for (const l of locs) locations.set(l.id, l);
      places = null;
      reorder();
    },
    replaceDeliveries(list: ConsoleDelivery[]): void {
      deliveries.clear();
      for (const d of list) deliveries.set(d.id, d);
      places = null;
    },
    replaceWebhookDeliveries(list: ConsoleWebhookDelivery[]): void {
      webhookDeliveries.clear();
      for (const w of list) webhookDeliveries.set(w.id, w);
    },

    /** Applies one frame of the feed; unknown frame types are ignored. */
    apply(type: string, data: unknown, changes: Changes): void {
      if (type === 'vehicle') {
        const v = data as ConsoleVehicle;
        const had = vehicles.get(v.vin);
        if (had?.lastSeen && v.lastSeen && v.lastSeen < had.lastSeen) return;
        vehicles.set(v.vin, v);
        changes.vehicles = true;
        changes.vins.add(v.vin);
        if (!had) {
          changes.vehicleSet = true;
          reorder();
        }
      } else if (type === 'vehicleRemoved') {
        const { vin } = data as { vin: string };
        if (vehicles.delete(vin)) {
          changes.vehicles = true;
          changes.vins.add(vin);
          changes.vehicleSet = true;
          reorder();
        }
      } else if (type === 'location') {
        const l = data as ConsoleLocation;
        locations.set(l.id, l);
        places = null;
        changes.locations = true;
      } else if (type === 'delivery') {
        const d = data as ConsoleDelivery;
        const had = deliveries.get(d.id);
        if (had && (lastSeq(d) < lastSeq(had) || d.updatedAt < had.updatedAt)) return;
        deliveries.set(d.id, d);
        changes.deliveries.add(d.id);
        if (d.location && !had) {
          places = null;
          changes.locations = true;
        }
      } else if (type === 'webhookDelivery') {
        const w = data as ConsoleWebhookDelivery;
        const had = webhookDeliveries.get(w.id);
        if (had && w.attempts < had.attempts) return;
        webhookDeliveries.set(w.id, w);
        changes.webhookDeliveries.add(w.id);
      }
    },
  };
}

export type State = ReturnType<typeof createState>;

/** How a car is drawn: open wins over everything, since an open car is what a person watches for. */
export type CarLook = 'open' | 'locked' | 'offline' | 'unknown';
export function carLook(v: ConsoleVehicle): CarLook {
  if (v.locked === false) return 'open';
  if (!v.online) return 'offline';
  return v.locked === true ? 'locked' : 'unknown';
}
