// Owns sending one webhook POST: resolve the name once, check every address, connect to the address that was checked.
import { lookup as dnsLookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import type { WebhookDestinations } from './destination.ts';

export interface WebhookRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  signal: AbortSignal;
}

/** The transport: only moves bytes; any 2xx is a delivery, and a redirect is answered as its 3xx status. */
export type WebhookSender = (req: WebhookRequest) => Promise<{ status: number }>;

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** A name to every address it has now (getaddrinfo, as node:http would use). Tests inject their own. */
export type Resolve = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolve: Resolve = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => ({
    address: a.address,
    family: a.family === 6 ? 6 : 4,
  }));

export interface WebhookSenderDeps {
  destinations: WebhookDestinations;
  resolve?: Resolve;
  /** Trust anchors for https receivers instead of Node's bundled roots (tests). */
  ca?: string;
}

function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Resolves the URL's name once, refuses the attempt unless every address it got may be reached, then connects to
 * the first of them through a lookup that can only return it: there is no second resolution for DNS rebinding to
 * answer differently. The Host header, SNI and the certificate check keep the URL's name. No redirect is followed
 * (node:http never follows one); the response body is not read.
 */
export function createWebhookSender(deps: WebhookSenderDeps): WebhookSender {
  const resolve = deps.resolve ?? systemResolve;
  return async (req) => {
    const url = deps.destinations.checkUrl(req.url);
    const signal = AbortSignal.any([req.signal, AbortSignal.timeout(req.timeoutMs)]);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    let target: ResolvedAddress;
    if (isIP(host) !== 0) {
      // checkUrl judged the literal address already, and nothing resolves it.
      target = { address: host, family: isIP(host) === 6 ? 6 : 4 };
    } else {
      const found = await abortable(resolve(host), signal);
      if (found.length === 0) throw new Error(`${host} has no address`);
      for (const a of found) deps.destinations.checkResolved(host, a.address);
      target = found[0] as ResolvedAddress;
    }
    const pinned: LookupFunction = (_name, options, callback) => {
      if (options.all) callback(null, [{ address: target.address, family: target.family }]);
      else callback(null, target.address, target.family);
    };
    const body = Buffer.from(req.body, 'utf8');
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise<{ status: number }>((done, fail) => {
      const request = transport.request({
        protocol: url.protocol,
        hostname: host,
        port: url.port === '' ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: 'POST',
        headers: { ...req.headers, host: url.host, 'content-length': String(body.length) },
        lookup: pinned,
        // A fresh connection each time: no pooled socket from an earlier resolution is reused.
        agent: false,
        signal,
        ...(deps.ca ? { ca: deps.ca } : {}),
      });
      request.on('error', fail);
      request.on('response', (res) => {
        done({ status: res.statusCode ?? 0 });
        res.on('error', () => undefined);
        res.destroy();
      });
      request.end(body);
    });
  };
}
