// Owns `npm run vectors`: writes protocols/vectors/*.json from the public test keys, or with --check compares them.
import '../../runtime.ts';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildVectors, TestKeysFileSchema } from '../test-vectors.ts';

const USAGE = `Usage: npm run vectors [-- --check | --help]

Rebuilds protocols/vectors/{tokens,announcements,commands}.json from protocols/vectors/test-keys.json
(Ed25519 is deterministic, so unchanged code gives unchanged files), and acks.json when it is missing
(ECDSA signatures are randomised; pass --acks to rebuild it anyway).

  --check   write nothing; exit 1 when a deterministic file differs from what the code builds
  --acks    rebuild acks.json too
`;

export const VECTORS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'vectors');
const DETERMINISTIC = ['tokens', 'announcements', 'commands'] as const;
const file = (name: string): string => join(VECTORS_DIR, `${name}.json`);
const render = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

async function main(argv: string[]): Promise<number> {
  const unknown = argv.find((a) => !['--check', '--acks', '--help', '-h'].includes(a));
  if (unknown !== undefined) {
    console.error(`vectors: unknown argument ${unknown} (see --help)`);
    return 2;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  const keys = TestKeysFileSchema.parse(JSON.parse(readFileSync(file('test-keys'), 'utf8')));
  const vectors = await buildVectors(keys);
  if (argv.includes('--check')) {
    const stale = DETERMINISTIC.filter(
      (n) => !existsSync(file(n)) || readFileSync(file(n), 'utf8') !== render(vectors[n]),
    );
    for (const n of stale)
      console.error(`vectors: ${n}.json is not what the code builds; run npm run vectors`);
    return stale.length === 0 ? 0 : 1;
  }
  for (const n of DETERMINISTIC) writeFileSync(file(n), render(vectors[n]));
  if (argv.includes('--acks') || !existsSync(file('acks'))) writeFileSync(file('acks'), render(vectors.acks));
  for (const n of DETERMINISTIC) console.log(`${n}: ${vectors[n].cases.length} cases`);
  console.log(`acks: ${vectors.acks.cases.length} cases`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
