// Owns the page's live feed: reads the gateway's Server-Sent Events with fetch() (so the key goes in a header),
// parses the frames (WHATWG HTML §9.2.6), and reconnects with a backoff when the stream drops.

export type FeedStatus = 'connecting' | 'live' | 'reconnecting' | 'ended';

export interface FeedHandlers {
  /** Every frame, `ready` first on each connection. */
  frame(type: string, data: unknown): void;
  status(status: FeedStatus, code?: string): void;
}

export interface Feed {
  close(): void;
}

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;

export function openFeed(key: string, handlers: FeedHandlers): Feed {
  const aborter = new AbortController();
  let delay = MIN_DELAY_MS;
  let stopped = false;

  /** Parses one block of lines; only `event` and `data` fields are used, comments are skipped. */
  const parse = (block: string): { type: string; data: unknown } | null => {
    let type = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    return data.length === 0 ? null : { type, data: JSON.parse(data.join('\n')) as unknown };
  };

  async function connectOnce(): Promise<'retry' | 'stop'> {
    const res = await fetch('/v1/console/events', {
      headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' },
      cache: 'no-store',
      signal: aborter.signal,
    });
    if (res.status === 401 || res.status === 403) {
      handlers.status('ended', res.status === 401 ? 'UNAUTHENTICATED' : 'SCOPE_MISSING');
      return 'stop';
    }
    if (!res.ok || !res.body) return 'retry';
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'retry';
      buffer += value.replaceAll('\r\n', '\n');
      let cut = buffer.indexOf('\n\n');
      while (cut !== -1) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        cut = buffer.indexOf('\n\n');
        const frame = parse(block);
        if (!frame) continue;
        if (frame.type === 'ready') {
          delay = MIN_DELAY_MS;
          handlers.status('live');
        }
        handlers.frame(frame.type, frame.data);
        // A revoked key ends for good; a gateway shutting down (or a reader too slow) is reconnected to.
        if (frame.type === 'end' && (frame.data as { code?: string }).code === 'UNAUTHENTICATED') {
          handlers.status('ended', 'UNAUTHENTICATED');
          return 'stop';
        }
      }
    }
  }

  void (async () => {
    handlers.status('connecting');
    while (!stopped) {
      const next = await connectOnce().catch(() => 'retry' as const);
      if (next === 'stop' || stopped) return;
      handlers.status('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(MAX_DELAY_MS, delay * 2);
    }
  })();

  return {
    close() {
      stopped = true;
      aborter.abort();
    },
  };
}
