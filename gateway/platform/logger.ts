// Owns the logger: pino JSON (pino-pretty in development) that keeps keys, tokens and secrets out of every line.
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/**
 * Three layers, so one mistake does not leak a secret:
 * 1. the request serializer shows only allowlisted header values and no query values (deny by default);
 * 2. fields named like a secret are censored wherever they sit, up to three levels deep;
 * 3. the finished line is scrubbed of anything shaped like a secret, whatever its field name.
 */
const SECRET_FIELDS = [
  'authorization',
  'cookie',
  'token',
  'accessToken',
  'apiKey',
  'key',
  'privateKey',
  'secret',
  'webhookSecret',
  'signingSecret',
  'password',
];

export const REDACT_PATHS = [
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
  'req.headers["idempotency-key"]',
];

export const CENSOR = '[redacted]';

/** Value shapes that are secrets wherever they appear; tokens may only ever appear as their hash. */
export const SECRET_PATTERNS: ReadonlyArray<[RegExp, string]> = [
  [
    /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----/g,
    '[redacted-private-key]',
  ],
  // A compact JWS (RFC 7515 §7.1): the command token, or any other.
  [/eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+/g, '[redacted-token]'],
  // API keys as createApiKey makes them.
  [/\bck_[A-Za-z0-9_-]{16,}/g, '[redacted-api-key]'],
  [/\bwhsec_[A-Za-z0-9+/=_-]{8,}/g, '[redacted-secret]'],
  [/\b(Bearer|Basic) [A-Za-z0-9._~+/=-]{8,}/g, '$1 [redacted]'],
];

export function scrubSecrets(line: string): string {
  let out = line;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** Header values an operator may read; every other header is listed by name only. */
const SHOWN_HEADERS = new Set([
  'accept',
  'content-length',
  'content-type',
  'host',
  'user-agent',
  'x-forwarded-for',
  'x-request-id',
]);

interface LoggedRequest {
  method?: string;
  url?: string;
  ip?: string;
  headers?: Record<string, string | string[] | undefined>;
}

/** Query values are never logged: only the parameter names. */
function safeUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const q = url.indexOf('?');
  if (q < 0) return url;
  const names = [...new URLSearchParams(url.slice(q + 1)).keys()];
  return `${url.slice(0, q)}?${names.map((n) => `${n}=${CENSOR}`).join('&')}`;
}

export function serializeRequest(req: LoggedRequest): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(req.headers ?? {})) {
    headers[name] = SHOWN_HEADERS.has(name) ? value : CENSOR;
  }
  return { method: req.method, url: safeUrl(req.url), remoteAddress: req.ip, headers };
}

export interface CreateLoggerOptions {
  level: string;
  /** Human-readable lines through pino-pretty (a worker thread); JSON otherwise. */
  pretty?: boolean;
  /** Where JSON lines go (a stream, or a file descriptor for pretty mode); stdout by default. */
  destination?: DestinationStream | 1 | 2;
}

export function createLogger(options: CreateLoggerOptions): Logger {
  const base: LoggerOptions = {
    level: options.level,
    base: { service: 'curbside-gateway' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    serializers: { req: serializeRequest, err: pino.stdSerializers.err },
    hooks: { streamWrite: scrubSecrets },
  };
  const destination = options.destination;
  if (options.pretty) {
    const fd = typeof destination === 'number' ? destination : 1;
    return pino({
      ...base,
      transport: {
        target: 'pino-pretty',
        options: { destination: fd, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' },
      },
    });
  }
  if (typeof destination === 'number') return pino(base, pino.destination({ fd: destination, sync: true }));
  return destination ? pino(base, destination) : pino(base);
}

/** Resolves once buffered lines are written (a transport's worker included). */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => logger.flush(() => resolve()));
}
