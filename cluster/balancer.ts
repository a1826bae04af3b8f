// Owns the local cluster's one HTTP entry point: a round-robin proxy over the replicas that skips one it cannot
// reach. A request is retried on another replica only when it never reached the first (the connection was refused);
// once sent, a failure is answered 502 and says the action may have happened, as a real load balancer must.
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface BalancerDeps {
  /** Each replica's base URL (http://127.0.0.1:port), in turn order. */
  targets: () => readonly string[];
  host?: string;
  port?: number;
  /** How long a replica that refused a connection is skipped. */
  benchMs?: number;
  now?: () => number;
  /** Largest request body forwarded, in bytes. */
  maxBodyBytes?: number;
}

export interface Balancer {
  url: string;
  port: number;
  /** Requests each target answered (by base URL), for a test to see the spread. */
  answered(): ReadonlyMap<string, number>;
  close(): Promise<void>;
}

const problem = (
  res: ServerResponse,
  status: number,
  code: string,
  detail: string,
  mayHaveSucceeded: boolean,
) => {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/problem+json' });
  res.end(
    JSON.stringify({ status, code, title: detail, detail, mayHaveSucceeded, retryable: !mayHaveSucceeded }),
  );
};

/** Connection errors that prove the request never reached the replica. */
const NEVER_SENT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);

export async function startBalancer(deps: BalancerDeps): Promise<Balancer> {
  const now = deps.now ?? Date.now;
  const benchMs = deps.benchMs ?? 2_000;
  const maxBody = deps.maxBodyBytes ?? 1_048_576;
  const benched = new Map<string, number>();
  const answered = new Map<string, number>();
  let turn = 0;

  /** The replicas to try, in order, starting with the next one in turn; benched ones last. */
  function order(): string[] {
    const all = [...deps.targets()];
    if (all.length === 0) return [];
    const start = turn++ % all.length;
    const rotated = [...all.slice(start), ...all.slice(0, start)];
    const t = now();
    const ready = rotated.filter((u) => (benched.get(u) ?? 0) <= t);
    return [...ready, ...rotated.filter((u) => !ready.includes(u))];
  }

  function forward(
    target: string,
    req: IncomingMessage,
    body: Buffer,
    res: ServerResponse,
  ): Promise<'done' | 'never-sent'> {
    return new Promise((resolve) => {
      const url = new URL(req.url ?? '/', target);
      const headers = { ...req.headers, host: url.host, 'x-forwarded-for': req.socket.remoteAddress ?? '' };
      delete headers.connection;
      const out = request(url, { method: req.method, headers, agent: false }, (answer) => {
        answered.set(target, (answered.get(target) ?? 0) + 1);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        answer.on('error', () => res.destroy());
        answer.on('end', () => resolve('done'));
      });
      out.on('error', (err: NodeJS.ErrnoException) => {
        if (NEVER_SENT.has(err.code ?? '')) {
          benched.set(target, now() + benchMs);
          resolve('never-sent');
          return;
        }
        // The replica had the request and went away (killed, say): what it did is unknown.
        benched.set(target, now() + benchMs);
        problem(
          res,
          502,
          'REPLICA_LOST',
          `the replica went away during the request: ${err.code ?? err.message}`,
          true,
        );
        resolve('done');
      });
      out.end(body);
    });
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (res.writableEnded) return;
      size += chunk.length;
      if (size > maxBody) {
        // Answered at once; the rest of the upload is read and dropped, so the client sees the answer.
        chunks.length = 0;
        res.setHeader('connection', 'close');
        problem(res, 413, 'BODY_TOO_LARGE', `request bodies are limited to ${maxBody} bytes`, false);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (res.writableEnded) return;
      const body = Buffer.concat(chunks);
      void (async () => {
        for (const target of order()) {
          if ((await forward(target, req, body, res)) === 'done') return;
        }
        problem(res, 503, 'NO_REPLICA', 'no replica accepted the connection', false);
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(deps.port ?? 0, deps.host ?? '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${deps.host ?? '127.0.0.1'}:${port}`,
    port,
    answered: () => answered,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
