// Owns putting PKI material on disk: private keys 0600, public files 0644, parent directories created.
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';

export const PRIVATE_FILE_MODE = 0o600;
export const PUBLIC_FILE_MODE = 0o644;
/** Directories hold private keys, so only their owner may list them. */
export const DIRECTORY_MODE = 0o700;

/**
 * Creates the file with its final mode, and fixes the mode of a file that already existed before
 * a byte is written, so a key is never readable by others even for a moment. A crash mid-write leaves
 * a truncated file, which ensureDevPki sees as an unusable pair and re-issues.
 */
async function writeWithMode(path: string, data: string, mode: number, parentExists = false): Promise<void> {
  if (!parentExists) await mkdir(dirname(path), { recursive: true, mode: DIRECTORY_MODE });
  const file = await open(path, 'w', mode);
  try {
    await file.chmod(mode);
    await file.writeFile(data);
  } finally {
    await file.close();
  }
}

export const writePrivateFile = (path: string, data: string): Promise<void> =>
  writeWithMode(path, data, PRIVATE_FILE_MODE);

export const writePublicFile = (path: string, data: string): Promise<void> =>
  writeWithMode(path, data, PUBLIC_FILE_MODE);

/**
 * Key first: a crash in between leaves a pair that does not match, which ensureDevPki re-issues.
 * `parentsExist` skips creating the directories, for a caller writing many pairs into one it made.
 */
export async function writeIdentity(
  files: { cert: string; key: string },
  issued: { certPem: string; keyPem: string },
  options: { parentsExist?: boolean } = {},
): Promise<void> {
  await writeWithMode(files.key, issued.keyPem, PRIVATE_FILE_MODE, options.parentsExist);
  await writeWithMode(files.cert, issued.certPem, PUBLIC_FILE_MODE, options.parentsExist);
}
