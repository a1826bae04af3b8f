// Owns where a webhook may be sent: http(s) URLs without credentials, https outside development, public addresses only.
import { BlockList, isIP } from 'node:net';
import { WebhookUrlError } from '../errors.ts';
import type { Cidr } from '../platform/config.ts';

type Family = 'ipv4' | 'ipv6';
type Range = readonly [address: string, prefix: number, what: string];

/**
 * IPv4 ranges that are not the public internet: the IANA IPv4 Special-Purpose Address Registry (RFC 6890 and its
 * updates) plus multicast, named for the refusal. 169.254.169.254, the cloud metadata service, is link-local.
 */
const IPV4_NOT_PUBLIC: readonly Range[] = [
  ['0.0.0.0', 8, '"this network" (0.0.0.0/8; 0.0.0.0 reaches this host)'],
  ['10.0.0.0', 8, 'private (10.0.0.0/8, RFC 1918)'],
  ['100.64.0.0', 10, 'shared carrier-grade NAT space (100.64.0.0/10, RFC 6598)'],
  ['127.0.0.0', 8, 'loopback (127.0.0.0/8)'],
  ['169.254.0.0', 16, 'link-local (169.254.0.0/16, where cloud metadata services answer)'],
  ['172.16.0.0', 12, 'private (172.16.0.0/12, RFC 1918)'],
  ['192.0.0.0', 24, 'IETF protocol assignments (192.0.0.0/24, RFC 6890)'],
  ['192.0.2.0', 24, 'documentation (192.0.2.0/24, RFC 5737)'],
  ['192.88.99.0', 24, 'the deprecated 6to4 relay anycast (192.88.99.0/24, RFC 7526)'],
  ['192.168.0.0', 16, 'private (192.168.0.0/16, RFC 1918)'],
  ['198.18.0.0', 15, 'benchmarking (198.18.0.0/15, RFC 2544)'],
  ['198.51.100.0', 24, 'documentation (198.51.100.0/24, RFC 5737)'],
  ['203.0.113.0', 24, 'documentation (203.0.113.0/24, RFC 5737)'],
  ['224.0.0.0', 4, 'multicast (224.0.0.0/4)'],
  ['240.0.0.0', 4, 'reserved (240.0.0.0/4, the broadcast address 255.255.255.255 included)'],
];

/**
 * IPv6 is allowed only inside global unicast, 2000::/3 (RFC 4291 §2.4), less the special ranges in it. The ranges
 * outside it are listed only to name the refusal. An IPv4-mapped address (::ffff:a.b.c.d) is judged as its IPv4
 * address before any of these.
 */
const IPV6_NOT_PUBLIC: readonly Range[] = [
  ['::', 128, 'the unspecified address (::)'],
  ['::1', 128, 'loopback (::1)'],
  ['::', 96, 'an IPv4-compatible address (::/96, deprecated by RFC 4291)'],
  ['64:ff9b::', 96, 'NAT64 (64:ff9b::/96, RFC 6052)'],
  ['64:ff9b:1::', 48, 'local NAT64 (64:ff9b:1::/48, RFC 8215)'],
  ['100::', 64, 'discard-only (100::/64, RFC 6666)'],
  ['fc00::', 7, 'unique local (fc00::/7, RFC 4193)'],
  ['fe80::', 10, 'link-local (fe80::/10)'],
  ['fec0::', 10, 'site-local (fec0::/10, deprecated)'],
  ['ff00::', 8, 'multicast (ff00::/8)'],
  ['2001::', 23, 'IETF protocol assignments (2001::/23: Teredo, benchmarking, ORCHID)'],
  ['2001:db8::', 32, 'documentation (2001:db8::/32, RFC 3849)'],
  ['2002::', 16, '6to4 (2002::/16: it carries an IPv4 address, RFC 3056)'],
  ['3fff::', 20, 'documentation (3fff::/20, RFC 9637)'],
];

const listOf = (ranges: ReadonlyArray<readonly [string, number]>, family: Family): BlockList => {
  const list = new BlockList();
  for (const [address, prefix] of ranges) list.addSubnet(address, prefix, family);
  return list;
};

const named = (ranges: readonly Range[], family: Family) =>
  ranges.map(([address, prefix, what]) => ({ what, list: listOf([[address, prefix]], family) }));

