// Owns exporting the audit log from a store on disk: open it, sign a checkpoint of all of it, build the bundle.
import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { devPkiPaths } from '../certs/dev-pki.ts';
import { createAuditLog } from '../gateway/audit/log.ts';
import { openStore } from '../gateway/store/store.ts';
import type { AuditBundle } from '../protocols/audit/index.ts';
import { AuditCliError } from './errors.ts';

export interface ExportOptions {
  dataDir: string;
  /** The PostgreSQL store (DATABASE_URL), instead of the SQLite file in dataDir. */
  databaseUrl?: string | undefined;
  certsDir: string;
  origin: string;
  now: () => number;
}

/** The gateway's store file in DATA_DIR (gateway/gateway.ts opens the same one). */
export const STORE_FILE = 'gateway.sqlite';

/**
 * Builds a bundle from the store; the gateway may keep running (SQLite WAL: this reads a snapshot and
 * writes one checkpoint row). Entries below the new checkpoint's size never change, so the bundle is
 * consistent whatever is appended meanwhile.
 */
export async function exportFromStore(options: ExportOptions): Promise<AuditBundle> {
  const file = join(options.dataDir, STORE_FILE);
  // Opening would create an empty store, and an empty bundle would verify: refuse instead.
  if (!options.databaseUrl && !existsSync(file))
    throw new AuditCliError('STORE_MISSING', `no store at ${file}; set --data-dir`);
  const keyFile = devPkiPaths(options.certsDir).auditCheckpointKey;
  if (!existsSync(keyFile))
    throw new AuditCliError('KEY_MISSING', `no checkpoint key at ${keyFile}; set --certs-dir`);
  const privateKey = createPrivateKey(readFileSync(keyFile, 'utf8'));
  const store = await openStore(
    options.databaseUrl ? { kind: 'postgres', url: options.databaseUrl } : { kind: 'sqlite', file },
  );
  try {
    const audit = createAuditLog({
      db: store.db,
      signer: { origin: options.origin, privateKey },
      now: options.now,
    });
    return await audit.exportBundle();
  } finally {
    await store.close();
  }
}
