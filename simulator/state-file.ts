// Owns the car's durable state files: one JSON document each, read once, rewritten whole through an atomic rename.
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import type { z } from 'zod';
import { SimulatorError, type SimulatorErrorCode } from './errors.ts';

/** A value that survives a restart: `write` returns once it is on disk, and throws when it could not be. */
export interface Cell<T> {
  read(): T;
  write(value: T): void;
}

export function memoryCell<T>(initial: T): Cell<T> {
  let value = initial;
  return {
    read: () => value,
    write(next) {
      value = next;
    },
  };
}

/** Writes through a temporary file and a rename, so a crash leaves either the old or the new file whole. */
export function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    fchmodSync(fd, 0o600); // openSync's mode only applies when it creates the file
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

export interface FileCellDeps<S extends z.ZodType> {
  file: string;
  schema: S;
  /** The value when the file does not exist yet (it is not written until the first change). */
  initial: () => z.infer<S>;
  /** The code thrown at creation when the file exists but does not parse. */
  corruptCode: SimulatorErrorCode;
  /** Told when persisting fails, before write throws. */
  onError?: (err: unknown) => void;
}

/**
 * A cell persisted to a JSON file (mode 0600). A file that exists but does not parse stops the car at creation:
 * starting empty would forget used tokens, revocations or retirements.
 */
export function fileCell<S extends z.ZodType>(deps: FileCellDeps<S>): Cell<z.infer<S>> {
  mkdirSync(dirname(deps.file), { recursive: true, mode: 0o700 });
  let value: z.infer<S>;
  let text: string | null = null;
  try {
    text = readFileSync(deps.file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text === null) {
    value = deps.initial();
  } else {
    try {
      value = deps.schema.parse(JSON.parse(text));
    } catch (err) {
      throw new SimulatorError(deps.corruptCode, `${deps.file} is not readable`, { cause: err });
    }
  }
  return {
    read: () => value,
    write(next) {
      try {
        writeAtomically(deps.file, JSON.stringify(next));
      } catch (err) {
        deps.onError?.(err);
        throw err;
      }
      value = next;
    },
  };
}
