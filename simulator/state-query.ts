// Owns recognising a state query on the command topic (PROTOCOL.md §3.5); everything else there is a command.
import { parseMessage, type StateQuery, StateQuerySchema } from '../protocols/messages.ts';

/** The state query this payload is, or null when it is anything else (a command, or garbage for the car). */
export function readStateQuery(payload: Buffer): StateQuery | null {
  // Cheap pre-check: a command never carries this type, so most payloads skip the parse.
  if (!payload.includes('"state_query"')) return null;
  try {
    return parseMessage(StateQuerySchema, payload);
  } catch {
    return null;
  }
}
