// Owns the `npm run keys` program: the composition root of the key CLI, the only reader of process.env here.
import '../../runtime.ts';
import { randomUUID } from 'node:crypto';
import { ConfigError, parseConfig } from '../platform/config.ts';
import { openStore, storeConfigOf } from '../store/store.ts';
import { runKeysCli } from './keys-cli.ts';

try {
  const config = parseConfig(process.env);
  process.exitCode = await runKeysCli({
    argv: process.argv.slice(2),
    openStore: () => openStore(storeConfigOf(config)),
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    now: Date.now,
    newId: () => randomUUID().replaceAll('-', ''),
  });
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : `keys: ${(err as Error).message}`);
  process.exitCode = err instanceof ConfigError ? 2 : 1;
}
