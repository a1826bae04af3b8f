// The reviewer documents match the code: TOKEN.md's step table and constants, and every test THREAT-MODEL.md cites.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ANNOUNCEMENT_STEPS,
  CLOCK_SKEW_S,
  MAX_ANNOUNCEMENT_BYTES,
  MAX_TOKEN_BYTES,
  MAX_TOKEN_LIFETIME_S,
  REVOCATION_RETENTION_S,
  TOKEN_STEPS,
} from '../protocols/index.ts';
import { CLOCK_BACKSTEP_TOLERANCE_MS } from '../simulator/car-clock.ts';

const ROOT = join(import.meta.dirname, '..');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

/** Rows of a markdown table whose first cell is a number: [number, step name, last cell's codes]. */
function stepRows(markdown: string, section: string): Array<{ n: number; step: string; codes: string[] }> {
  const start = markdown.indexOf(section);
  const end = markdown.indexOf('\n## ', start + 1);
  const body = markdown.slice(start, end === -1 ? undefined : end);
  return body
    .split('\n')
    .filter((line) => /^\| \d+ +\|/.test(line))
    .map((line) => {
      const cells = line.split('|').map((c) => c.trim());
      return {
        n: Number(cells[1]),
        step: (cells[2] ?? '').replaceAll('`', ''),
        codes: [...(cells.at(-2) ?? '').matchAll(/`([A-Z_]+)`/g)].map((m) => m[1] as string),
      };
    });
}

describe('TOKEN.md', () => {
  const doc = read('protocols/TOKEN.md');

  it('§5 lists the verification steps of the code, numbered in order, with their codes', () => {
    expect(stepRows(doc, '## 5. Verification')).toEqual(
      TOKEN_STEPS.map((s, i) => ({ n: i + 1, step: s.step, codes: [...s.codes] })),
    );
  });

  it('§8.2 lists the announcement steps 9-14 of the code', () => {
    expect(stepRows(doc, '### 8.2 Verification')).toEqual(
      ANNOUNCEMENT_STEPS.map((s, i) => ({ n: i + 9, step: s.step, codes: [...s.codes] })),
    );
  });

  it('states the constants the code uses', () => {
    expect(CLOCK_SKEW_S).toBe(30);
    expect(MAX_TOKEN_LIFETIME_S).toBe(300);
    expect(MAX_TOKEN_BYTES).toBe(2048);
    expect(MAX_ANNOUNCEMENT_BYTES).toBe(8192);
    expect(REVOCATION_RETENTION_S).toBe(360);
    expect(CLOCK_BACKSTEP_TOLERANCE_MS).toBe(30_000);
    for (const text of ['| 30 s ', '| 300 s ', '| 2048 bytes ', '| 8192 bytes ', '| 360 s (300 + 2 × 30) ']) {
      expect(doc).toContain(text);
    }
  });
});

describe('THREAT-MODEL.md', () => {
  const doc = read('protocols/THREAT-MODEL.md');
  const cited = [...doc.matchAll(/`(test\/[\w.-]+\.test\.ts)` › ([^;|]+)/g)].flatMap((m) =>
    [...(m[2] as string).matchAll(/"([^"]+)"/g)].map((n) => ({ file: m[1] as string, name: n[1] as string })),
  );

  it('cites tests', () => {
    expect(cited.length).toBeGreaterThan(30);
  });

  it.each(cited.map((c) => [`${c.file} › ${c.name}`, c] as const))(
    'cites a test that exists: %s',
    (_label, c) => {
      expect(existsSync(join(ROOT, c.file))).toBe(true);
      expect(read(c.file)).toContain(c.name);
    },
  );

  it('has a row for each threat issue 3 lists, mapped to R155 6.2, 6.3, 16.2 and 21.1', () => {
    for (const threat of [
      'A stolen or compromised broker',
      'A stolen vehicle certificate',
      'A replayed or modified command',
      'A malicious or wrong driver',
      'A log that someone edits',
      'Denial of service',
      'Insider misuse of the API',
    ]) {
      expect(doc).toContain(`**${threat}**`);
    }
    for (const ref of ['6.2', '6.3', '16.2', '21.1'])
      expect(doc).toMatch(new RegExp(`\\| [^|]*\\b${ref.replace('.', '\\.')}\\b[^|]*\\|`));
  });
});
