// Owns the conformance suite: every case, in the order a run takes them.
import type { ConformanceCase } from '../case.ts';
import { COMMAND_CASES, DIALECT_CASES } from './commands.ts';
import { CLOCK_CASES, FAILSAFE_CASES, REBOOT_CASES } from './endpoint.ts';
import { KEYS_CASES, KEYS_OVERLAP_ENDED_CASE, KEYS_RESTORE_CASE, KEYS_SETUP_CASES } from './keys.ts';
import { REPLAY_CASES, REVOCATION_CASES } from './revocation.ts';
import { SESSION_CASES } from './session.ts';
import { SEQ_CASE, STATE_CASES } from './state.ts';
import { TOKEN_CASES } from './tokens.ts';

/**
 * The order matters: the opening cases gate the rest (the endpoint answers, trusts the kit's key); the key
 * set-up comes first and keys.overlap-ended near the end, so the overlap key's retirement has come by then
 * without a wait of its own; the clock and power-cycle cases come late, and the last case gives the
 * endpoint back the keys it was enrolled with.
 */
export const CASES: readonly ConformanceCase[] = [
  ...SESSION_CASES,
  ...KEYS_SETUP_CASES,
  ...TOKEN_CASES,
  ...COMMAND_CASES,
  ...DIALECT_CASES,
  ...REPLAY_CASES,
  ...REVOCATION_CASES,
  ...KEYS_CASES,
  ...STATE_CASES,
  ...CLOCK_CASES,
  ...REBOOT_CASES,
  ...FAILSAFE_CASES,
  KEYS_OVERLAP_ENDED_CASE,
  SEQ_CASE,
  KEYS_RESTORE_CASE,
];

/**
 * Vectors of protocols/vectors/ the kit cannot run against a live endpoint, and why; every other vector is
 * run by a case (its `vectors`), which test/conformance.test.ts checks.
 */
export const VECTORS_NOT_RUN_LIVE: Readonly<Record<string, string>> = {
  'tokens: the replay store is full':
    "filling an endpoint's replay memory from outside takes thousands of accepted tokens; covered by the vectors",
};
