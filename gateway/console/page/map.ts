// Owns the map: one canvas, no tiles (nothing outside this gateway is reachable), the locations' radii as circles
// and every car as a dot coloured by its state, all drawn in one pass per frame.
import type { ConsoleLocation, ConsoleVehicle } from '../schemas.ts';
import { fitProjection, type GeoPoint, type Projection } from './projection.ts';
import { type CarLook, carLook } from './state.ts';

const COLOURS: Record<CarLook, string> = {
  locked: '#1e8e3e',
  open: '#d93025',
  offline: '#9aa0a6',
  unknown: '#5f6368',
};
const LOOKS = Object.keys(COLOURS) as CarLook[];

export interface MapView {
  /** Draws on the next animation frame (several calls in one frame draw once). */
  draw(): void;
  /** The car nearest to a click, within a few pixels. */
  onSelect(listener: (vin: string) => void): void;
}

export interface MapSource {
  vehicles(): Iterable<ConsoleVehicle>;
  count(): number;
  locations(): readonly ConsoleLocation[];
  selected(): string | null;
}

export function createMap(canvas: HTMLCanvasElement, source: MapSource): MapView {
  const ctx = canvas.getContext('2d', { alpha: false });
  if (!ctx) throw new Error('no 2D canvas');
  let projection: Projection | null = null;
  let fittedFor = '';
  let pending = false;
  let listener: ((vin: string) => void) | null = null;
  /** Where each car was drawn last, for clicks: x, y in CSS pixels, and its VIN. */
  let xs = new Float32Array(0);
  let ys = new Float32Array(0);
  let vins: string[] = [];

  function* points(): Iterable<GeoPoint> {
    for (const v of source.vehicles()) if (v.position) yield v.position;
    yield* source.locations();
  }

  function paint(): void {
    pending = false;
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      fittedFor = '';
    }
    ctx!.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx!.fillStyle = '#f8f9fa';
    ctx!.fillRect(0, 0, width, height);
    // The fit is kept while everything stays inside it, so the map does not jump each time a car moves.
    const key = `${width}x${height}:${source.count()}:${source.locations().length}`;
    const refit = !projection || key !== fittedFor;
    if (refit) {
      projection = fitProjection(points(), width, height, 24);
      fittedFor = key;
    }
    const p = projection;
    if (!p) {
      canvas.dataset.drawn = '0';
      return;
    }

    const areas = new Path2D();
    for (const l of source.locations()) {
      const x = p.x(l.lon);
      const y = p.y(l.lat);
      areas.moveTo(x + p.metresToPx(l.radiusM, l.lat), y);
      areas.arc(x, y, Math.max(2, p.metresToPx(l.radiusM, l.lat)), 0, 2 * Math.PI);
    }
    ctx!.fillStyle = 'rgba(26, 115, 232, 0.10)';
    ctx!.fill(areas);
    ctx!.strokeStyle = 'rgba(26, 115, 232, 0.6)';
    ctx!.lineWidth = 1;
    ctx!.stroke(areas);

    // One pass over the cars: each goes into the path of its colour; then four fills.
    const count = source.count();
    const size = count > 2_000 ? 2 : count > 200 ? 4 : 8;
    const paths: Record<CarLook, Path2D> = {
      locked: new Path2D(),
      open: new Path2D(),
      offline: new Path2D(),
      unknown: new Path2D(),
    };
    if (xs.length !== count) {
      xs = new Float32Array(count);
      ys = new Float32Array(count);
    }
    vins = [];
    let outside = false;
    let selectedAt: [number, number] | null = null;
    const selected = source.selected();
    let i = 0;
    for (const v of source.vehicles()) {
      if (!v.position) continue;
      const x = p.x(v.position.lon);
      const y = p.y(v.position.lat);
      paths[carLook(v)].rect(x - size / 2, y - size / 2, size, size);
      xs[i] = x;
      ys[i] = y;
      vins.push(v.vin);
      i++;
      if (!outside && !p.contains(v.position)) outside = true;
      if (v.vin === selected) selectedAt = [x, y];
    }
    for (const look of LOOKS) {
      ctx!.fillStyle = COLOURS[look];
      ctx!.fill(paths[look]);
    }
    if (selectedAt) {
      ctx!.beginPath();
      ctx!.arc(selectedAt[0], selectedAt[1], size + 6, 0, 2 * Math.PI);
      ctx!.strokeStyle = '#202124';
      ctx!.lineWidth = 2;
      ctx!.stroke();
    }
    canvas.dataset.drawn = String(i);
    // A car moved out of view: fit again on the next frame (a fit just made holds every car).
    if (outside && !refit) {
      fittedFor = '';
      draw();
    }
  }

  function draw(): void {
    if (pending) return;
    pending = true;
    requestAnimationFrame(paint);
  }

  canvas.addEventListener('click', (e) => {
    const rect = canvas.getBoundingClientRect();
    const cx = e.clientX - rect.left;
    const cy = e.clientY - rect.top;
    let best = -1;
    let bestD = 10 * 10;
    for (let j = 0; j < vins.length; j++) {
      const d = ((xs[j] ?? 0) - cx) ** 2 + ((ys[j] ?? 0) - cy) ** 2;
      if (d < bestD) {
        bestD = d;
        best = j;
      }
    }
    const vin = vins[best];
    if (vin && listener) listener(vin);
  });
  new ResizeObserver(() => draw()).observe(canvas.parentElement ?? canvas);

  return {
    draw,
    onSelect(l) {
      listener = l;
    },
  };
}

/** A legend entry's colour, for the HTML legend next to the canvas. */
export const colourOf = (look: CarLook): string => COLOURS[look];
