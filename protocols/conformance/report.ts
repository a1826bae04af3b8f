// Owns the console report: one line per case (verdict, id, what the endpoint did, the spec section) and a summary.
import { REQUIREMENT_TEXT, type Requirement } from './case.ts';
import type { CaseResult } from './runner.ts';

const VERDICT = { pass: 'PASS', fail: 'FAIL', skip: 'SKIP' } as const;
const OBSERVED_WIDTH = 34;

/** `PASS  token.aud-mismatch  refused TOKEN_AUDIENCE_MISMATCH  TOKEN.md §5 step 12`; a failure says why. */
export function caseLine(result: CaseResult, idWidth: number): string {
  const line = [
    VERDICT[result.verdict].padEnd(4),
    result.id.padEnd(idWidth),
    result.observed.padEnd(OBSERVED_WIDTH),
    result.spec,
  ].join('  ');
  return result.verdict === 'pass' || result.detail === undefined ? line : `${line}  — ${result.detail}`;
}

export interface Summary {
  passed: number;
  failed: number;
  skipped: number;
}

export function summarise(results: readonly CaseResult[]): Summary {
  return {
    passed: results.filter((r) => r.verdict === 'pass').length,
    failed: results.filter((r) => r.verdict === 'fail').length,
    skipped: results.filter((r) => r.verdict === 'skip').length,
  };
}

export function summaryLines(results: readonly CaseResult[], durationMs: number, pacedMs: number): string[] {
  const s = summarise(results);
  const paced = pacedMs > 0 ? ` (${(pacedMs / 1000).toFixed(1)} s of it paced, PROTOCOL.md §2)` : '';
  const lines = [
    `${results.length} cases: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped in ${(durationMs / 1000).toFixed(1)} s${paced}`,
  ];
  const failed = results.filter((r) => r.verdict === 'fail').map((r) => r.id);
  if (failed.length > 0) lines.push(`failed: ${failed.join(', ')}`);
  return lines;
}

/** `--list`: every case with its spec section, what it needs, and what a conformant endpoint does. */
export function listLines(
  cases: ReadonlyArray<{ id: string; spec: string; requires: readonly Requirement[]; expected: string }>,
): string[] {
  const width = Math.max(...cases.map((c) => c.id.length));
  const specWidth = Math.max(...cases.map((c) => c.spec.length));
  return cases.map((c) => {
    // The kit locks the endpoint itself; what else a case needs is what the engineer or the hook provides.
    const needs = c.requires.filter((r) => r !== 'locked').map((r) => REQUIREMENT_TEXT[r]);
    const suffix = needs.length > 0 ? `  [needs ${needs.join(', ')}]` : '';
    return `${c.id.padEnd(width)}  ${c.spec.padEnd(specWidth)}  ${c.expected}${suffix}`;
  });
}
