// Owns the map's projection: Web Mercator fitted to the bounding box of what is drawn, and metres to pixels at a
// latitude. Pure, so that a test checks it without a browser.

export interface GeoPoint {
  lat: number;
  lon: number;
  /** A circle around the point (a location's radius): the fit keeps all of it in view. */
  radiusM?: number;
}

export interface Projection {
  x(lon: number): number;
  y(lat: number): number;
  /** How many pixels a distance in metres covers at this latitude. */
  metresToPx(metres: number, lat: number): number;
  /** The fitted box, in Mercator units (0..1 over the world), to tell whether a point still falls inside. */
  contains(p: GeoPoint): boolean;
}

/** WGS 84's equatorial radius: EPSG:3857 projects on a sphere of this radius. */
const EARTH_RADIUS_M = 6_378_137;
const WORLD_M = 2 * Math.PI * EARTH_RADIUS_M;
/** EPSG:3857 stops here: the square world. */
const MAX_LAT = 85.051_128_78;
/** The smallest span shown, about 600 m at the equator, so that one car is not drawn at infinite zoom. */
const MIN_SPAN = 600 / WORLD_M;

const clampLat = (lat: number): number => Math.max(-MAX_LAT, Math.min(MAX_LAT, lat));
export const mercatorX = (lon: number): number => (lon + 180) / 360;
export function mercatorY(lat: number): number {
  const s = Math.sin((clampLat(lat) * Math.PI) / 180);
  return 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI);
}
/** One metre in Mercator units at this latitude (the scale grows by 1 / cos φ away from the equator). */
const unitsPerMetre = (lat: number): number => 1 / (WORLD_M * Math.cos((clampLat(lat) * Math.PI) / 180));

/** Fits every point (and its circle) into width × height pixels less the padding, keeping the aspect ratio. */
export function fitProjection(
  points: Iterable<GeoPoint>,
  width: number,
  height: number,
  padding = 16,
): Projection | null {
  let minX = Number.POSITIVE_INFINITY;
  let minY = Number.POSITIVE_INFINITY;
  let maxX = Number.NEGATIVE_INFINITY;
  let maxY = Number.NEGATIVE_INFINITY;
  for (const p of points) {
    const r = (p.radiusM ?? 0) * unitsPerMetre(p.lat);
    const x = mercatorX(p.lon);
    const y = mercatorY(p.lat);
    if (x - r < minX) minX = x - r;
    if (x + r > maxX) maxX = x + r;
    if (y - r < minY) minY = y - r;
    if (y + r > maxY) maxY = y + r;
  }
  if (!Number.isFinite(minX)) return null;
  const cx = (minX + maxX) / 2;
  const cy = (minY + maxY) / 2;
  const spanX = Math.max(maxX - minX, MIN_SPAN);
  const spanY = Math.max(maxY - minY, MIN_SPAN);
  const innerW = Math.max(1, width - 2 * padding);
  const innerH = Math.max(1, height - 2 * padding);
  const scale = Math.min(innerW / spanX, innerH / spanY);
  // The box is at least what was fitted: cx - spanX / 2 can round to just above minX.
  const box = {
    minX: Math.min(minX, cx - spanX / 2),
    maxX: Math.max(maxX, cx + spanX / 2),
    minY: Math.min(minY, cy - spanY / 2),
    maxY: Math.max(maxY, cy + spanY / 2),
  };
  return {
    x: (lon) => width / 2 + (mercatorX(lon) - cx) * scale,
    y: (lat) => height / 2 + (mercatorY(lat) - cy) * scale,
    metresToPx: (metres, lat) => metres * unitsPerMetre(lat) * scale,
    contains: (p) => {
      const x = mercatorX(p.lon);
      const y = mercatorY(p.lat);
      return x >= box.minX && x <= box.maxX && y >= box.minY && y <= box.maxY;
    },
  };
}
