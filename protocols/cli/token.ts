// Owns the reviewer's token command line: inspect a token without trusting it, or verify it step by step (TOKEN.md §5).
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { KEYS_TYP } from '../key-announcement.ts';
import { keyRingFrom, type TrustedKeysFile, TrustedKeysFileSchema } from '../keys.ts';
import { TokenActionSchema } from '../messages.ts';
import { TOKEN_ISSUER, TOKEN_STEPS, TOKEN_TYP, verifyAccessToken } from '../token.ts';
import { vinProblem } from '../vin.ts';

export interface TokenCliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  readFile(path: string): string;
  /** The whole of standard input, for a token given as "-". */
  readStdin(): Promise<string>;
}

export const EXIT_OK = 0;
/** verify: the token was refused; inspect: it could not be decoded. */
export const EXIT_REFUSED = 1;
export const EXIT_USAGE = 2;
export const DEFAULT_KEYS_FILE = 'certs/dev/trusted-keys.json';

const HELP = `Usage: npm run token -- <command> [options]

Commands:
  inspect <token>   decode a token (or any compact JWS) and print it; verifies nothing
  verify <token>    run the car's verification, printing every step in order (TOKEN.md §5)

A token of "-" is read from standard input. Exit status: 0 accepted (verify) or decoded (inspect),
1 refused or undecodable, 2 bad arguments.

verify options:
  --vin VIN             the car doing the verifying (required)
  --at TIME             the car's time: ISO 8601 (2026-01-01T12:00:00Z), seconds since the epoch,
                        or "unknown" (required)
  --keys FILE           the car's trust anchors, a trusted-keys.json (default ${DEFAULT_KEYS_FILE})
  --action ACTION       unlock | lock | revoke: the command's action (default: the token's own act)
  --command-id ID       the command's commandId (default: the token's own cid)
  --delivery-id ID      the command's deliveryId (default: the token's own sub)
  --issuer ISS          the issuer the car was enrolled with (default ${TOKEN_ISSUER})
  --revoked ID          a delivery the car holds as revoked (repeatable)
  --seen JTI            a jti the car has already accepted (repeatable)
`;

class UsageError extends Error {}

function parse<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0] ?? 'bad arguments');
  }
}

/** Decodes a base64url JSON segment without trusting it; null when it is not JSON. */
function decodeJson(segment: string | undefined): unknown {
  if (!segment) return null;
  try {
    return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
}

const asRecord = (value: unknown): Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};

const iso = (seconds: unknown): string =>
  typeof seconds === 'number' && Number.isFinite(seconds)
    ? new Date(seconds * 1000).toISOString()
    : String(seconds);

async function tokenArg(positionals: string[], io: TokenCliIo): Promise<string> {
  if (positionals.length !== 1) throw new UsageError('give exactly one token');
  const token = positionals[0] === '-' ? (await io.readStdin()).trim() : (positionals[0] as string);
  if (token.length === 0) throw new UsageError('the token is empty');
  return token;
}

