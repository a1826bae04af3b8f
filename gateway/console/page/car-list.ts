// Owns the car list: virtualised, so only the rows in view (and a few around them) exist in the DOM, whatever the
// number of cars; rows are reused as the list scrolls.
import type { ConsoleVehicle } from '../schemas.ts';
import { el, position, yesNo } from './dom.ts';
import { carLook } from './state.ts';

export const ROW_HEIGHT = 28;
const OVERSCAN = 6;

export interface CarList {
  /** Sets the rows (VINs in order) and draws the visible ones on the next frame. */
  show(vins: readonly string[]): void;
  /** Draws the visible rows again on the next frame (a car in them changed). */
  refresh(): void;
  onSelect(listener: (vin: string) => void): void;
}

export interface CarListSource {
  vehicle(vin: string): ConsoleVehicle | undefined;
  selected(): string | null;
}

const CELLS = ['state', 'vin', 'car', 'provider', 'online', 'lock', 'doors', 'ignition', 'position'] as const;

export function createCarList(viewport: HTMLElement, source: CarListSource): CarList {
  const spacer = el('div', { class: 'vlist-spacer' });
  viewport.append(spacer);
  const pool: HTMLElement[] = [];
  let vins: readonly string[] = [];
  let pending = false;
  let listener: ((vin: string) => void) | null = null;

  const makeRow = (): HTMLElement => {
    const row = el('div', { class: 'car-row' });
    for (const c of CELLS) row.append(el('span', { class: `c-${c}` }));
    row.addEventListener('click', () => {
      const vin = row.dataset.vin;
      if (vin && listener) listener(vin);
    });
    spacer.append(row);
    return row;
  };

  function fill(row: HTMLElement, v: ConsoleVehicle, index: number): void {
    const look = carLook(v);
    row.style.transform = `translateY(${index * ROW_HEIGHT}px)`;
    row.dataset.vin = v.vin;
    row.dataset.state = look;
    row.dataset.doors = yesNo(v.doorsOpen, 'open', 'shut');
    row.classList.toggle('selected', source.selected() === v.vin);
    const texts = [
      '●',
      v.vin,
      `${v.year} ${v.make} ${v.model}`,
      v.provider,
      v.online ? 'online' : 'offline',
      yesNo(v.locked, 'locked', 'open'),
      yesNo(v.doorsOpen, 'open', 'shut'),
      v.ignition ?? '—',
      position(v.position),
    ];
    const cells = row.children;
    for (let i = 0; i < texts.length; i++) {
      const cell = cells[i] as HTMLElement;
      const text = texts[i] ?? '';
      if (cell.textContent !== text) cell.textContent = text;
    }
  }

  function paint(): void {
    pending = false;
    spacer.style.height = `${vins.length * ROW_HEIGHT}px`;
    const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(
      vins.length,
      Math.ceil((viewport.scrollTop + viewport.clientHeight) / ROW_HEIGHT) + OVERSCAN,
    );
    let used = 0;
    for (let i = first; i < last; i++) {
      const vin = vins[i];
      const v = vin === undefined ? undefined : source.vehicle(vin);
      if (!v) continue;
      const row = pool[used] ?? makeRow();
      pool[used] = row;
      row.hidden = false;
      fill(row, v, i);
      used++;
    }
    for (let i = used; i < pool.length; i++) {
      const row = pool[i] as HTMLElement;
      row.hidden = true;
      delete row.dataset.vin;
      delete row.dataset.state;
      delete row.dataset.doors;
    }
    viewport.dataset.rows = String(used);
  }

  function refresh(): void {
    if (pending) return;
    pending = true;
    requestAnimationFrame(paint);
  }

  viewport.addEventListener('scroll', refresh, { passive: true });
  new ResizeObserver(refresh).observe(viewport);

  return {
    show(next) {
      vins = next;
      refresh();
    },
    refresh,
    onSelect(l) {
      listener = l;
    },
  };
}
