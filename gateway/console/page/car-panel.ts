// Owns the selected car's panel: what the gateway knows of it, what the simulator knows, and the simulator's
// controls (a door, its position, its link, its clock, its battery), each answered with its outcome or code.
import type { ConsoleVehicle, SimulatedCarView, SimulatorAction } from '../schemas.ts';
import { type Api, ApiRefusal } from './api.ts';
import { clock, el, position, yesNo } from './dom.ts';

/** About 500 m north: enough to leave a location's radius. */
const NUDGE_LAT = 0.0045;

interface Control {
  label: string;
  action: (v: ConsoleVehicle) => SimulatorAction | null;
}

const CONTROLS: Control[][] = [
  [
    { label: 'Open driver door', action: () => ({ op: 'door', door: 'driver', to: 'open' }) },
    { label: 'Close driver door', action: () => ({ op: 'door', door: 'driver', to: 'closed' }) },
    { label: 'Ignition on', action: () => ({ op: 'ignition', to: 'on' }) },
    { label: 'Ignition off', action: () => ({ op: 'ignition', to: 'off' }) },
  ],
  [
    {
      label: 'Move 500 m north',
      action: (v) =>
        v.position ? { op: 'move', lat: v.position.lat + NUDGE_LAT, lon: v.position.lon } : null,
    },
    {
      label: 'Move 500 m south',
      action: (v) =>
        v.position ? { op: 'move', lat: v.position.lat - NUDGE_LAT, lon: v.position.lon } : null,
    },
  ],
  [
    { label: 'Online', action: () => ({ op: 'link', mode: 'online' }) },
    { label: 'Asleep', action: () => ({ op: 'link', mode: 'asleep' }) },
    { label: 'Offline', action: () => ({ op: 'link', mode: 'offline' }) },
    { label: 'No signal', action: () => ({ op: 'link', mode: 'no_signal' }) },
  ],
  [
    { label: 'Clock −10 min', action: () => ({ op: 'clock', jumpMs: -600_000 }) },
    { label: 'Clock +10 min', action: () => ({ op: 'clock', jumpMs: 600_000 }) },
    { label: 'Drain battery', action: () => ({ op: 'battery', level: 'low' }) },
    { label: 'Charge battery', action: () => ({ op: 'battery', level: 'ok' }) },
    { label: 'Report now', action: () => ({ op: 'report' }) },
  ],
];

export interface CarPanel {
  show(vehicle: ConsoleVehicle | null): void;
}

const signed = (ms: number): string => `${ms < 0 ? '−' : '+'}${Math.round(Math.abs(ms) / 1000)} s`;

export function createCarPanel(root: HTMLElement, deps: { api: Api; canDrive: boolean }): CarPanel {
  let current: ConsoleVehicle | null = null;
  let simulated: SimulatedCarView | null = null;
  const status = el('p', { class: 'sim-status', attrs: { role: 'status', id: 'sim-status' } });

  const facts = (v: ConsoleVehicle): HTMLElement => {
    const rows: Array<[string, string]> = [
      ['VIN', v.vin],
      ['Car', `${v.year} ${v.make} ${v.model}`],
      ['Provider', v.provider],
      ['Owner', v.ownerId],
      ['Online', v.online ? 'online' : 'offline'],
      ['Lock', yesNo(v.locked, 'locked', 'open')],
      ['Doors', yesNo(v.doorsOpen, 'open', 'shut')],
      ['Ignition', v.ignition ?? '—'],
      ['Position', position(v.position)],
      ['Last report', clock(v.lastSeen)],
    ];
    if (v.blocked) rows.push(['Access', 'blocked by the owner']);
    if (simulated?.faults) {
      const c = simulated.faults.clock;
      rows.push(['Simulator link', simulated.faults.link]);
      rows.push(['12 V battery', simulated.faults.battery]);
      rows.push(['Car clock', c.known ? `${signed(c.offsetMs)}, drift ${c.driftPpm} ppm` : 'lost']);
    }
    return el(
      'dl',
      { class: 'facts' },
      ...rows.flatMap(([k, val]) => [el('dt', { text: k }), el('dd', { text: val })]),
    );
  };

  async function drive(action: SimulatorAction): Promise<void> {
    if (!current) return;
    const vin = current.vin;
    status.textContent = `${action.op}…`;
    status.dataset.outcome = 'pending';
    try {
      simulated = (await deps.api.drive(vin, action)).car;
      status.textContent = `${action.op}: done`;
      status.dataset.outcome = 'ok';
    } catch (err) {
      status.textContent =
        err instanceof ApiRefusal
          ? `${action.op}: ${err.code} — ${err.message}`
          : `${action.op}: ${String(err)}`;
      status.dataset.outcome = 'refused';
    }
    if (current?.vin === vin) render();
  }

  function render(): void {
    const v = current;
    if (!v) {
      root.replaceChildren(el('p', { class: 'empty', text: 'Click a car on the map or in the list.' }));
      return;
    }
    const controls = deps.canDrive
      ? el(
          'div',
          { class: 'sim-controls' },
          el('h3', { text: 'Drive the simulated car' }),
          ...CONTROLS.map((group) =>
            el(
              'div',
              { class: 'sim-group' },
              ...group.map((c) => {
                const button = el('button', { text: c.label, attrs: { type: 'button' } });
                const action = c.action(v);
                if (!action) button.disabled = true;
                else button.addEventListener('click', () => void drive(action));
                return button;
              }),
            ),
          ),
          status,
        )
      : null;
    root.replaceChildren(facts(v), controls ?? '');
  }

  return {
    show(vehicle) {
      const changedCar = vehicle?.vin !== current?.vin;
      current = vehicle;
      if (changedCar) {
        simulated = null;
        status.textContent = '';
        if (vehicle && deps.canDrive) {
          deps.api.simulated(vehicle.vin).then(
            (car) => {
              if (current?.vin !== vehicle.vin) return;
              simulated = car;
              render();
            },
            () => undefined,
          );
        }
      }
      render();
    },
  };
}
