// Owns the audit command line: parsing arguments, running export or verify, and what they print.
import { createPublicKey } from 'node:crypto';
import { resolve } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import {
  type AuditBundle,
  AuditError,
  type NoteVerifierKey,
  parseVerifierKey,
  verifierKeyFor,
  verifyBundle,
} from '../protocols/audit/index.ts';
import { parseStrictJson, StrictJsonError } from '../protocols/strict-json.ts';
import { AuditCliError } from './errors.ts';
import { reportLog } from './report.ts';

export interface AuditCliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  readFile(path: string): string;
  writeFile(path: string, text: string): void;
  /** Builds a bundle from the store in dataDir with the checkpoint key in certsDir (audit/export.ts). */
  exportBundle(options: { dataDir: string; certsDir: string }): Promise<AuditBundle>;
  /** DATA_DIR and CERTS_DIR as configured. */
  defaults: { dataDir: string; certsDir: string };
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

const MAIN_HELP = `Usage: npm run audit -- <command> [options]

Commands:
  export <file>                  write a self-contained bundle of the audit log kept in DATA_DIR
  verify <bundle> --key <file>   re-check a bundle offline and print who authorized what, per delivery

Run a command with --help for its options. The format is in protocols/AUDIT.md.
`;

const EXPORT_HELP = `Usage: npm run audit -- export <file> [--data-dir DIR] [--certs-dir DIR]

Signs a checkpoint of the whole log if it grew since the last one, then writes every entry, every
stored checkpoint, the consistency proofs between them and the verifier key to <file> as JSON.
The gateway may keep running.

  --data-dir DIR    where the store is (default DATA_DIR, or ./data)
  --certs-dir DIR   where audit-checkpoint.key is (default CERTS_DIR, or ./certs/dev)
`;

const VERIFY_HELP = `Usage: npm run audit -- verify <bundle> --key <file> [--checkpoint <file>]... [--require-relock]

Re-checks the bundle with no network and no database: checkpoint signatures, consistency between
checkpoints, each entry's index and link to its predecessor, and that the entries hash to the
signed roots. Then prints, per delivery, who authorized what and when, and whether each unlock
the car confirmed was followed by a lock the car confirmed. Exits 1 with a reason code at the
first failure.

  --key FILE          the checkpoint public key, from the operator out of band: a C2SP verifier key
                      line (<name>+<id>+<key>) or a PEM public key (certs/dev/audit-checkpoint.pub)
  --checkpoint FILE   a checkpoint note you hold from elsewhere (an earlier GET /v1/audit/checkpoint,
                      a witness): the bundle must extend it, or verify fails; may be repeated
  --require-relock    also fail (UNLOCK_NOT_RELOCKED) if an unlock has no car-confirmed lock after it
  --quiet             print the verdict only
`;

const usage = (reason: string): AuditCliError => new AuditCliError('CLI_USAGE', reason);

type Parsed<T extends ParseArgsConfig> = ReturnType<typeof parseArgs<T>>;

function parse<T extends ParseArgsConfig>(config: T): Parsed<T> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw usage((error as Error).message.split('\n')[0] ?? 'bad arguments');
  }
}

function read(io: AuditCliIo, path: string, what: string): string {
  try {
    return io.readFile(path);
  } catch (error) {
    throw new AuditCliError('FILE_UNREADABLE', `cannot read ${what} ${path}: ${(error as Error).message}`);
  }
}

/** A verifier key line names its key; a PEM key takes the bundle's origin as its name (AUDIT.md §5). */
function trustedKey(text: string, origin: unknown): NoteVerifierKey {
  if (!text.includes('-----BEGIN')) return parseVerifierKey(text);
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey(text);
  } catch (error) {
    throw new AuditError('KEY_INVALID', `not a PEM key: ${(error as Error).message}`);
  }
  if (typeof origin !== 'string') throw new AuditError('BUNDLE_MALFORMED', 'origin: missing');
  return verifierKeyFor(origin, key);
}

