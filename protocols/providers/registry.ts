// Owns the provider registry: one adapter per provider id of the catalog, looked up by id (PROVIDERS.md §5).
import type { ProviderId } from '../catalog.ts';
import type { ProviderAdapter } from './adapter.ts';
import { ProviderError, type RecoveredIds } from './errors.ts';
import { onstar } from './onstar.ts';
import { volvoOnCall } from './volvo-on-call.ts';

/** Typed by ProviderId, so a provider added to the catalog's enum does not compile until it has an adapter. */
export const PROVIDERS: Readonly<Record<ProviderId, ProviderAdapter>> = {
  onstar,
  'volvo-on-call': volvoOnCall,
};

/** The adapter for a provider id; PROVIDER_UNKNOWN for anything else (ids come from the store as strings). */
export function providerAdapter(id: string): ProviderAdapter {
  const adapter = Object.hasOwn(PROVIDERS, id) ? PROVIDERS[id as ProviderId] : undefined;
  if (!adapter) throw new ProviderError('PROVIDER_UNKNOWN', `no adapter for provider "${id}"`);
  return adapter;
}

/** Which registered dialect a parsed JSON object is in, if any. */
export function dialectOf(json: Record<string, unknown>): ProviderAdapter | null {
  return Object.values(PROVIDERS).find((a) => a.recognises(json)) ?? null;
}

/** A command's ids read through whichever registered dialect the object is in: for refusing a foreign one. */
export function recoverIdsAnyDialect(json: Record<string, unknown>): RecoveredIds | null {
  return dialectOf(json)?.recoverIds(json) ?? null;
}
