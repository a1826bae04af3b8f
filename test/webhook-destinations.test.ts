// Where webhooks may go (SSRF): every spelling of a non-public address refused, names judged by what they resolve
// to, the connection made to the address that was checked, redirects not followed. Loopback traffic only.
import { afterAll, describe, expect, it } from 'vitest';
import { createCa, issueCertificate } from '../certs/index.ts';
import { WebhookUrlError } from '../gateway/errors.ts';
import { parseConfig } from '../gateway/platform/config.ts';
import { canonicalAddress, createWebhookDestinations } from '../gateway/webhooks/destination.ts';
import { createWebhookSender, type Resolve, systemResolve } from '../gateway/webhooks/sender.ts';
import { type Receiver, type ReceiverOptions, startReceiver } from './helpers/receiver.ts';

const strict = createWebhookDestinations({ requireHttps: false });
const allowLoopback = (list: string) =>
  createWebhookDestinations({
    requireHttps: false,
    allowPrivate: parseConfig({ WEBHOOK_ALLOW_PRIVATE: list }).WEBHOOK_ALLOW_PRIVATE ?? [],
  });

function refusal(check: () => unknown): string {
  try {
    check();
  } catch (err) {
    expect(err).toBeInstanceOf(WebhookUrlError);
    expect((err as WebhookUrlError).code).toBe('WEBHOOK_URL_FORBIDDEN');
    return (err as Error).message;
  }
  throw new Error('not refused');
}

