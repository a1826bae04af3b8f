// Owns the logger: pino JSON with secrets redacted by path, so no key or token reaches a log line.
import pino, { type DestinationStream, type Logger } from 'pino';

/** Paths whose values are secrets; tokens may only ever appear as their hash. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["idempotency-key"]',
  'headers.authorization',
  '*.token',
  '*.apiKey',
  '*.privateKey',
  '*.secret',
  '*.key',
  'token',
  'apiKey',
  'privateKey',
  'secret',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { service: 'curbside-gateway' },
    },
    destination,
  );
}
