// The dialect matrix of npm test (vitest.config.ts): every test that touches the store runs on SQLite and on
// PostgreSQL, or says why it runs once; none runs a dialect loop twice.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ONCE_WITH_STORE, STORE_TESTS } from '../vitest.config.ts';

const ROOT = join(import.meta.dirname, '..');
const files = readdirSync(join(ROOT, 'test'))
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => `test/${f}`)
  .sort();
const source = (file: string) => readFileSync(join(ROOT, file), 'utf8');

/** A store opened through a helper, the store module, or a program that opens one (a gateway, a CLI). */
const TOUCHES_STORE =
  /\b(startStack|startLoopback|useTempStore|scratchStore|openStore|startGateway|bootGateway|startChildGateway|exportFromStore|openTestLog|freshPgSchema)\(|(gateway|demo|audit)\/main\.ts|(keys|migrate)-main\.ts/;
const touches = (file: string) => TOUCHES_STORE.test(source(file));

describe('the dialect matrix', () => {
  it('runs every test that touches the store on both dialects, or names why it runs once', () => {
    const unplaced = files.filter((f) => touches(f) && !STORE_TESTS.includes(f) && !(f in ONCE_WITH_STORE));
    expect(
      unplaced,
      'add them to STORE_TESTS in vitest.config.ts (or to ONCE_WITH_STORE, with a reason)',
    ).toEqual([]);
  });

  it('lists only test files that exist and touch the store, each in one list', () => {
    const listed = [...STORE_TESTS, ...Object.keys(ONCE_WITH_STORE)];
    expect(listed.filter((f) => !files.includes(f))).toEqual([]);
    expect(listed.filter((f) => !touches(f))).toEqual([]);
    expect(new Set(listed).size).toBe(listed.length);
  });

  it('runs no dialect loop twice, and no test of the matrix on a store of a fixed dialect', () => {
    const looping = STORE_TESTS.filter((f) => /\bDIALECTS\b/.test(source(f)));
    expect(looping, 'a test that loops over DIALECTS belongs to ONCE_WITH_STORE').toEqual([]);
    const fixed = STORE_TESTS.filter((f) => /kind: 'sqlite'|dialect: '(sqlite|postgres)'/.test(source(f)));
    expect(fixed, "use the run's dialect (testDialect, scratchStore) instead").toEqual([]);
  });

  it('gives each file of ONCE_WITH_STORE a reason; one that names DIALECTS loops over them', () => {
    for (const [file, reason] of Object.entries(ONCE_WITH_STORE)) {
      expect([file, reason.length > 20]).toEqual([file, true]);
      if (reason.includes('(DIALECTS)'))
        expect([file, /\bDIALECTS\b/.test(source(file))]).toEqual([file, true]);
    }
  });
});
