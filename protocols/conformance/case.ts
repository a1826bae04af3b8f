// Owns what a conformance case is (id, spec section, required state, expectation, the run) and how an ack is judged.
import type { TrustedJwk } from '../keys.ts';
import type { TokenAction } from '../messages.ts';
import type { HookAnswer, HookRequest } from './hook.ts';
import { type Exchange, freshIds, type Session, type TokenIds } from './session.ts';

/**
 * Endpoint state a case needs before it runs. The kit brings about `locked` itself; `parked` and
 * `doors-closed` come from the state hook's baseline; `reboot` and `clock-control` say the case asks the
 * hook for a power cycle or a lost clock while it runs (declined: skipped).
 */
export type Requirement = 'locked' | 'parked' | 'doors-closed' | 'reboot' | 'clock-control';

export const REQUIREMENT_TEXT: Record<Requirement, string> = {
  locked: 'locked',
  parked: 'parked (ignition off)',
  'doors-closed': 'doors and trunk closed',
  reboot: 'a power cycle (hook)',
  'clock-control': 'losing the clock (hook)',
};

export type Verdict = 'pass' | 'fail' | 'skip';

export interface CaseOutcome {
  verdict: Verdict;
  /** What the endpoint did, short: "refused TOKEN_EXPIRED", "executed", "no ack", "relocked after 3.0 s". */
  observed: string;
  /** Why a case failed or was skipped, beyond `observed`. */
  detail?: string;
  /** The rest of the run cannot mean anything (the endpoint does not answer, or does not trust the kit). */
  abort?: boolean;
}

/** Shared between cases of one run: what an earlier case set up for a later one. */
export type Memo = Map<string, unknown>;

export interface CaseContext {
  session: Session;
  /** Asks the state hook; the runner has checked nothing else about it. */
  hook(request: HookRequest): Promise<HookAnswer>;
  memo: Memo;
  /** The endpoint's configured fail-safe relock time (PROTOCOL.md §5). */
  relockMs: number;
  /** How long the endpoint may take to come back from a power cycle. */
  rebootTimeoutMs: number;
  /** The gateway keys the endpoint was enrolled with (its trusted-keys.json): kept in every announcement. */
  enrolledKeys: readonly TrustedJwk[];
  /** Waits; the runner's, so tests can keep it short. */
  sleep(ms: number): Promise<void>;
}

export interface ConformanceCase {
  /** group.name, stable: CI history and the flaw tests key on it. */
  id: string;
  title: string;
  /** The spec section it tests: "TOKEN.md §5 step 12". */
  spec: string;
  requires: readonly Requirement[];
  /** The outcome a conformant endpoint gives: "refused TOKEN_AUDIENCE_MISMATCH", "executed". */
  expected: string;
  /** The published vectors this case runs live ("tokens: aud another VIN"). */
  vectors?: readonly string[];
  run(ctx: CaseContext): Promise<CaseOutcome>;
}

export const pass = (observed: string, detail?: string): CaseOutcome =>
  detail === undefined ? { verdict: 'pass', observed } : { verdict: 'pass', observed, detail };
export const fail = (observed: string, detail: string): CaseOutcome => ({
  verdict: 'fail',
  observed,
  detail,
});
export const skip = (detail: string): CaseOutcome => ({ verdict: 'skip', observed: 'not run', detail });

export type AckExpectation = (
  | { outcome: 'executed'; locked: boolean }
  | { outcome: 'refused'; reason: string | readonly string[]; locked?: boolean }
) & {
  /** false: the endpoint has lost the time, so its ack must say at: null (TOKEN.md §6.3). Default true. */
  clockKnown?: boolean;
};

export function describeExpectation(e: AckExpectation): string {
  if (e.outcome === 'executed') return e.locked ? 'executed, locked' : 'executed, unlocked';
  return `refused ${typeof e.reason === 'string' ? e.reason : e.reason.join(' or ')}`;
}

