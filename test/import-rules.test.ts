// The import rules as a check (.ci/imports.ts): cycles and forbidden cross-folder imports are found, named,
// and the project itself has none.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  describe as describeViolation,
  forbiddenImports,
  type ImportGraph,
  importCycles,
  importsOf,
} from '../.ci/imports.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const graph = (edges: Record<string, string[]>): ImportGraph => new Map(Object.entries(edges));

describe('import rules', () => {
  it('reads relative imports of every form, resolved to repository paths, and skips packages and comments', () => {
    const source = [
      "import { a } from './a.ts';",
      "import type { B } from '../store/b.ts';",
      'import {',
      '  c,',
      "} from './c.ts';",
      "export { d } from './d.ts';",
      "import './side-effect.ts';",
      "const e = await import('./e.ts');",
      "import { z } from 'zod';",
      "// import { nope } from './commented.ts';",
      "/* import { nope } from './blocked.ts'; */",
    ].join('\n');
    expect(importsOf('gateway/deliveries/x.ts', source).sort()).toEqual([
      'gateway/deliveries/a.ts',
      'gateway/deliveries/c.ts',
      'gateway/deliveries/d.ts',
      'gateway/deliveries/e.ts',
      'gateway/deliveries/side-effect.ts',
      'gateway/store/b.ts',
    ]);
  });

  it('finds a cycle and names it as a closed path', () => {
    const cycles = importCycles(
      graph({
        'gateway/store/audit.ts': ['gateway/store/records.ts'],
        'gateway/store/records.ts': ['gateway/store/audit.ts', 'gateway/store/schema.ts'],
        'gateway/store/schema.ts': [],
      }),
    );
    expect(cycles).toHaveLength(1);
    expect(describeViolation(cycles[0]!)).toBe(
      'import cycle: gateway/store/audit.ts → gateway/store/records.ts → gateway/store/audit.ts',
    );
  });

  it('finds a longer cycle, a self-import, and none in a chain', () => {
    const cycles = importCycles(
      graph({ 'a/1.ts': ['a/2.ts'], 'a/2.ts': ['a/3.ts'], 'a/3.ts': ['a/1.ts'], 'b/x.ts': ['b/x.ts'] }),
    );
    expect(cycles.map((c) => c.files)).toEqual([['a/1.ts', 'a/2.ts', 'a/3.ts'], ['b/x.ts']]);
    expect(importCycles(graph({ 'a/1.ts': ['a/2.ts'], 'a/2.ts': ['a/3.ts'], 'a/3.ts': [] }))).toEqual([]);
  });

  it('refuses protocols/ importing ours, gateway/ ↔ simulator/, and anything importing test/', () => {
    const found = forbiddenImports(
      graph({
        'protocols/token.ts': ['certs/keys.ts'],
        'gateway/vehicles/link.ts': ['simulator/car.ts', 'protocols/topics.ts'],
        'simulator/car.ts': ['gateway/errors.ts', 'certs/index.ts'],
        'certs/index.ts': ['protocols/vin.ts', 'gateway/errors.ts'],
        'seeds/index.ts': ['protocols/catalog.ts'],
        'gateway/gateway.ts': ['test/helpers/stack.ts'],
        'test/helpers/stack.ts': ['gateway/gateway.ts', 'simulator/car.ts'],
      }),
    );
    expect(found.map(describeViolation).sort()).toEqual([
      'forbidden import: certs/index.ts imports gateway/errors.ts',
      'forbidden import: gateway/gateway.ts imports test/helpers/stack.ts',
      'forbidden import: gateway/vehicles/link.ts imports simulator/car.ts',
      'forbidden import: protocols/token.ts imports certs/keys.ts',
      'forbidden import: simulator/car.ts imports gateway/errors.ts',
    ]);
  });

  it('passes on this repository, and check:imports exits 0 on it', () => {
    const files = execFileSync('git', ['ls-files', '*.ts'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f.endsWith('.ts'));
    const tree = new Map(files.map((f) => [f, importsOf(f, readFileSync(`${ROOT}${f}`, 'utf8'))]));
    expect(tree.size).toBeGreaterThan(100);
    expect([...importCycles(tree), ...forbiddenImports(tree)].map(describeViolation)).toEqual([]);
    const out = execFileSync(process.execPath, ['--import', 'tsx', '.ci/check-imports.ts'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(out).toMatch(/^imports: \d+ files, \d+ imports, no cycle, no forbidden import$/m);
  });
});
