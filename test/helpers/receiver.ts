// Test harness: a real webhook receiver on loopback (node:http or https, port 0) that records every request.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  /** The status this receiver answered. */
  status: number;
  /** The TLS server name (SNI) the client sent; undefined over plain http. */
  servername?: string | false | null;
}

export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  /**
   * Decides the status of each request (default 204); a promise holds the answer back until it settles.
   * A request is recorded once it is answered.
   */
  respond: (req: { headers: IncomingHttpHeaders; body: string; n: number }) => number | Promise<number>;
  /** Extra headers of each answer (a Location for a redirect). */
  answerHeaders: Record<string, string>;
  /** Requests that have arrived, answered or not. */
  arrived: number;
  close(): Promise<void>;
}

export interface ReceiverOptions {
  /** A loopback address to listen on (default 127.0.0.1). */
  host?: string;
  /** Serve https with this certificate and key (PEM). */
  tls?: { cert: string; key: string };
}

export async function startReceiver(options: ReceiverOptions = {}): Promise<Receiver> {
  const host = options.host ?? '127.0.0.1';
  const received: Received[] = [];
  const receiver: Receiver = {
    url: '',
    port: 0,
    received,
    respond: () => 204,
    answerHeaders: {},
    arrived: 0,
    close: async () => {},
  };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    receiver.arrived += 1;
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const status = await receiver.respond({ headers: req.headers, body, n: received.length });
      const servername = options.tls ? (req.socket as TLSSocket).servername : undefined;
      received.push({ headers: req.headers, body, status, ...(options.tls ? { servername } : {}) });
      res.writeHead(status, receiver.answerHeaders).end();
    });
  };
  const server = options.tls ? createTlsServer(options.tls, handle) : createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  receiver.port = (server.address() as AddressInfo).port;
  receiver.url = `${options.tls ? 'https' : 'http'}://${host}:${receiver.port}/hooks`;
  receiver.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return receiver;
}
