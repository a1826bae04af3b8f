// Owns one live stream to the console (Server-Sent Events, WHATWG HTML §9.2): its frames, its heartbeat, ending
// it when its key is revoked or its reader falls behind, and freeing it when the reader goes.
import { PassThrough } from 'node:stream';
import type { FastifyReply } from 'fastify';
import type { Kysely } from 'kysely';
import { type Caller, isKeyActive } from '../access/api-keys.ts';
import { ApiError } from '../errors.ts';
import type { Database } from '../store/schema.ts';
import type { ConsoleHub, ConsoleSubscriber } from './hub.ts';
import type { StreamFrameType } from './schemas.ts';

export interface StreamDeps {
  db: Kysely<Database>;
  hub: ConsoleHub;
  /** How often a comment line keeps proxies and the connection timeout from closing an idle stream, and the key
   * is looked up again (default 15 s). */
  heartbeatMs?: number;
  /** Bytes a stream may hold unsent before it is ended as too slow (default 1 MiB); the page then reloads. */
  maxBufferedBytes?: number;
}

/**
 * The page reads the stream with fetch(), so the API key travels in the Authorization header like on every other
 * route and never in a URL (EventSource cannot set headers; a URL is logged). A frame is `event: <type>` and one
 * `data:` line of JSON (JSON has no raw newlines, so one line is always enough).
 */
export function openStream(reply: FastifyReply, caller: Caller, deps: StreamDeps) {
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  const maxBuffered = deps.maxBufferedBytes ?? 1024 * 1024;
  const body = new PassThrough();
  let unsubscribe: (() => void) | null = null;
  let heartbeat: NodeJS.Timeout | null = null;

  const finish = (): void => {
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = null;
    unsubscribe?.();
    unsubscribe = null;
    if (body.writableEnded) return;
    body.end();
    // Once the last frame is out the connection goes too: a reader that stopped reading without closing its
    // socket would otherwise hold a closing gateway until the connection timeout.
    const socket = reply.raw.socket;
    if (reply.raw.writableFinished) socket?.destroy();
    else reply.raw.once('finish', () => socket?.destroy());
  };
  const write = (type: StreamFrameType, data: string): boolean => {
    if (body.writableEnded) return false;
    if (body.writableLength > maxBuffered) return false;
    body.write(`event: ${type}\ndata: ${data}\n\n`);
    return true;
  };
  const subscriber: ConsoleSubscriber = {
    caller,
    send: write,
    end(code) {
      write('end', JSON.stringify({ code }));
      finish();
    },
  };
  unsubscribe = deps.hub.subscribe(subscriber);
  if (!unsubscribe) {
    throw new ApiError('RATE_LIMITED', {
      retryAfterS: 10,
      detail: 'too many open console streams for this API key (or in all); close one and retry',
    });
  }
  heartbeat = setInterval(() => {
    // A comment line (starts with a colon): readers skip it.
    if (!body.writableEnded) body.write(': ping\n\n');
    isKeyActive(deps.db, caller.keyId).then(
      (active) => {
        if (!active) subscriber.end('UNAUTHENTICATED');
      },
      () => undefined,
    );
  }, heartbeatMs);
  heartbeat.unref();
  // The response closes when the reader goes away (or the stream ended): either way the subscription ends.
  reply.raw.once('close', finish);
  body.once('close', finish);
  // `retry` is for EventSource readers; the page reconnects by itself with a backoff.
  body.write(`retry: 3000\nevent: ready\ndata: ${JSON.stringify({ keyId: caller.keyId })}\n\n`);
  return (
    reply
      .header('content-type', 'text/event-stream; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('x-accel-buffering', 'no')
      // Never reused for another request: the connection ends with the stream.
      .header('connection', 'close')
      .send(body)
  );
}