describe('the URL rules (registration, and before every attempt)', () => {
  // [url, a word the refusal names]
  const notPublic: Array<[string, RegExp]> = [
    ['http://169.254.169.254/latest/meta-data', /link-local/],
    ['http://[::ffff:169.254.169.254]/latest/meta-data', /\(169\.254\.169\.254\) is link-local/],
    ['http://[::ffff:a9fe:a9fe]/', /\(169\.254\.169\.254\) is link-local/],
    ['http://[0:0:0:0:0:ffff:a9fe:a9fe]/', /link-local/],
    ['http://127.0.0.1:8080/hook', /loopback/],
    ['http://127.255.255.254/', /loopback/],
    ['http://2130706433/', /loopback/], // decimal
    ['http://017700000001/', /loopback/], // octal, whole
    ['http://0177.0.0.1/', /loopback/], // octal parts
    ['http://0x7f.0.0.1/', /loopback/], // hex parts
    ['http://0x7f000001/', /loopback/], // hex, whole
    ['http://127.1/', /loopback/], // shortened
    ['http://127.0.1/', /loopback/],
    ['http://%31%32%37.0.0.1/', /loopback/], // percent-encoded
    ['http://[::1]/', /loopback/],
    ['http://[::ffff:127.0.0.1]/', /\(127\.0\.0\.1\) is loopback/],
    ['http://0.0.0.0/', /this network/],
    ['http://0/', /this network/],
    ['http://[::]/', /unspecified/],
    ['http://10.0.0.1/', /private/],
    ['http://172.16.5.4/', /private/],
    ['http://172.31.255.255/', /private/],
    ['http://192.168.1.1/', /private/],
    ['http://100.64.0.1/', /carrier-grade NAT/],
    ['http://100.127.255.254/', /carrier-grade NAT/],
    ['http://192.0.0.192/', /IETF protocol assignments/],
    ['http://198.18.0.1/', /benchmarking/],
    ['http://192.0.2.1/', /documentation/],
    ['http://224.0.0.1/', /multicast/],
    ['http://239.255.255.250/', /multicast/],
    ['http://240.0.0.1/', /reserved/],
    ['http://255.255.255.255/', /reserved.*broadcast/],
    ['http://[fc00::1]/', /unique local/],
    ['http://[fd12:3456:789a::1]/', /unique local/],
    ['http://[fe80::1]/', /link-local/],
    ['http://[febf:ffff::1]/', /link-local/],
    ['http://[fec0::1]/', /site-local/],
    ['http://[ff02::1]/', /multicast/],
    ['http://[::127.0.0.1]/', /IPv4-compatible/],
    ['http://[64:ff9b::a9fe:a9fe]/', /NAT64/],
    ['http://[2002:7f00:1::1]/', /6to4/],
    ['http://[2001::1]/', /IETF protocol assignments/],
    ['http://[2001:db8::1]/', /documentation/],
    ['http://[100::1]/', /discard/],
    ['http://[4000::1]/', /outside IPv6 global unicast/],
    ['https://[::1]:8443/', /loopback/],
    ['http://localhost/', /localhost means 127\.0\.0\.1 is loopback/],
    ['http://LOCALHOST:3000/x', /loopback/],
    ['http://localhost./', /loopback/],
    ['http://hooks.localhost/', /loopback/],
  ];
  it.each(notPublic)('refuses %s', (url, why) => {
    expect(refusal(() => strict.checkUrl(url))).toMatch(why);
  });

  it.each([
    'https://hooks.example.com/curbside',
    'http://hooks.example.com/curbside',
    'https://8.8.8.8/x',
    'https://1.1.1.1/',
    'https://100.128.0.1/', // just past 100.64.0.0/10
    'https://172.32.0.1/', // just past 172.16.0.0/12
    'https://[2606:4700:4700::1111]/',
    'https://[::ffff:8.8.8.8]/', // judged as the public IPv4 address it carries
    'https://localhost.example.com/', // only the localhost names themselves mean loopback
  ])('lets %s through', (url) => {
    expect(strict.checkUrl(url).href).toBe(new URL(url).href);
  });

  it('refuses other schemes, credentials in the URL, and http in production', () => {
    expect(refusal(() => strict.checkUrl('ftp://hooks.example.com/'))).toMatch(/not ftp:/);
    expect(refusal(() => strict.checkUrl('https://user:pw@hooks.example.com/'))).toMatch(
      /user name or password/,
    );
    expect(refusal(() => strict.checkUrl('not a url'))).toMatch(/not a URL/);
    const production = createWebhookDestinations({ requireHttps: true });
    expect(refusal(() => production.checkUrl('http://hooks.example.com/'))).toMatch(/https in production/);
    expect(production.checkUrl('https://hooks.example.com/').host).toBe('hooks.example.com');
  });

  it('lets the operator allowlist (WEBHOOK_ALLOW_PRIVATE) through, and nothing else', () => {
    const rules = allowLoopback('127.0.0.1/32,::1');
    for (const url of [
      'http://127.0.0.1:9/x',
      'http://2130706433:9/',
      'http://127.1/',
      'http://[::1]/',
      'http://[::ffff:127.0.0.1]/',
      'http://localhost/',
    ]) {
      expect(() => rules.checkUrl(url), url).not.toThrow();
    }
    expect(refusal(() => rules.checkUrl('http://127.0.0.2/'))).toMatch(/loopback/);
    expect(refusal(() => rules.checkUrl('http://169.254.169.254/'))).toMatch(/link-local/);
    expect(refusal(() => rules.checkUrl('http://10.0.0.1/'))).toMatch(/private/);
    // localhost means both loopback addresses: allowing one of them does not allow the name.
    expect(refusal(() => allowLoopback('127.0.0.1/32').checkUrl('http://localhost/'))).toMatch(
      /::1 is loopback/,
    );
    const lan = allowLoopback('10.20.0.0/16, fd00:1::/32');
    expect(lan.refusalOf('10.20.3.4')).toBeNull();
    expect(lan.refusalOf('fd00:1:2::3')).toBeNull();
    expect(lan.refusalOf('10.21.0.1')).toMatch(/private/);
    expect(lan.refusalOf('fd00:2::1')).toMatch(/unique local/);
  });

  it('judges every spelling of an address by one canonical form', () => {
    expect(canonicalAddress('::ffff:169.254.169.254')).toEqual({
      address: '169.254.169.254',
      family: 'ipv4',
    });
    expect(canonicalAddress('[0:0:0:0:0:FFFF:A9FE:A9FE]')).toEqual({
      address: '169.254.169.254',
      family: 'ipv4',
    });
    expect(canonicalAddress('FE80:0:0::1%eth0')).toEqual({ address: 'fe80::1', family: 'ipv6' });
    expect(canonicalAddress('hooks.example.com')).toBeNull();
    // What DNS could answer is judged too, not only what a URL can spell.
    expect(strict.refusalOf('::ffff:10.1.2.3')).toMatch(/private/);
    expect(strict.refusalOf('93.184.215.14')).toBeNull();
  });
});

