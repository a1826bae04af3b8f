// Owns the provider adapter contract and the decode pipeline every dialect shares (PROVIDERS.md §2-§3).
import { z } from 'zod';
import type { ProviderId } from '../catalog.ts';
import {
  type Ack,
  AckSchema,
  MAX_PAYLOAD_BYTES,
  type StateMessage,
  StateMessageSchema,
  type ToCar,
  ToCarSchema,
} from '../messages.ts';
import { parseStrictJson } from '../strict-json.ts';
import { ProviderError, type RecoveredIds } from './errors.ts';

/** Dialect messages nest one level deeper than canonical ones (an envelope, an extension object). */
export const DIALECT_MAX_DEPTH = 6;

/** Names a canonical member may have when it travels in a dialect's extension object. */
const ExtensionName = z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,31}$/);
export const ExtensionsSchema = z.record(ExtensionName, z.unknown());
export type Extensions = z.infer<typeof ExtensionsSchema>;

/**
 * One message family in one dialect: a zod schema of the wire shape and the two pure mappings. `fromWire`
 * returns a canonical object that the pipeline then validates against the canonical schema, so an adapter
 * never decides alone what a valid canonical message is.
 */
export interface Codec<C, W> {
  wire: z.ZodType<W>;
  toWire(canonical: C): W;
  fromWire(wire: W): Record<string, unknown>;
}

/** What a provider module defines; `defineAdapter` turns it into a ProviderAdapter. */
export interface DialectSpec<TC, A, S> {
  id: ProviderId;
  name: string;
  /** Whether a JSON object carries this dialect's marker (its envelope member and version). */
  recognises(json: Record<string, unknown>): boolean;
  /** Gateway → car: commands and state queries, on vehicles/{VIN}/commands. */
  toCar: Codec<ToCar, TC>;
  /** Car → gateway, on vehicles/{VIN}/acks. */
  ack: Codec<Ack, A>;
  /** Car → gateway, on vehicles/{VIN}/state: state reports and the presence will. */
  state: Codec<StateMessage, S>;
  /** Reads a command's ids from a JSON object of this dialect, however damaged the rest is; null if unusable. */
  recoverIds(json: Record<string, unknown>): RecoveredIds | null;
}

/**
 * A connected-car provider's dialect. Both ends translate at their transport edge only: the gateway's
 * vehicle link and the simulator's transport; everything inside speaks the canonical messages.
 */
export interface ProviderAdapter {
  readonly id: ProviderId;
  readonly name: string;
  /** Gateway side: the canonical command or query, in this dialect. */
  encodeToCar(message: ToCar): string;
  /** Gateway side. Throws ProviderError. */
  decodeAck(payload: Buffer | string): Ack;
  /** Gateway side. Throws ProviderError. */
  decodeState(payload: Buffer | string): StateMessage;
  /** Car side. Throws ProviderError, with `ids` when the refusal can still be acked. */
  decodeToCar(payload: Buffer | string): ToCar;
  /** Car side. */
  encodeAck(ack: Ack): string;
  /** Car side. */
  encodeState(message: StateMessage): string;
  /** Reads a command's ids from a parsed JSON object of this dialect; null when it is not one. */
  recoverIds(json: Record<string, unknown>): RecoveredIds | null;
  /** Whether a parsed JSON object is in this dialect. */
  recognises(json: Record<string, unknown>): boolean;
  /** The pure mappings, for tests of losslessness. */
  readonly codecs: {
    toCar: Codec<ToCar, unknown>;
    ack: Codec<Ack, unknown>;
    state: Codec<StateMessage, unknown>;
  };
}

/**
 * The canonical members every adapter translates into its own fields. Written out rather than read from the
 * schemas on purpose: a member later added to a canonical schema (the car's `sig` on an ack, say) is not in
 * these sets, so it travels in the dialect's extension object unchanged until an adapter maps it.
 */
export const MAPPED_MEMBERS = {
  command: new Set(['v', 'type', 'commandId', 'deliveryId', 'action', 'token']),
  query: new Set(['v', 'type', 'nonce']),
  ack: new Set([
    'v',
    'type',
    'vin',
    'commandId',
    'deliveryId',
    'action',
    'outcome',
    'reason',
    'locked',
    'at',
  ]),
  report: new Set([
    'v',
    'type',
    'vin',
    'seq',
    'online',
    'locked',
    'doors',
    'trunk',
    'ignition',
    'position',
    'at',
    'nonce',
  ]),
  presence: new Set(['v', 'type', 'vin', 'online']),
} as const;

