// Owns where a client finds the broker: one mqtts:// URL, or a comma-separated list of a cluster's nodes to fail over
// between (PROTOCOL.md §1: the broker speaks MQTT over TLS only).

/** More would be a configuration mistake: a cluster's clients need a few seed nodes, not all of them. */
export const MAX_BROKER_URLS = 9;

/** MQTT over TLS's registered port, what a URL without one means. */
export const DEFAULT_MQTTS_PORT = 8883;

export interface BrokerServer {
  host: string;
  port: number;
  protocol: 'mqtts';
}

export interface BrokerTarget {
  /** The first URL, which mqtt.js connects to first. */
  url: string;
  /** Every node in order, present when there is more than one: mqtt.js takes the next one on each reconnect. */
  servers?: BrokerServer[];
}

const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$/;

/** Why a broker URL list is refused, or null: 1..9 distinct mqtts://host:port URLs, no path, credentials or query. */
export function brokerUrlsProblem(text: string): string | null {
  const items = text.split(',');
  if (items.length > MAX_BROKER_URLS) return `at most ${MAX_BROKER_URLS} URLs, got ${items.length}`;
  const seen = new Set<string>();
  for (const item of items) {
    const shown = JSON.stringify(item);
    if (item === '' || item !== item.trim())
      return `${shown} is not an mqtts://host:port URL (empty or spaces)`;
    let url: URL;
    try {
      url = new URL(item);
    } catch {
      return `${shown} is not an mqtts://host:port URL`;
    }
    if (url.protocol !== 'mqtts:')
      return `${shown} is not an mqtts://host:port URL: the broker only speaks TLS`;
    if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '')
      return `${shown} must not carry credentials, a query or a fragment: identity is the client certificate`;
    if (url.pathname !== '' && url.pathname !== '/') return `${shown} must not have a path`;
    if (!HOST.test(url.hostname)) return `${shown} has no valid host`;
    const key = `${url.hostname}:${url.port || DEFAULT_MQTTS_PORT}`;
    if (seen.has(key)) return `${shown} is listed twice`;
    seen.add(key);
  }
  return null;
}

/** Parses a checked list (brokerUrlsProblem(text) === null) into what mqtt.connect takes. */
export function brokerTarget(text: string): BrokerTarget {
  const problem = brokerUrlsProblem(text);
  if (problem !== null) throw new RangeError(`broker URLs: ${problem}`);
  const urls = text.split(',').map((item) => new URL(item));
  if (urls.length === 1) return { url: text };
  return {
    url: `mqtts://${(urls[0] as URL).host}`,
    servers: urls.map((u) => ({
      // mqtt.js hands the host to net/tls as is: an IPv6 literal goes without its brackets.
      host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(u.port || DEFAULT_MQTTS_PORT),
      protocol: 'mqtts' as const,
    })),
  };
}
