// Owns the `npm run keys` program: the composition root of the key CLI, the only reader of process.env here.
import '../runtime.ts';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { ConfigError, parseConfig } from './config.ts';
import { runKeysCli } from './keys-cli.ts';
import { openStore } from './store/store.ts';

try {
  const config = parseConfig(process.env);
  process.exitCode = await runKeysCli({
    argv: process.argv.slice(2),
    openStore: () => openStore({ kind: 'sqlite', file: join(config.DATA_DIR, 'gateway.sqlite') }),
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    now: Date.now,
    newId: () => randomUUID().replaceAll('-', ''),
  });
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : `keys: ${(err as Error).message}`);
  process.exitCode = err instanceof ConfigError ? 2 : 1;
}