/** Size, then strict JSON (no duplicate members, bounded depth), then an object: the same order as §3. */
export function readJsonObject(payload: Buffer | string): Record<string, unknown> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > MAX_PAYLOAD_BYTES) throw new ProviderError('MESSAGE_TOO_LARGE', `payload of ${size} bytes`);
  let value: unknown;
  try {
    value = parseStrictJson(payload.toString(), DIALECT_MAX_DEPTH);
  } catch (err) {
    throw new ProviderError('MESSAGE_NOT_JSON', `payload is not strict JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProviderError('DIALECT_MISMATCH', 'payload is not a JSON object');
  }
  return value as Record<string, unknown>;
}

/**
 * Splits a canonical message into the members an adapter maps and the rest, which travel unchanged in the
 * dialect's extension object (a `sig` added to the canonical ack, say). Undefined for none, so the wire
 * carries no empty object.
 */
export function extensionsOf(canonical: object, mapped: ReadonlySet<string>): Extensions | undefined {
  const extra = Object.entries(canonical).filter(([k, v]) => !mapped.has(k) && v !== undefined);
  if (extra.length === 0) return undefined;
  const ext: Extensions = {};
  for (const [k, v] of extra) {
    if (!ExtensionName.safeParse(k).success) {
      throw new ProviderError('MESSAGE_INVALID', `canonical member "${k}" cannot travel as an extension`);
    }
    Object.defineProperty(ext, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return ext;
}

/** Puts extension members back; one that names a mapped member would override a translated value: refused. */
export function withExtensions(
  canonical: Record<string, unknown>,
  ext: Extensions | undefined,
  mapped: ReadonlySet<string>,
): Record<string, unknown> {
  if (!ext) return canonical;
  const out: Record<string, unknown> = { ...canonical };
  for (const [k, v] of Object.entries(ext)) {
    if (mapped.has(k) || Object.hasOwn(out, k)) {
      throw new ProviderError('MESSAGE_INVALID', `extension "${k}" shadows a mapped member`);
    }
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Drops undefined members, so an optional canonical member that is absent stays absent after a round trip. */
export function compact<T extends Record<string, unknown>>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function decodeWith<C, W>(
  spec: DialectSpec<unknown, unknown, unknown>,
  codec: Codec<C, W>,
  canonical: z.ZodType<C>,
  payload: Buffer | string,
  what: string,
): C {
  const json = readJsonObject(payload);
  if (!spec.recognises(json)) throw new ProviderError('DIALECT_MISMATCH', `not a ${spec.name} ${what}`);
  const wire = codec.wire.safeParse(json);
  if (!wire.success) {
    const issue = wire.error.issues[0];
    throw new ProviderError(
      'MESSAGE_INVALID',
      `${spec.name} ${what}: ${issue?.path.join('.')} ${issue?.message}`,
    );
  }
  const parsed = canonical.safeParse(codec.fromWire(wire.data));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ProviderError('MESSAGE_INVALID', `${what}: ${issue?.path.join('.')} ${issue?.message}`);
  }
  return parsed.data;
}

export function defineAdapter<TC, A, S>(spec: DialectSpec<TC, A, S>): ProviderAdapter {
  const s = spec as DialectSpec<unknown, unknown, unknown>;
  return {
    id: spec.id,
    name: spec.name,
    recognises: spec.recognises,
    recoverIds: spec.recoverIds,
    codecs: s,
    encodeToCar: (m) => JSON.stringify(spec.toCar.toWire(m)),
    encodeAck: (a) => JSON.stringify(spec.ack.toWire(a)),
    encodeState: (m) => JSON.stringify(spec.state.toWire(m)),
    decodeAck: (p) => decodeWith(s, s.ack, AckSchema, p, 'ack'),
    decodeState: (p) => decodeWith(s, s.state, StateMessageSchema, p, 'state message'),
    decodeToCar(payload) {
      try {
        return decodeWith(s, s.toCar, ToCarSchema, payload, 'command');
      } catch (err) {
        // A refusal that names the command can be acked; recover its ids from the payload if they are usable.
        if (!(err instanceof ProviderError) || err.ids || err.code === 'DIALECT_MISMATCH') throw err;
        if (err.code === 'MESSAGE_TOO_LARGE' || err.code === 'MESSAGE_NOT_JSON') throw err;
        const ids = spec.recoverIds(readJsonObject(payload));
        throw ids ? new ProviderError(err.code, err.message, ids) : err;
      }
    },
  };
}
