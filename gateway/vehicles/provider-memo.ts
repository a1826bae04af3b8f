// Owns remembering each VIN's provider, the dialect every message to or from that car is encoded in.

/** Most VINs remembered by providerMemo; beyond it the memo starts again. */
const PROVIDER_MEMO_SIZE = 100_000;

/**
 * Remembers each VIN's provider: every message to or from a car is encoded in its provider's dialect, and a
 * VIN's provider never changes (linking checks the make against the VIN's WMI, and the make against the one
 * provider the catalog has for it). Only found providers are remembered: a VIN linked later is found then.
 */
export function providerMemo(
  lookup: (vin: string) => Promise<string | null>,
  size = PROVIDER_MEMO_SIZE,
): (vin: string) => Promise<string | null> {
  const known = new Map<string, string>();
  return async (vin) => {
    const hit = known.get(vin);
    if (hit !== undefined) return hit;
    const provider = await lookup(vin);
    if (provider !== null) {
      if (known.size >= size) known.clear();
      known.set(vin, provider);
    }
    return provider;
  };
}
