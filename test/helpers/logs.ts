// Test harness: a pino destination that keeps every line, to search what the gateway logged.
import { Writable } from 'node:stream';

export interface LogCapture {
  stream: Writable;
  /** Everything written so far, as written. */
  text(): string;
  /** Every line parsed; throws if one is not JSON. */
  lines(): Array<Record<string, unknown>>;
}

export function captureLogs(): LogCapture {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  const text = (): string => chunks.join('');
  return {
    stream,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
