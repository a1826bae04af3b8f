// Owns the simulated car's behaviour as a pure state machine: (state, event) → (new state, effects); no I/O, no clock.
import type { Action, Doors, Position, StateReport } from '../protocols/messages.ts';

/** How long an unlocked car waits for a lock before it relocks itself. */
export const DEFAULT_FAILSAFE_RELOCK_MS = 120_000;

export type DoorName = keyof Doors;
export const DOOR_NAMES: readonly DoorName[] = ['driver', 'passenger', 'rearLeft', 'rearRight'];
export type Latch = StateReport['trunk'];
export type Ignition = StateReport['ignition'];

export interface CarState {
  readonly locked: boolean;
  readonly doors: Readonly<Doors>;
  readonly trunk: Latch;
  readonly ignition: Ignition;
  readonly position: Readonly<Position>;
  /** Whether the transport holds a broker session; not part of a state report (which is only sent online). */
  readonly online: boolean;
  /** Car time (ms) at which the fail-safe relocks; null when no relock is pending. */
  readonly relockDeadline: number | null;
  /** Sequence number the next state report carries; every report takes one (PROTOCOL.md §3.3). */
  readonly seq: number;
}

export type CarEvent =
  /** A remote command whose token verified; `now` is non-null because verification needs a known clock. */
  | { type: 'remote_command'; action: Action; now: number }
  | { type: 'door'; door: DoorName; to: Latch }
  | { type: 'trunk'; to: Latch }
  | { type: 'ignition'; to: Ignition }
  | { type: 'move'; position: Position }
  | { type: 'connectivity'; online: boolean }
  | { type: 'tick'; now: number | null };

export type CarEffect =
  /** The reported state changed: the transport publishes a state report. */
  | { type: 'report_state' }
  /** The fail-safe locked the car because no lock arrived in time. */
  | { type: 'relocked_by_car' };

export interface Transition {
  state: CarState;
  effects: CarEffect[];
}

export interface CarConfig {
  failsafeRelockMs: number;
}

export function initialCarState(position: Position, seq = 0): CarState {
  return {
    locked: true,
    doors: { driver: 'closed', passenger: 'closed', rearLeft: 'closed', rearRight: 'closed' },
    trunk: 'closed',
    ignition: 'off',
    position: { lat: position.lat, lon: position.lon },
    online: false,
    relockDeadline: null,
    seq,
  };
}

function reportedFieldsDiffer(a: CarState, b: CarState): boolean {
  return (
    a.locked !== b.locked ||
    a.trunk !== b.trunk ||
    a.ignition !== b.ignition ||
    a.position.lat !== b.position.lat ||
    a.position.lon !== b.position.lon ||
    DOOR_NAMES.some((d) => a.doors[d] !== b.doors[d])
  );
}

/** Applies a patch; asks for a state report only when something a report carries has changed. */
function apply(state: CarState, patch: Partial<CarState>, extra: CarEffect[] = []): Transition {
  const next: CarState = { ...state, ...patch };
  return {
    state: next,
    effects: reportedFieldsDiffer(state, next) ? [...extra, { type: 'report_state' }] : extra,
  };
}

/** Takes the sequence number for a state report: seq increases with every report (PROTOCOL.md §3.3). */
export function takeReportSeq(state: CarState): { state: CarState; seq: number } {
  return { state: { ...state, seq: state.seq + 1 }, seq: state.seq };
}

/**
 * Whether a pending fail-safe relock is due. It is due when the deadline has passed, and also when the car
 * no longer knows the time or its clock has gone back before the unlock instant: an unlocked car that cannot
 * prove its window is still open fails closed.
 */
function relockDue(deadline: number, now: number | null, config: CarConfig): boolean {
  if (now === null) return true;
  return now >= deadline || now < deadline - config.failsafeRelockMs;
}

export function transition(state: CarState, event: CarEvent, config: CarConfig): Transition {
  switch (event.type) {
    case 'remote_command':
      if (event.action === 'unlock') {
        // A repeated unlock restarts the fail-safe window; the reported state does not change.
        return apply(state, { locked: false, relockDeadline: event.now + config.failsafeRelockMs });
      }
      // Locking with a door or the trunk open still locks; the report shows the openings as they are.
      return apply(state, { locked: true, relockDeadline: null });
    case 'door':
      return apply(state, { doors: { ...state.doors, [event.door]: event.to } });
    case 'trunk':
      return apply(state, { trunk: event.to });
    case 'ignition':
      return apply(state, { ignition: event.to });
    case 'move':
      return apply(state, { position: { lat: event.position.lat, lon: event.position.lon } });
    case 'connectivity':
      return apply(state, { online: event.online });
    case 'tick':
      if (state.relockDeadline === null || !relockDue(state.relockDeadline, event.now, config)) {
        return { state, effects: [] };
      }
      return apply(state, { locked: true, relockDeadline: null }, [{ type: 'relocked_by_car' }]);
  }
}