async function inspect(args: string[], io: TokenCliIo): Promise<number> {
  const { positionals, values } = parse({
    args,
    options: { help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    io.stdout(HELP);
    return EXIT_OK;
  }
  const token = await tokenArg(positionals, io);
  const parts = token.split('.');
  io.stdout('NOT VERIFIED: decoded only, nothing below is trusted. Use verify to check it.\n');
  if (parts.length !== 3) {
    io.stdout(`${parts.length} segments; a compact JWS has 3.\n`);
    return EXIT_REFUSED;
  }
  const header = decodeJson(parts[0]);
  const detached = parts[1] === '';
  const payload = detached ? null : decodeJson(parts[1]);
  const typ = asRecord(header).typ;
  const kind =
    typ === TOKEN_TYP
      ? 'access token'
      : typ === KEYS_TYP
        ? 'key announcement'
        : detached
          ? 'detached JWS (an ack signature?)'
          : 'unknown kind';
  io.stdout(`kind       ${kind}\n`);
  io.stdout(`bytes      ${Buffer.byteLength(token)}\n`);
  io.stdout(
    `header     ${header === null ? '(not JSON)' : JSON.stringify(header, null, 2).replaceAll('\n', '\n           ')}\n`,
  );
  if (!detached) {
    io.stdout(
      `payload    ${payload === null ? '(not JSON)' : JSON.stringify(payload, null, 2).replaceAll('\n', '\n           ')}\n`,
    );
  }
  const claims = asRecord(payload);
  if (typ === TOKEN_TYP && 'exp' in claims) {
    const lifetime =
      typeof claims.exp === 'number' && typeof claims.nbf === 'number' ? `${claims.exp - claims.nbf} s` : '?';
    io.stdout(
      `times      iat ${iso(claims.iat)}  nbf ${iso(claims.nbf)}  exp ${iso(claims.exp)}  (lifetime ${lifetime})\n`,
    );
  }
  io.stdout(`signature  ${Buffer.from(parts[2] ?? '', 'base64url').length} bytes\n`);
  return header === null || (!detached && payload === null) ? EXIT_REFUSED : EXIT_OK;
}

function parseAt(value: string): number | null {
  if (value === 'unknown') return null;
  if (/^\d{1,12}$/.test(value)) return Number(value) * 1000;
  // A date alone would be read as UTC midnight silently; ask for a full time with its offset.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value)) {
    throw new UsageError(
      `--at ${value}: give ISO 8601 with an offset, seconds since the epoch, or "unknown"`,
    );
  }
  return Date.parse(value);
}

function readKeys(path: string, io: TokenCliIo): TrustedKeysFile {
  let text: string;
  try {
    text = io.readFile(path);
  } catch (err) {
    throw new UsageError(`--keys ${path}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  try {
    return TrustedKeysFileSchema.parse(JSON.parse(text));
  } catch {
    throw new UsageError(`--keys ${path}: not a trusted-keys file (TOKEN.md §2)`);
  }
}

async function verify(args: string[], io: TokenCliIo): Promise<number> {
  const { positionals, values } = parse({
    args,
    options: {
      help: { type: 'boolean', short: 'h' },
      vin: { type: 'string' },
      at: { type: 'string' },
      keys: { type: 'string' },
      action: { type: 'string' },
      'command-id': { type: 'string' },
      'delivery-id': { type: 'string' },
      issuer: { type: 'string' },
      revoked: { type: 'string', multiple: true },
      seen: { type: 'string', multiple: true },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    io.stdout(HELP);
    return EXIT_OK;
  }
  const token = await tokenArg(positionals, io);
  if (values.vin === undefined) throw new UsageError('verify needs --vin VIN');
  const problem = vinProblem(values.vin);
  if (problem !== null) throw new UsageError(`--vin ${values.vin}: ${problem}`);
  if (values.at === undefined) throw new UsageError('verify needs --at TIME');
  const now = parseAt(values.at);
  const keysFile = values.keys ?? DEFAULT_KEYS_FILE;
  const keys = keyRingFrom(readKeys(keysFile, io));
  const claimed = asRecord(decodeJson(token.split('.')[1]));
  const fromToken: string[] = [];
  const pick = (given: string | undefined, claim: string, name: string): string => {
    if (given !== undefined) return given;
    fromToken.push(name);
    return typeof claimed[claim] === 'string' ? (claimed[claim] as string) : '';
  };
  const actionText = pick(values.action, 'act', '--action');
  const action = TokenActionSchema.safeParse(actionText);
  if (values.action !== undefined && !action.success)
    throw new UsageError(`--action ${values.action}: unlock, lock or revoke`);
  const seen = new Set(values.seen ?? []);
  const revoked = new Set(values.revoked ?? []);
  const verdict = await verifyAccessToken(token, {
    keys,
    issuer: values.issuer ?? TOKEN_ISSUER,
    vin: values.vin,
    // An act outside the set cannot be the command's: the act step then refuses it, as a car would.
    action: action.success ? action.data : 'unlock',
    commandId: pick(values['command-id'], 'cid', '--command-id'),
    deliveryId: pick(values['delivery-id'], 'sub', '--delivery-id'),
    now,
    replay: { claim: (jti) => (seen.has(jti) ? 'replayed' : 'ok') },
    isRevoked: (id) => revoked.has(id),
  });
  io.stdout(
    `verifying as ${values.vin} at ${now === null ? 'an unknown time' : new Date(now).toISOString()}, keys from ${keysFile}\n`,
  );
  if (fromToken.length > 0) {
    io.stdout(
      `note: ${fromToken.join(', ')} not given: taken from the token itself, so the checks using them pass trivially\n`,
    );
  }
  TOKEN_STEPS.forEach(({ step }, i) => {
    const ran = verdict.steps.find((s) => s.step === step);
    const n = String(i + 1).padStart(3);
    if (!ran) io.stdout(`${n}  ${step.padEnd(15)} -     not run\n`);
    else if (ran.ok) io.stdout(`${n}  ${step.padEnd(15)} pass\n`);
    else io.stdout(`${n}  ${step.padEnd(15)} FAIL  ${ran.code ?? ''}  ${ran.detail ?? ''}\n`);
  });
  io.stdout(verdict.ok ? 'verdict: ACCEPTED\n' : `verdict: REFUSED ${verdict.code}\n`);
  return verdict.ok ? EXIT_OK : EXIT_REFUSED;
}

const COMMANDS: Record<string, (args: string[], io: TokenCliIo) => Promise<number>> = { inspect, verify };

/** Runs one command; 0 accepted or decoded, 1 refused or undecodable, 2 bad arguments (one line on stderr). */
export async function runTokenCli(argv: readonly string[], io: TokenCliIo): Promise<number> {
  const [first, ...rest] = argv;
  try {
    if (first === undefined || first === '--help' || first === '-h') {
      if (first === undefined) throw new UsageError('give a command: inspect or verify');
      io.stdout(HELP);
      return EXIT_OK;
    }
    const command = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
    if (command === undefined) throw new UsageError(`unknown command ${first}`);
    return await command(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`token: ${err.message} (see --help)\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
}
