// Owns the gateway keys a car trusts: the enrollment file until the first announcement, then the last one it accepted.
import { z } from 'zod';
import type { KeyRing } from '../protocols/jws.ts';
import {
  keyRingFrom,
  type TrustedJwk,
  type TrustedKeysFile,
  TrustedKeysFileSchema,
} from '../protocols/keys.ts';
import { type Cell, fileCell, memoryCell } from './state-file.ts';

export interface KeyStore {
  ring(): KeyRing;
  /** The seq of the announcement the keys came from; 0 for the enrollment file. */
  seq(): number;
  /**
   * Replaces the keys after the car accepted an announcement (TOKEN.md §8). Throws when the new keys cannot be
   * persisted: a restart would otherwise bring back a key the announcement retired.
   */
  replace(seq: number, keys: TrustedJwk[]): void;
}

const KeyFileSchema = z.strictObject({
  v: z.literal(1),
  seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  keys: TrustedKeysFileSchema.shape.keys,
});
type KeyFile = z.infer<typeof KeyFileSchema>;

const fromEnrollment = (enrolled: TrustedKeysFile): KeyFile => ({ v: 1, seq: 0, keys: enrolled.keys });

function createStore(cell: Cell<KeyFile>): KeyStore {
  let cached: { file: KeyFile; ring: KeyRing } | null = null;
  return {
    ring() {
      const file = cell.read();
      if (cached?.file !== file) cached = { file, ring: keyRingFrom(file) };
      return cached.ring;
    },
    seq: () => cell.read().seq,
    replace(seq, keys) {
      cell.write(KeyFileSchema.parse({ v: 1, seq, keys }));
    },
  };
}

export function createMemoryKeyStore(enrolled: TrustedKeysFile): KeyStore {
  return createStore(memoryCell(fromEnrollment(enrolled)));
}

export interface FileKeyStoreDeps {
  file: string;
  /** The trust anchors from enrollment, used until the file exists. */
  enrolled: TrustedKeysFile;
  onError?: (err: unknown) => void;
}

/** Keys persisted to a JSON file; an unreadable file throws SIM_KEY_STORE_CORRUPT at creation. */
export function createFileKeyStore(deps: FileKeyStoreDeps): KeyStore {
  return createStore(
    fileCell({
      file: deps.file,
      schema: KeyFileSchema,
      initial: () => fromEnrollment(deps.enrolled),
      corruptCode: 'SIM_KEY_STORE_CORRUPT',
      onError: deps.onError,
    }),
  );
}
