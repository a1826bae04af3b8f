// Owns `npm run check:imports`: reads every TypeScript file git knows and fails on an import cycle or an import
// across folders that the rules forbid (.ci/imports.ts). Exit 0 when clean, 1 with one line per violation.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, forbiddenImports, importCycles, importsOf } from './imports.ts';

const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts'], {
  encoding: 'utf8',
})
  .split('\n')
  .filter((f) => f.endsWith('.ts'));
const graph = new Map(files.map((f) => [f, importsOf(f, readFileSync(f, 'utf8'))]));
const violations = [...importCycles(graph), ...forbiddenImports(graph)];
for (const v of violations) console.error(describe(v));
const edges = [...graph.values()].reduce((n, t) => n + t.length, 0);
if (violations.length > 0) {
  console.error(`imports: ${violations.length} violation(s) in ${graph.size} files`);
  process.exit(1);
}
console.log(`imports: ${graph.size} files, ${edges} imports, no cycle, no forbidden import`);