async function exportCommand(args: string[], io: AuditCliIo): Promise<number> {
  const { values, positionals } = parse({
    args,
    options: {
      help: { type: 'boolean', short: 'h' },
      'data-dir': { type: 'string' },
      'certs-dir': { type: 'string' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    io.stdout(EXPORT_HELP);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw usage('export takes exactly one output file');
  const file = resolve(positionals[0] as string);
  const bundle = await io.exportBundle({
    dataDir: resolve(values['data-dir'] ?? io.defaults.dataDir),
    certsDir: resolve(values['certs-dir'] ?? io.defaults.certsDir),
  });
  io.writeFile(file, `${JSON.stringify(bundle, null, 1)}\n`);
  io.stdout(
    `wrote ${file}: ${bundle.entries.length} entries, ${bundle.checkpoints.length} checkpoints of ${bundle.origin}\n` +
      `verify with: npm run audit -- verify ${file} --key <audit-checkpoint.pub>\n`,
  );
  return EXIT_OK;
}

async function verifyCommand(args: string[], io: AuditCliIo): Promise<number> {
  const { values, positionals } = parse({
    args,
    options: {
      help: { type: 'boolean', short: 'h' },
      key: { type: 'string' },
      checkpoint: { type: 'string', multiple: true },
      'require-relock': { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    io.stdout(VERIFY_HELP);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw usage('verify takes exactly one bundle file');
  if (values.key === undefined) throw usage('verify needs --key <checkpoint public key file>');
  const path = positionals[0] as string;
  let input: unknown;
  try {
    input = parseStrictJson(read(io, path, 'bundle'), 16);
  } catch (error) {
    if (error instanceof StrictJsonError)
      throw new AuditError('BUNDLE_MALFORMED', `${error.code}: ${error.message}`);
    throw error;
  }
  const key = trustedKey(read(io, values.key, 'key'), (input as { origin?: unknown } | null)?.origin);
  const knownCheckpoints = (values.checkpoint ?? []).map((p) => read(io, p, 'checkpoint'));
  const log = verifyBundle(input, { key, knownCheckpoints });
  const sizes = log.checkpoints.map((c) => c.size);
  io.stdout(
    [
      `Audit log ${log.origin}: VERIFIED`,
      `  entries: ${log.entries.length}, each at its index and linked to the one before`,
      `  signed checkpoints: ${sizes.length} (tree sizes ${sizes.join(', ')}), each consistent with the next`,
      `  latest checkpoint: size ${log.latest.size}, root ${log.latest.root.toString('base64')}`,
      `  signed by ${key.name}+${key.id.toString('hex')}`,
      ...(knownCheckpoints.length > 0
        ? [`  checkpoints you hold: ${knownCheckpoints.length}, each a prefix of this log`]
        : []),
      '',
    ].join('\n'),
  );
  const report = reportLog(log);
  if (!values.quiet) io.stdout(`${report.lines.join('\n')}\n`);
  const open = report.unlocks.filter((u) => u.relockedAt === null);
  if (values['require-relock'] && open.length > 0) {
    throw new AuditCliError(
      'UNLOCK_NOT_RELOCKED',
      `${open.length} unlocks without a car-confirmed lock after them: ${open.map((u) => `#${u.unlockedAt.index} (${u.deliveryId})`).join(', ')}`,
    );
  }
  return EXIT_OK;
}

const COMMANDS: Record<string, (args: string[], io: AuditCliIo) => Promise<number>> = {
  export: exportCommand,
  verify: verifyCommand,
};

/** Runs one command: 0 done, 1 failed (the reason code first), 2 bad arguments. */
export async function runAuditCli(argv: readonly string[], io: AuditCliIo): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (name === '--help' || name === '-h') {
      io.stdout(MAIN_HELP);
      return EXIT_OK;
    }
    if (name === undefined) throw usage('a command is needed: export or verify; try --help');
    const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (command === undefined) throw usage(`unknown command ${name}; try --help`);
    return await command(rest, io);
  } catch (error) {
    if (error instanceof AuditCliError && error.code === 'CLI_USAGE') {
      io.stderr(`audit: ${error.message}\n`);
      return EXIT_USAGE;
    }
    if (error instanceof AuditError || error instanceof AuditCliError) {
      io.stderr(
        `audit: ${name === 'verify' ? 'verify FAILED' : `${name} failed`}: ${error.code}: ${error.message}\n`,
      );
      return EXIT_FAILURE;
    }
    throw error;
  }
}
