// Owns the `npm run migrate` program: applies the store's pending migrations (SQLite in DATA_DIR, or the
// PostgreSQL of DATABASE_URL) and says which; the gateway also applies them at every start.
import '../../runtime.ts';

import { ConfigError, parseConfig } from '../platform/config.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, parseProgramArgs, programHelp } from '../platform/program.ts';
import { openStore, redactUrl, StoreOpenError, storeConfigOf } from './store.ts';

const args = parseProgramArgs(process.argv.slice(2));
if (args.kind === 'usage') {
  console.error(`migrate: ${args.reason}`);
  process.exitCode = EXIT_USAGE;
} else if (args.kind === 'help') {
  console.log(programHelp('npm run migrate: applies the pending migrations of the store the settings name'));
} else {
  try {
    const config = parseConfig(process.env);
    const target = storeConfigOf(config);
    const store = await openStore(target);
    const where = target.kind === 'postgres' ? redactUrl(target.url) : target.file;
    try {
      console.log(
        store.migrated.length === 0
          ? `migrate: ${where} is up to date`
          : `migrate: applied ${store.migrated.join(', ')} to ${where}`,
      );
    } finally {
      await store.close();
    }
    process.exitCode = EXIT_OK;
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exitCode = EXIT_USAGE;
    } else {
      console.error(
        err instanceof StoreOpenError ? `migrate: ${err.message}` : `migrate: ${(err as Error).message}`,
      );
      process.exitCode = EXIT_FAILED;
    }
  }
}
