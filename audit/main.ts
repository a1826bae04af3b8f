// Owns the audit process: the composition root wiring the real files, configuration and clock into the CLI.
import '../runtime.ts';
import { readFileSync, writeFileSync } from 'node:fs';
import { ConfigError, parseConfig } from '../gateway/platform/config.ts';
import { runAuditCli } from './cli.ts';
import { exportFromStore } from './export.ts';

try {
  const config = parseConfig(process.env);
  process.exitCode = await runAuditCli(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    readFile: (path) => readFileSync(path, 'utf8'),
    writeFile: (path, text) => writeFileSync(path, text, { mode: 0o644 }),
    exportBundle: ({ dataDir, certsDir }) =>
      exportFromStore({
        dataDir,
        certsDir,
        databaseUrl: config.DATABASE_URL,
        origin: config.AUDIT_ORIGIN,
        now: Date.now,
      }),
    defaults: { dataDir: config.DATA_DIR, certsDir: config.CERTS_DIR },
  });
} catch (err) {
  process.stderr.write(`audit: ${err instanceof ConfigError ? err.message : (err as Error).message}\n`);
  process.exitCode = 1;
}
