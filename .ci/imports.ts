// Owns the project's import rules as a check: no import cycle anywhere, and the one-way flow between the
// top-level folders (STYLE.md habit 8). Pure over a map of file → imported files; main.ts reads the tree.
import { dirname, join, normalize } from 'node:path';

/** Which top-level folders a folder may import from, besides itself. A folder not listed may import anything. */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  protocols: [],
  certs: ['protocols', 'seeds'],
  seeds: ['protocols'],
  gateway: ['protocols', 'certs', 'seeds'],
  simulator: ['protocols', 'certs', 'seeds'],
  audit: ['protocols', 'certs', 'gateway'],
  demo: ['protocols', 'certs', 'seeds', 'gateway', 'simulator'],
  cluster: ['protocols', 'certs', 'seeds', 'gateway', 'simulator'],
  '.ci': [],
};

/** Root files any program may import: the runtime guard (runtime.ts) imports nothing of ours. */
export const SHARED_ROOT_FILES: readonly string[] = ['runtime.ts'];

export type ImportGraph = ReadonlyMap<string, readonly string[]>;

export interface Violation {
  kind: 'cycle' | 'forbidden';
  /** The files of a cycle in import order (the first imports the second, …, the last imports the first), or
   * the importing file and the imported one. */
  files: string[];
}

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;

/** Removes comments, so an example in a comment is not taken for an import. */
function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
}

/** The project files a module imports (relative specifiers only: packages are not ours), as repository paths. */
export function importsOf(file: string, source: string): string[] {
  const found = new Set<string>();
  for (const m of stripComments(source).matchAll(SPECIFIER)) {
    const spec = m[1]!;
    if (!spec.startsWith('.')) continue;
    found.add(normalize(join(dirname(file), spec)));
  }
  return [...found];
}

const folderOf = (file: string): string => file.split('/')[0] ?? file;

/** Imports that cross folders against ALLOWED; test/ may import everything, and nothing may import test/. */
export function forbiddenImports(graph: ImportGraph): Violation[] {
  const out: Violation[] = [];
  for (const [file, targets] of graph) {
    const from = folderOf(file);
    for (const target of targets) {
      const to = folderOf(target);
      if (to === from || SHARED_ROOT_FILES.includes(target)) continue;
      const allowed = from === 'test' || (to !== 'test' && (ALLOWED[from]?.includes(to) ?? true));
      if (!allowed) out.push({ kind: 'forbidden', files: [file, target] });
    }
  }
  return out;
}

/** Every import cycle, one per strongly connected component (Tarjan), each shown as one closed path. */
export function importCycles(graph: ImportGraph): Violation[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: Violation[] = [];
  let next = 0;
  const edges = (f: string): readonly string[] => (graph.get(f) ?? []).filter((t) => graph.has(t));

  const visit = (root: string): void => {
    // Iterative, so a deep chain of imports cannot overflow the call stack.
    const work: Array<{ file: string; i: number }> = [{ file: root, i: 0 }];
    index.set(root, next);
    low.set(root, next++);
    stack.push(root);
    onStack.add(root);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      const targets = edges(top.file);
      if (top.i < targets.length) {
        const t = targets[top.i++]!;
        if (!index.has(t)) {
          index.set(t, next);
          low.set(t, next++);
          stack.push(t);
          onStack.add(t);
          work.push({ file: t, i: 0 });
        } else if (onStack.has(t)) {
          low.set(top.file, Math.min(low.get(top.file)!, index.get(t)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.file, Math.min(low.get(parent.file)!, low.get(top.file)!));
      if (low.get(top.file) !== index.get(top.file)) continue;
      const component: string[] = [];
      let f: string;
      do {
        f = stack.pop()!;
        onStack.delete(f);
        component.push(f);
      } while (f !== top.file);
      const selfImport = edges(top.file).includes(top.file);
      if (component.length > 1 || selfImport)
        out.push({ kind: 'cycle', files: cycleWithin(component, edges) });
    }
  };
  for (const file of [...graph.keys()].sort()) if (!index.has(file)) visit(file);
  return out;
}

/** One closed path through a strongly connected component, starting at its first file in sort order. */
function cycleWithin(component: string[], edges: (f: string) => readonly string[]): string[] {
  const members = new Set(component);
  const start = [...component].sort()[0]!;
  // Breadth-first from start back to start, inside the component: the shortest cycle through start.
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const f = queue.shift()!;
    for (const t of edges(f)) {
      if (!members.has(t)) continue;
      if (t === start) {
        const path = [f];
        while (path[0] !== start) path.unshift(previous.get(path[0]!)!);
        return path;
      }
      if (!previous.has(t)) {
        previous.set(t, f);
        queue.push(t);
      }
    }
  }
  return [start];
}

export function describe(v: Violation): string {
  if (v.kind === 'forbidden') return `forbidden import: ${v.files[0]} imports ${v.files[1]}`;
  return `import cycle: ${[...v.files, v.files[0]].join(' → ')}`;
}
