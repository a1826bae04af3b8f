// Owns noticing a re-signed CRL on disk and handing it to whoever enforces it (the embedded broker, the gateway's
// own revocation check), so revocation needs no restart.
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';

/** Something that enforces the CRL; it throws (with a `code`) to refuse one and keep the one in use. */
export interface CrlTarget {
  /** Names the refusal in the log: `<name>.crl_refused`. */
  name: string;
  reloadCrl(pem: string): unknown;
}

export interface CrlWatchDeps {
  file: string;
  /** Each gets every new CRL, in this order; one refusing it does not keep it from the others. */
  targets: readonly CrlTarget[];
  logger: Logger;
  /** The CRL the targets started with, so the first event for the same bytes changes nothing. */
  current: string;
}

export interface CrlWatch {
  /** Reads the file now and applies it if it changed; what a file event does. */
  check(): void;
  close(): void;
}

/**
 * Watches the CRL's directory rather than the file, so that a CRL replaced by rename is seen as well as
 * one rewritten in place. A half-written file fails the signature check and is skipped: the write that
 * completes it raises another event. A CRL some target refused is offered again on the next event.
 */
export function watchCrl(deps: CrlWatchDeps): CrlWatch {
  const { logger } = deps;
  let applied = deps.current;
  const check = (): void => {
    let pem: string;
    try {
      pem = readFileSync(deps.file, 'utf8');
    } catch {
      return; // between a delete and a rename; the next event has the file
    }
    if (pem === applied) return;
    let all = true;
    for (const target of deps.targets) {
      try {
        target.reloadCrl(pem);
      } catch (err) {
        all = false;
        const code = (err as { code?: unknown }).code;
        logger.warn(
          {
            event: `${target.name}.crl_refused`,
            code: typeof code === 'string' ? code : 'CRL_INVALID',
            reason: (err as Error).message,
          },
          'CRL not applied',
        );
      }
    }
    if (all) applied = pem;
  };
  const name = basename(deps.file);
  let watcher: FSWatcher | null = watch(dirname(deps.file), (_event, changed) => {
    if (changed === null || changed === name) check();
  });
  watcher.on('error', (err) => logger.error({ event: 'broker.crl_watch_failed', err }, 'CRL watch failed'));
  return {
    check,
    close() {
      watcher?.close();
      watcher = null;
    },
  };
}