export const observedOf = (exchange: Exchange): string => {
  if (!exchange.ack) return exchange.problems.length > 0 ? 'ack does not decode' : 'no ack';
  return exchange.ack.outcome === 'refused'
    ? `refused ${exchange.ack.reason ?? '(no reason)'}`
    : `executed, ${exchange.ack.locked ? 'locked' : 'unlocked'}`;
};

/**
 * Judges one exchange: an ack that names the command and verifies (TOKEN.md §9.4), with the expected outcome
 * and reason, and the lock state a refusal leaves untouched (PROTOCOL.md §5: a refused command changes nothing).
 */
export function judge(exchange: Exchange, expected: AckExpectation, timeoutMs: number): CaseOutcome {
  const observed = observedOf(exchange);
  const want = describeExpectation(expected);
  if (!exchange.ack) {
    const why = exchange.problems[0] ?? `nothing on the acks topic within ${timeoutMs} ms`;
    return fail(observed, `expected ${want}; ${why}`);
  }
  if (exchange.problems.length > 0) return fail(observed, exchange.problems.join('; '));
  const ack = exchange.ack;
  if (ack.outcome !== expected.outcome) return fail(observed, `expected ${want}`);
  if (expected.outcome === 'refused') {
    const reasons = typeof expected.reason === 'string' ? [expected.reason] : expected.reason;
    if (!reasons.includes(ack.reason ?? '')) return fail(observed, `expected ${want}`);
    const locked = expected.locked ?? true;
    if (ack.locked !== locked) {
      return fail(
        observed,
        `the refusal left the car ${ack.locked ? 'locked' : 'unlocked'}; it was ${locked ? 'locked' : 'unlocked'}`,
      );
    }
    return clockAgrees(ack.at, expected) ?? pass(observed);
  }
  if (ack.reason !== undefined) return fail(observed, `an executed ack carries a reason (${ack.reason})`);
  if (ack.locked !== expected.locked) return fail(observed, `expected ${want}`);
  return clockAgrees(ack.at, expected) ?? pass(observed);

  function clockAgrees(at: number | null, e: AckExpectation): CaseOutcome | null {
    const known = e.clockKnown ?? true;
    if (known && at === null)
      return fail(observed, 'the ack says at: null although the endpoint knows the time');
    if (!known && at !== null)
      return fail(observed, 'the ack carries a time although the endpoint lost it (TOKEN.md §6.3)');
    return null;
  }
}

/** What a command-with-a-token case builds: the token and the envelope it travels in. */
export interface Built {
  token: string;
  /** The envelope's action; default the ids' action. */
  action?: TokenAction;
  commandId?: string;
  deliveryId?: string;
}

/**
 * Sends one command carrying a token (in the endpoint's dialect; revokes canonical) and judges its ack. An
 * endpoint left unlocked by it (whether it should have been or not) is locked again before the next case.
 */
export async function sendToken(
  ctx: CaseContext,
  action: TokenAction,
  build: (ids: TokenIds) => Built | Promise<Built>,
  expected: AckExpectation,
): Promise<CaseOutcome> {
  const { session } = ctx;
  const ids = freshIds(session, action);
  const built = await build(ids);
  const envelope = {
    commandId: built.commandId ?? ids.commandId,
    deliveryId: built.deliveryId ?? ids.deliveryId,
  };
  const envelopeAction = built.action ?? action;
  const exchange = await session.send(session.command(envelopeAction, built.token, envelope), {
    ...envelope,
    action: envelopeAction,
  });
  const outcome = judge(exchange, expected, session.timeoutMs);
  if (session.locked() === false) await session.ensureLocked();
  return outcome;
}

/** The expectation of a valid command of this action on a locked car. */
export const executed = (action: TokenAction): AckExpectation => ({
  outcome: 'executed',
  locked: action !== 'unlock',
});

export const refused = (reason: string | readonly string[], locked = true): AckExpectation => ({
  outcome: 'refused',
  reason,
  locked,
});
