// Owns the canonical JSON text signed data is hashed over: RFC 8785 (JCS) for the values the protocol uses.

/**
 * Serialises like RFC 8785: object members sorted by UTF-16 code units, no whitespace, strings and numbers
 * as ECMAScript's JSON.stringify writes them (RFC 8785 §3.2.2.2-3 adopt exactly that). Members whose value is
 * undefined are left out, as an absent optional member. Non-finite numbers have no JSON form and throw.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('canonicalJson: non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const members = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`);
    return `{${members.join(',')}}`;
  }
  throw new TypeError(`canonicalJson: ${typeof value} has no JSON form`);
}