const V4 = named(IPV4_NOT_PUBLIC, 'ipv4');
const V6 = named(IPV6_NOT_PUBLIC, 'ipv6');
const GLOBAL_UNICAST = listOf([['2000::', 3]], 'ipv6');

/**
 * One spelling per address, so that every form meets the same rule: IPv6 compressed and lower-case (as WHATWG URL
 * serializes it), an IPv4-mapped IPv6 address as the IPv4 address it carries, a zone index dropped. Null: not an
 * IP address.
 */
export function canonicalAddress(address: string): { address: string; family: Family } | null {
  const bare = address.replace(/^\[(.*)\]$/, '$1').split('%')[0] ?? '';
  const version = isIP(bare);
  if (version === 4) return { address: bare, family: 'ipv4' };
  if (version !== 6) return null;
  const v6 = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6);
  if (!mapped) return { address: v6, family: 'ipv6' };
  const hi = Number.parseInt(mapped[1] as string, 16);
  const lo = Number.parseInt(mapped[2] as string, 16);
  return { address: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, family: 'ipv4' };
}

/** Names that always mean this host, whatever DNS says (RFC 6761 §6.3). */
const isLocalhostName = (host: string): boolean => /(^|\.)localhost\.?$/.test(host);

export interface WebhookDestinationRules {
  /** CIDRs the operator lets webhooks reach although they are not public (WEBHOOK_ALLOW_PRIVATE). */
  allowPrivate?: readonly Cidr[];
  /** Refuse http:// (NODE_ENV=production). */
  requireHttps: boolean;
}

export interface WebhookDestinations {
  /**
   * The URL by its form alone: scheme, credentials, and the host when it is an address in any spelling (decimal,
   * octal, hex, shortened IPv4, IPv6, IPv4-mapped) or a localhost name. Registration runs it, and so does every
   * delivery attempt before it resolves anything. Returns the parsed URL; throws WebhookUrlError.
   */
  checkUrl(url: string): URL;
  /** Why this address may not be reached (null: it may): the check of every address a name resolved to. */
  refusalOf(address: string): string | null;
  /** Throws WebhookUrlError when `address`, which `host` resolved to, may not be reached. */
  checkResolved(host: string, address: string): void;
}

/** Deny by default: only public addresses, unless the operator's allowlist names the range. */
export function createWebhookDestinations(rules: WebhookDestinationRules): WebhookDestinations {
  const allowed = new BlockList();
  for (const c of rules.allowPrivate ?? []) allowed.addSubnet(c.address, c.prefix, c.family);

  const refusalOf = (address: string): string | null => {
    const a = canonicalAddress(address);
    if (!a) return 'is not an IP address';
    if (allowed.check(a.address, a.family)) return null;
    for (const r of a.family === 'ipv4' ? V4 : V6)
      if (r.list.check(a.address, a.family)) return `is ${r.what}`;
    if (a.family === 'ipv6' && !GLOBAL_UNICAST.check(a.address, 'ipv6'))
      return 'is outside IPv6 global unicast (2000::/3)';
    return null;
  };

  const refuse = (subject: string, address: string): void => {
    const why = refusalOf(address);
    if (why === null) return;
    const a = canonicalAddress(address);
    const shown =
      a && a.address !== address.replace(/^\[(.*)\]$/, '$1') ? `${address} (${a.address})` : address;
    throw new WebhookUrlError(`${subject}${shown} ${why}; webhooks go only to public addresses`);
  };

  return {
    checkUrl(text) {
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        throw new WebhookUrlError('the webhook URL is not a URL');
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:')
        throw new WebhookUrlError(`webhook URLs are https (or http outside production), not ${url.protocol}`);
      if (rules.requireHttps && url.protocol !== 'https:')
        throw new WebhookUrlError('webhook URLs must be https in production');
      if (url.username !== '' || url.password !== '')
        throw new WebhookUrlError('a webhook URL may not carry a user name or password');
      const host = url.hostname;
      if (canonicalAddress(host)) refuse('', host);
      else if (isLocalhostName(host)) {
        // Judged as the addresses it always means; each must be allowed, as each resolved address must be.
        for (const loopback of ['127.0.0.1', '::1']) refuse(`${host} means `, loopback);
      }
      return url;
    },
    refusalOf,
    checkResolved(host, address) {
      refuse(`${host} resolved to `, address);
    },
  };
}
