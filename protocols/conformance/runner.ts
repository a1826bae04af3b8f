// Owns running cases in order: bringing about the state each needs (itself or through the hook), timing each,
// catching what goes wrong, and stopping the run when a gate fails.
import type { TrustedJwk } from '../keys.ts';
import type { StateReport } from '../messages.ts';
import {
  type CaseContext,
  type CaseOutcome,
  type ConformanceCase,
  fail,
  type Requirement,
  skip,
  type Verdict,
} from './case.ts';
import { ConformanceError } from './errors.ts';
import type { HookRequest, StateHook } from './hook.ts';
import type { Session } from './session.ts';

export interface CaseResult {
  id: string;
  title: string;
  spec: string;
  expected: string;
  requires: readonly Requirement[];
  verdict: Verdict;
  observed: string;
  detail?: string;
  durationMs: number;
}

export interface RunCasesOptions {
  session: Session;
  hook: StateHook;
  cases: readonly ConformanceCase[];
  relockMs: number;
  rebootTimeoutMs: number;
  enrolledKeys: readonly TrustedJwk[];
  /** Told of each result as soon as its case ends. */
  onResult?: (result: CaseResult) => void;
  sleep?: (ms: number) => Promise<void>;
}

/** The baseline a case asking for `parked` and `doors-closed` needs, checked against the endpoint's own report. */
function baselineProblems(report: StateReport, requires: readonly Requirement[]): string[] {
  const problems: string[] = [];
  if (requires.includes('parked') && report.ignition !== 'off') problems.push('ignition on');
  if (requires.includes('doors-closed')) {
    const open = Object.entries(report.doors)
      .filter(([, v]) => v === 'open')
      .map(([k]) => k);
    if (open.length > 0) problems.push(`${open.join(', ')} door open`);
    if (report.trunk === 'open') problems.push('trunk open');
  }
  return problems;
}

/** Brings about what the case needs; an outcome when it cannot (fail or skip), null when it can run. */
async function prepare(c: ConformanceCase, ctx: CaseContext): Promise<CaseOutcome | null> {
  const { session } = ctx;
  if (c.requires.includes('parked') || c.requires.includes('doors-closed')) {
    const report = session.lastReport() ?? (await session.query()).report;
    if (baselineProblems(report, c.requires).length > 0) {
      const answer = await ctx.hook({ kind: 'baseline' });
      if (!answer.done) return skip(`needs the endpoint parked with doors closed: ${answer.reason}`);
      const after = baselineProblems((await session.query()).report, c.requires);
      if (after.length > 0)
        return fail('not in its baseline', `after the hook the endpoint reports ${after.join(', ')}`);
    }
  }
  if (c.requires.includes('locked') && !(await session.ensureLocked())) {
    return fail('could not lock', 'a valid lock did not leave the endpoint locked before the case');
  }
  return null;
}

/** Runs the cases one after another; a case that fails with `abort` ends the run (the rest are skipped). */
export async function runCases(options: RunCasesOptions): Promise<CaseResult[]> {
  const sleep = options.sleep ?? ((ms) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const ctx: CaseContext = {
    session: options.session,
    hook: (request: HookRequest) => options.hook.request(request),
    memo: new Map(),
    relockMs: options.relockMs,
    rebootTimeoutMs: options.rebootTimeoutMs,
    enrolledKeys: options.enrolledKeys,
    sleep,
  };
  const results: CaseResult[] = [];
  let aborted: string | null = null;
  for (const c of options.cases) {
    const started = Date.now();
    let outcome: CaseOutcome;
    if (aborted !== null) {
      outcome = skip(`not run: ${aborted} failed`);
    } else {
      try {
        outcome = (await prepare(c, ctx)) ?? (await c.run(ctx));
      } catch (err) {
        const code = err instanceof ConformanceError ? err.code : 'KIT_ERROR';
        outcome = fail('error', `${code}: ${err instanceof Error ? err.message : String(err)}`);
        // An endpoint that never answered anything will not answer the next case either.
        if (code === 'CONFORMANCE_NO_ANSWER' && options.session.reports().length === 0) {
          outcome = {
            ...outcome,
            detail: `${outcome.detail}; check --vin, --provider and the broker`,
            abort: true,
          };
        }
      }
      if (outcome.verdict === 'fail' && outcome.abort) aborted = c.id;
    }
    const result: CaseResult = {
      id: c.id,
      title: c.title,
      spec: c.spec,
      expected: c.expected,
      requires: c.requires,
      verdict: outcome.verdict,
      observed: outcome.observed,
      durationMs: Date.now() - started,
      ...(outcome.detail === undefined ? {} : { detail: outcome.detail }),
    };
    results.push(result);
    options.onResult?.(result);
  }
  return results;
}