describe('WEBHOOK_ALLOW_PRIVATE', () => {
  it('is a list of CIDRs; a bare address is a range of one', () => {
    expect(parseConfig({}).WEBHOOK_ALLOW_PRIVATE).toBeUndefined();
    expect(
      parseConfig({ WEBHOOK_ALLOW_PRIVATE: '127.0.0.1/32, ::1,10.0.0.0/8' }).WEBHOOK_ALLOW_PRIVATE,
    ).toEqual([
      { address: '127.0.0.1', prefix: 32, family: 'ipv4' },
      { address: '::1', prefix: 128, family: 'ipv6' },
      { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
    ]);
  });

  it.each([
    '127.0.0.1/33',
    '::1/129',
    '0177.0.0.1',
    '127.1/32',
    'localhost',
    '10.0.0.0/8,',
    '10.0.0.0/08',
    '1.2.3.4/8/8',
  ])('refuses %j with one line naming it', (value) => {
    expect(() => parseConfig({ WEBHOOK_ALLOW_PRIVATE: value })).toThrow(
      /WEBHOOK_ALLOW_PRIVATE=.*must be a comma-separated list of CIDRs/,
    );
  });
});

describe('the transport (sender.ts)', () => {
  const receivers: Receiver[] = [];
  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
  });
  async function receiver(options?: ReceiverOptions): Promise<Receiver> {
    const r = await startReceiver(options);
    receivers.push(r);
    return r;
  }

  /** A resolver from a table, counting its calls; an array of answers is used one per call. */
  function table(answers: Record<string, string[] | string[][]>): Resolve & { calls: string[] } {
    const calls: string[] = [];
    const used = new Map<string, number>();
    const resolve = async (name: string) => {
      calls.push(name);
      const a = answers[name];
      if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
      const n = used.get(name) ?? 0;
      used.set(name, n + 1);
      const list = (Array.isArray(a[0]) ? (a[Math.min(n, a.length - 1)] as string[]) : a) as string[];
      return list.map((address) => ({
        address,
        family: address.includes(':') ? (6 as const) : (4 as const),
      }));
    };
    return Object.assign(resolve, { calls });
  }

  const post = (url: string) => ({
    url,
    headers: { 'content-type': 'application/json' },
    body: '{"id":"evt_1"}',
    timeoutMs: 2_000,
    signal: new AbortController().signal,
  });

  it('refuses a name that resolves to a private address, before any connection', async () => {
    const hook = await receiver();
    const resolve = table({ 'hooks.example.test': ['127.0.0.1'] });
    const send = createWebhookSender({ destinations: strict, resolve });
    await expect(send(post(`http://hooks.example.test:${hook.port}/hooks`))).rejects.toThrow(
      /hooks\.example\.test resolved to 127\.0\.0\.1 is loopback/,
    );
    await expect(send(post(`http://hooks.example.test:${hook.port}/hooks`))).rejects.toBeInstanceOf(
      WebhookUrlError,
    );
    expect(hook.arrived).toBe(0);
  });

  it('refuses a name when any one of its addresses is not allowed, even if the first is', async () => {
    const hook = await receiver();
    const resolve = table({ 'mixed.example.test': ['127.0.0.1', '10.9.8.7'] });
    const send = createWebhookSender({ destinations: allowLoopback('127.0.0.1/32'), resolve });
    await expect(send(post(`http://mixed.example.test:${hook.port}/hooks`))).rejects.toThrow(
      /resolved to 10\.9\.8\.7 is private/,
    );
    expect(hook.arrived).toBe(0);
  });

  it('resolves once and connects to the address it checked (no rebinding), keeping the name in Host', async () => {
    const hook = await receiver();
    // A rebinding DNS: an allowed address first, the metadata service on every later question.
    const resolve = table({ 'rebind.example.test': [['127.0.0.1'], ['169.254.169.254']] });
    const send = createWebhookSender({ destinations: allowLoopback('127.0.0.1/32'), resolve });
    expect(await send(post(`http://rebind.example.test:${hook.port}/hooks?a=1`))).toEqual({ status: 204 });
    expect(resolve.calls).toEqual(['rebind.example.test']);
    expect(hook.received).toHaveLength(1);
    expect(hook.received[0]?.headers.host).toBe(`rebind.example.test:${hook.port}`);
    expect(hook.received[0]?.body).toBe('{"id":"evt_1"}');
    // The next attempt asks again, gets the metadata address, and is refused without connecting.
    await expect(send(post(`http://rebind.example.test:${hook.port}/hooks`))).rejects.toThrow(/link-local/);
    expect(hook.arrived).toBe(1);
  });

  it('over https, connects to the checked address while SNI and the certificate check keep the name', async () => {
    const ca = createCa({ commonName: 'Webhook Test CA' });
    const leaf = issueCertificate({
      ca: { certPem: ca.certPem, keyPem: ca.keyPem },
      commonName: 'hooks.example.test',
      dns: ['hooks.example.test'],
      extendedKeyUsage: ['serverAuth'],
    });
    const hook = await receiver({ tls: { cert: leaf.certPem, key: leaf.keyPem } });
    const resolve = table({ 'hooks.example.test': ['127.0.0.1'], 'other.example.test': ['127.0.0.1'] });
    const send = createWebhookSender({
      destinations: allowLoopback('127.0.0.1/32'),
      resolve,
      ca: ca.certPem,
    });
    expect(await send(post(`https://hooks.example.test:${hook.port}/hooks`))).toEqual({ status: 204 });
    expect(hook.received[0]?.servername).toBe('hooks.example.test');
    expect(hook.received[0]?.headers.host).toBe(`hooks.example.test:${hook.port}`);
    // The certificate is checked against the URL's name, not the address connected to.
    await expect(send(post(`https://other.example.test:${hook.port}/hooks`))).rejects.toThrow(
      /other\.example\.test/,
    );
    expect(hook.received).toHaveLength(1);
  });

  it('judges what the system resolver answers (localhost from the hosts file: loopback, refused)', async () => {
    const found = await systemResolve('localhost');
    expect(found.length).toBeGreaterThan(0);
    for (const a of found) {
      expect(strict.refusalOf(a.address)).toMatch(/loopback/);
      expect(refusal(() => strict.checkResolved('localhost', a.address))).toMatch(/^localhost resolved to /);
    }
  });

  it('never follows a redirect: the 3xx is the answer', async () => {
    const inner = await receiver();
    const hook = await receiver();
    hook.respond = () => 307;
    hook.answerHeaders = { location: inner.url };
    const send = createWebhookSender({ destinations: allowLoopback('127.0.0.1/32') });
    expect(await send(post(hook.url))).toEqual({ status: 307 });
    await new Promise((r) => setTimeout(r, 100));
    expect(inner.arrived).toBe(0);
  });

  it('connects to an allowed address however the URL spells it', async () => {
    const hook = await receiver();
    const send = createWebhookSender({ destinations: allowLoopback('127.0.0.1/32') });
    expect(await send(post(`http://2130706433:${hook.port}/hooks`))).toEqual({ status: 204 });
    expect(await send(post(`http://0x7f.1:${hook.port}/hooks`))).toEqual({ status: 204 });
    expect(hook.received.map((r) => r.headers.host)).toEqual([
      `127.0.0.1:${hook.port}`,
      `127.0.0.1:${hook.port}`,
    ]);
  });
});
