// Owns what the verifier prints about a verified log: per delivery, who authorized what and when, and relocks.
import type { AuditEntry, VerifiedLog } from '../protocols/audit/index.ts';

export interface Unlock {
  deliveryId: string;
  /** The vehicle_unlocked entry: the car confirmed it opened. */
  unlockedAt: AuditEntry;
  /** The first later car-confirmed lock of the same delivery, if any. */
  relockedAt: AuditEntry | null;
}

export interface Report {
  lines: string[];
  unlocks: Unlock[];
}

const iso = (ms: unknown): string => (typeof ms === 'number' ? new Date(ms).toISOString() : '?');
const str = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' ? String(v) : '?');

/** A lock the car itself reported as done: the ack of a lock command or a relock on its own, saying locked. */
const carConfirmedLock = (e: AuditEntry): boolean =>
  (e.kind === 'vehicle_locked' || e.kind === 'vehicle_relocked') && e.detail.locked !== false;

/** One line for an entry, in a reviewer's words. */
export function describe(e: AuditEntry): string {
  const d = e.detail;
  const refused = e.code ? `: ${e.code}` : '';
  switch (e.kind) {
    case 'vehicle_linked':
      return `owner ${str(d.ownerId)} linked ${str(d.vin)} and consented to ${Array.isArray(d.consent) ? d.consent.join(', ') : '?'}`;
    case 'location_registered':
      return `owner ${str(d.ownerId)} registered place ${str(d.locationId)} (${str(d.lat)}, ${str(d.lon)}, ${str(d.radiusM)} m)`;
    case 'api_key_used':
      return `API key ${str(d.keyId)} (scope ${str(d.scope)}) called ${str(d.method)} ${str(d.route)}`;
    case 'delivery_scheduled': {
      const w = (d.window ?? {}) as { start?: unknown; end?: unknown };
      return `scheduled into ${str(d.vin)} at ${str(d.locationId)} for driver ${str(d.driverId)}, window ${iso(w.start)} .. ${iso(w.end)}`;
    }
    case 'unlock_requested':
    case 'lock_requested':
      return `${e.kind === 'unlock_requested' ? 'unlock' : 'lock'} by driver ${str(d.driverId)} REFUSED${refused}`;
    case 'unlock_granted':
      return `unlock AUTHORIZED for driver ${str(d.driverId)} with package ${str(d.packageId)}, ${str(d.distanceM)} m from the place; checks passed: ${Array.isArray(d.checks) ? d.checks.join(', ') : '?'}`;
    case 'lock_granted':
      return `lock authorized for driver ${str(d.driverId)}`;
    case 'command_sent':
      return `${str(d.action)} token minted (kid ${str(d.kid)}, jti ${str(d.jti)}, SHA-256 ${str(d.tokenSha256)}, expires ${iso(typeof d.exp === 'number' ? d.exp * 1000 : null)}), sent as ${str(d.commandId)}`;
    case 'vehicle_unlocked':
      return `car confirmed UNLOCKED (${str(d.commandId)}, car clock ${iso(d.carTime)})`;
    case 'vehicle_locked':
    case 'vehicle_relocked':
      return d.locked === false
        ? `car acked the lock but reports UNLOCKED (${str(d.commandId)})`
        : `car confirmed LOCKED${e.kind === 'vehicle_relocked' ? ' on its own' : ''} (${str(d.commandId)}, car clock ${iso(d.carTime)})`;
    case 'vehicle_refused':
      return `car REFUSED the ${str(d.action)} command${refused}`;
    case 'command_timeout':
      return `no ack for ${str(d.action)} within ${str(d.waitedMs)} ms${refused}: the car may have acted`;
    case 'delivery_completed':
      return 'delivery completed';
    default:
      return `${e.kind} ${e.outcome}${refused} ${JSON.stringify(d)}`;
  }
}

const line = (e: AuditEntry): string => `  ${iso(e.at)}  #${String(e.index).padEnd(5)} ${describe(e)}`;

/** Groups a verified log by delivery and pairs each confirmed unlock with the car-confirmed lock after it. */
export function reportLog(log: VerifiedLog): Report {
  const byDelivery = new Map<string, AuditEntry[]>();
  const outside: AuditEntry[] = [];
  for (const e of log.entries) {
    if (e.deliveryId === null) outside.push(e);
    else byDelivery.set(e.deliveryId, [...(byDelivery.get(e.deliveryId) ?? []), e]);
  }
  const lines: string[] = [];
  const unlocks: Unlock[] = [];
  for (const [deliveryId, entries] of byDelivery) {
    lines.push('', `Delivery ${deliveryId}`);
    for (const e of entries) lines.push(line(e));
    const mine: Unlock[] = [];
    for (const e of entries) {
      if (e.kind === 'vehicle_unlocked') mine.push({ deliveryId, unlockedAt: e, relockedAt: null });
      else if (carConfirmedLock(e)) for (const u of mine) u.relockedAt ??= e;
    }
    for (const u of mine) {
      const relock = u.relockedAt;
      lines.push(
        relock
          ? `  relock: unlock #${u.unlockedAt.index} was followed by a car-confirmed lock, #${relock.index}, ${((relock.at - u.unlockedAt.at) / 1000).toFixed(1)} s later`
          : `  relock: unlock #${u.unlockedAt.index} was NOT followed by a car-confirmed lock in this log`,
      );
    }
    unlocks.push(...mine);
  }
  if (outside.length > 0) {
    lines.push('', 'Outside any delivery');
    for (const e of outside) lines.push(line(e));
  }
  const relocked = unlocks.filter((u) => u.relockedAt).length;
  lines.push(
    '',
    `Summary: ${byDelivery.size} deliveries; ${unlocks.length} unlocks confirmed by cars, ${relocked} followed by a car-confirmed relock, ${unlocks.length - relocked} not.`,
  );
  return { lines, unlocks };
}
