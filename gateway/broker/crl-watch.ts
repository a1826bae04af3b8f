// Owns noticing a re-signed CRL on disk and handing it to the running broker, so revocation needs no restart.
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Broker } from './broker.ts';
import { BrokerError } from './errors.ts';

export interface CrlWatchDeps {
  file: string;
  broker: Pick<Broker, 'reloadCrl'>;
  logger: Logger;
  /** The CRL the broker started with, so the first event for the same bytes changes nothing. */
  current: string;
}

export interface CrlWatch {
  /** Reads the file now and applies it if it changed; what a file event does. */
  check(): void;
  close(): void;
}

/**
 * Watches the CRL's directory rather than the file, so that a CRL replaced by rename is seen as well as
 * one rewritten in place. A half-written file fails the broker's signature check and is skipped: the
 * write that completes it raises another event.
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
    try {
      deps.broker.reloadCrl(pem);
      applied = pem;
    } catch (err) {
      const code = err instanceof BrokerError ? err.code : 'CRL_INVALID';
      logger.warn({ event: 'broker.crl_refused', code, reason: (err as Error).message }, 'CRL not applied');
    }
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
