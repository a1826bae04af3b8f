// Owns the zod schema of every MQTT message; the TypeScript types are inferred from them (PROTOCOL.md §3).
import { z } from 'zod';
import { VIN_PATTERN } from './vin.ts';

export const PROTOCOL_VERSION = 1;
/** MQTT payloads above this size are refused before JSON parsing. */
export const MAX_PAYLOAD_BYTES = 16 * 1024;
/**
 * The largest whole MQTT packet a broker accepts (PROTOCOL.md §2): the payload cap plus 1 KiB for the
 * fixed header, topic, packet id and a CONNECT's client id and will. Mosquitto's max_packet_size counts the same way.
 */
export const MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 1024;

export const Vin = z.string().regex(VIN_PATTERN, 'VIN: 17 characters of A-Z 0-9 without I, O, Q');
export const ActionSchema = z.enum(['unlock', 'lock']);
export type Action = z.infer<typeof ActionSchema>;
export const ACTIONS = ActionSchema.options;
/** What a token may allow: a door action, or revoking a delivery at the car (TOKEN.md §10). */
export const TokenActionSchema = z.enum(['unlock', 'lock', 'revoke']);
export type TokenAction = z.infer<typeof TokenActionSchema>;

export const PositionSchema = z.strictObject({
  lat: z.number().min(-90).max(90),
  lon: z.number().min(-180).max(180),
});
export type Position = z.infer<typeof PositionSchema>;

const Id = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/);

/** Gateway → car, on vehicles/{VIN}/commands. The token carries every field that matters, signed. */
export const CommandSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal('command'),
  commandId: Id,
  deliveryId: Id,
  action: TokenActionSchema,
  token: z.string().min(1).max(4096),
});
export type Command = z.infer<typeof CommandSchema>;

/** Gateway → car, on vehicles/{VIN}/commands: a signed key announcement (TOKEN.md §8). */
export const KeysCommandSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal('keys'),
  commandId: Id,
  announcement: z.string().min(1).max(8192),
});
export type KeysCommand = z.infer<typeof KeysCommandSchema>;

/** Everything a car accepts on its command topic. */
export const CommandMessageSchema = z.discriminatedUnion('type', [CommandSchema, KeysCommandSchema]);
export type CommandMessage = z.infer<typeof CommandMessageSchema>;

/** A fresh, unpredictable value the car echoes; base64url of at least 128 bits. */
export const NonceSchema = z.string().regex(/^[A-Za-z0-9_-]{22,64}$/, 'nonce: 22-64 base64url characters');

/**
 * Gateway → car, on vehicles/{VIN}/commands: "report your state now". It grants nothing, so it carries no
 * token; the nonce binds the answer to this question, so an older report cannot pass for it (PROTOCOL.md §3.5).
 */
export const StateQuerySchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal('state_query'),
  nonce: NonceSchema,
});
export type StateQuery = z.infer<typeof StateQuerySchema>;

/** Everything the gateway sends on a car's command topic. */
export const ToCarSchema = z.discriminatedUnion('type', [CommandSchema, StateQuerySchema]);
export type ToCar = z.infer<typeof ToCarSchema>;

export const AckOutcomeSchema = z.enum(['executed', 'refused']);
export type AckOutcome = z.infer<typeof AckOutcomeSchema>;

/** Car → gateway, on vehicles/{VIN}/acks, once per command (re-sent unchanged for a duplicate). */
export const AckSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal('ack'),
  vin: Vin,
  commandId: Id,
  deliveryId: Id.optional(),
  action: z.string().max(32),
  outcome: AckOutcomeSchema,
  reason: z
    .string()
    .regex(/^[A-Z][A-Z0-9_]{1,63}$/)
    .optional(),
  locked: z.boolean(),
  /** The car's own clock, ms since the epoch; null when the car does not know the time. */
  at: z.number().int().nonnegative().nullable(),
  /** The car's ES256 signature over the canonical ack without `sig`: a detached compact JWS (TOKEN.md §9). */
  sig: z
    .string()
    .max(512)
    .regex(/^[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]+$/),
});
export type Ack = z.infer<typeof AckSchema>;
/** An ack before the car signs it: what the signature covers. */
export type UnsignedAck = Omit<Ack, 'sig'>;

export const DoorsSchema = z.strictObject({
  driver: z.enum(['open', 'closed']),
  passenger: z.enum(['open', 'closed']),
  rearLeft: z.enum(['open', 'closed']),
  rearRight: z.enum(['open', 'closed']),
});
export type Doors = z.infer<typeof DoorsSchema>;

/** Car → gateway, on vehicles/{VIN}/state, on every change and periodically. */
export const StateReportSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal('state'),
  vin: Vin,
  seq: z.number().int().nonnegative(),
  online: z.literal(true),
  locked: z.boolean(),
  doors: DoorsSchema,
  trunk: z.enum(['open', 'closed']),
  ignition: z.enum(['off', 'on']),
  position: PositionSchema,
  at: z.number().int().nonnegative().nullable(),
  /** Present only in the report that answers a state query: that query's nonce (§3.5). */
  nonce: NonceSchema.optional(),
});
export type StateReport = z.infer<typeof StateReportSchema>;

/** The car's MQTT will, on its state topic: the broker publishes it when the car drops. */
export const PresenceSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal('presence'),
  vin: Vin,
  online: z.literal(false),
});
export type Presence = z.infer<typeof PresenceSchema>;

export const StateMessageSchema = z.discriminatedUnion('type', [StateReportSchema, PresenceSchema]);
export type StateMessage = z.infer<typeof StateMessageSchema>;

export class MessageError extends Error {
  readonly code: 'MESSAGE_TOO_LARGE' | 'MESSAGE_NOT_JSON' | 'MESSAGE_INVALID';
  constructor(code: MessageError['code'], message: string) {
    super(message);
    this.name = 'MessageError';
    this.code = code;
  }
}

/** Parses an MQTT payload against a schema: size first, then JSON, then shape. */
export function parseMessage<S extends z.ZodType>(schema: S, payload: Buffer | string): z.infer<S> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > MAX_PAYLOAD_BYTES) throw new MessageError('MESSAGE_TOO_LARGE', `payload of ${size} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(payload.toString());
  } catch {
    throw new MessageError('MESSAGE_NOT_JSON', 'payload is not JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success)
    throw new MessageError('MESSAGE_INVALID', parsed.error.issues[0]?.message ?? 'invalid');
  return parsed.data;
}

/**
 * Key announcements and delivery revocations are this protocol's own security messages, not a provider's
 * remote commands: they travel canonical (PROTOCOL.md §3) whatever the car's dialect (PROVIDERS.md).
 */
export const isProviderIndependent = (message: CommandMessage): boolean =>
  message.type === 'keys' || message.action === 'revoke';

/** Whether a command-topic payload is one of those canonical security messages, read without trusting it. */
export function readsAsProviderIndependent(payload: Buffer): boolean {
  if (payload.length > MAX_PAYLOAD_BYTES) return false;
  try {
    const json = JSON.parse(payload.toString('utf8')) as Record<string, unknown> | null;
    if (json === null || typeof json !== 'object' || json.v !== PROTOCOL_VERSION) return false;
    return json.type === 'keys' || (json.type === 'command' && json.action === 'revoke');
  } catch {
    return false;
  }
}

export const encodeMessage = (message: CommandMessage | ToCar | Ack | StateMessage): string =>
  JSON.stringify(message);
