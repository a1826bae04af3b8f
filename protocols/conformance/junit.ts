// Owns the JUnit XML report CI systems read: one testsuite per group of cases, one testcase per case.
import type { CaseResult } from './runner.ts';

/** XML 1.0 text: the five escapes, and no control character XML cannot carry. */
export function xmlText(value: string): string {
  return (
    value
      // biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly the characters XML 1.0 forbids.
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '\ufffd')
      .replaceAll('&', '&amp;')
      .replaceAll('<', '&lt;')
      .replaceAll('>', '&gt;')
      .replaceAll('"', '&quot;')
      .replaceAll("'", '&apos;')
  );
}

const seconds = (ms: number): string => (ms / 1000).toFixed(3);

export interface JunitRun {
  /** Properties of the whole run (endpoint, provider, broker), on every testsuite. */
  properties: Record<string, string>;
  startedAt: Date;
  durationMs: number;
  results: readonly CaseResult[];
}

/** The group of a case: the part of its id before the first dot (token, keys, state…). */
const groupOf = (id: string): string => id.split('.')[0] ?? id;

function testcase(r: CaseResult): string {
  const out = [`spec: ${r.spec}`, `expected: ${r.expected}`, `observed: ${r.observed}`];
  if (r.detail !== undefined) out.push(`detail: ${r.detail}`);
  if (r.requires.length > 0) out.push(`needs: ${r.requires.join(', ')}`);
  const body = [
    r.verdict === 'fail'
      ? `      <failure message="${xmlText(`${r.observed}${r.detail ? ` — ${r.detail}` : ''}`)}" type="${xmlText(r.spec)}">${xmlText(`expected ${r.expected}, observed ${r.observed}`)}</failure>`
      : null,
    r.verdict === 'skip' ? `      <skipped message="${xmlText(r.detail ?? 'not run')}"/>` : null,
    `      <system-out>${xmlText(out.join('\n'))}</system-out>`,
  ].filter((l) => l !== null);
  return [
    `    <testcase name="${xmlText(r.id)}" classname="conformance.${xmlText(groupOf(r.id))}" time="${seconds(r.durationMs)}">`,
    ...body,
    '    </testcase>',
  ].join('\n');
}

/** The whole report, as JUnit's XML (the Ant schema that Jenkins, GitLab and GitHub reporters read). */
export function junitXml(run: JunitRun): string {
  const groups = new Map<string, CaseResult[]>();
  for (const r of run.results) groups.set(groupOf(r.id), [...(groups.get(groupOf(r.id)) ?? []), r]);
  const count = (rs: readonly CaseResult[], v: CaseResult['verdict']) =>
    rs.filter((r) => r.verdict === v).length;
  const properties = Object.entries(run.properties)
    .map(([name, value]) => `      <property name="${xmlText(name)}" value="${xmlText(value)}"/>`)
    .join('\n');
  const suites = [...groups].map(([name, rs]) =>
    [
      `  <testsuite name="${xmlText(name)}" tests="${rs.length}" failures="${count(rs, 'fail')}" errors="0" skipped="${count(rs, 'skip')}" time="${seconds(rs.reduce((t, r) => t + r.durationMs, 0))}" timestamp="${run.startedAt.toISOString()}">`,
      '    <properties>',
      properties,
      '    </properties>',
      ...rs.map(testcase),
      '  </testsuite>',
    ].join('\n'),
  );
  const all = run.results;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="curbside-key conformance" tests="${all.length}" failures="${count(all, 'fail')}" errors="0" skipped="${count(all, 'skip')}" time="${seconds(run.durationMs)}">`,
    ...suites,
    '</testsuites>',
    '',
  ].join('\n');
}
