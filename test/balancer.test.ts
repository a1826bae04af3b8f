// The local cluster's entry point (cluster/balancer.ts) against real HTTP servers on loopback: round robin, a
// replica that refuses connections skipped and the request retried, one that dies mid-request answered 502 with
// mayHaveSucceeded, and bodies over the limit refused.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startBalancer } from '../cluster/balancer.ts';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});

/** A replica stand-in that answers its name and echoes the body; `die` makes it drop the next request unanswered. */
async function replica(
  name: string,
): Promise<{ url: string; seen: string[]; dieNext(): void; server: Server }> {
  const seen: string[] = [];
  let die = false;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`);
      if (die) {
        die = false;
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name, auth: req.headers.authorization ?? null }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  closers.push(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url, seen, dieNext: () => (die = true), server };
}

/** A URL nothing listens on. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

describe('the cluster entry point', () => {
  it('spreads requests round robin and passes method, path, headers and body through', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const balancer = await startBalancer({ targets: () => [a.url, b.url] });
    closers.push(balancer.close);
    const names: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${balancer.url}/v1/x?i=${i}`, {
        method: 'POST',
        headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
        body: JSON.stringify({ i }),
      });
      const body = (await res.json()) as { name: string; auth: string };
      expect(body.auth).toBe('Bearer k');
      names.push(body.name);
    }
    expect(names).toEqual(['a', 'b', 'a', 'b']);
    expect(a.seen).toEqual(['POST /v1/x?i=0 {"i":0}', 'POST /v1/x?i=2 {"i":2}']);
    expect(balancer.answered().get(a.url)).toBe(2);
  });

  it('skips a replica that refuses connections, retrying the request on the next one', async () => {
    const a = await replica('a');
    const dead = await deadUrl();
    const balancer = await startBalancer({ targets: () => [dead, a.url] });
    closers.push(balancer.close);
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${balancer.url}/v1/y`, { method: 'POST', body: 'once' });
      expect(res.status).toBe(200);
    }
    // Each request reached the live replica exactly once.
    expect(a.seen).toEqual(['POST /v1/y once', 'POST /v1/y once', 'POST /v1/y once']);
  });

  it('answers 502 REPLICA_LOST, mayHaveSucceeded, when the replica goes away with the request: never sent twice', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const balancer = await startBalancer({ targets: () => [a.url, b.url] });
    closers.push(balancer.close);
    a.dieNext();
    const res = await fetch(`${balancer.url}/v1/deliveries/d/unlock`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({ code: 'REPLICA_LOST', mayHaveSucceeded: true });
    expect(a.seen).toHaveLength(1);
    expect(b.seen).toHaveLength(0);
  });

  it('refuses a body over the limit with 413, and answers 503 when no replica takes the connection', async () => {
    const a = await replica('a');
    const small = await startBalancer({ targets: () => [a.url], maxBodyBytes: 16 });
    closers.push(small.close);
    const big = await fetch(`${small.url}/v1/z`, { method: 'POST', body: 'x'.repeat(1_000) });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ code: 'BODY_TOO_LARGE', mayHaveSucceeded: false });
    expect(a.seen).toEqual([]);
    const nobody = await startBalancer({ targets: () => [] });
    closers.push(nobody.close);
    const res = await fetch(`${nobody.url}/v1/z`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ code: 'NO_REPLICA', mayHaveSucceeded: false });
  });
});
