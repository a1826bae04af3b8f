// Where a client finds the broker: one mqtts:// URL or a cluster's nodes, and every malformed list refused.
import { describe, expect, it } from 'vitest';
import { brokerTarget, brokerUrlsProblem, MAX_BROKER_URLS } from '../protocols/index.ts';

describe('broker URL lists', () => {
  it('one URL is passed on as it is, with no server list', () => {
    expect(brokerUrlsProblem('mqtts://127.0.0.1:8883')).toBeNull();
    expect(brokerTarget('mqtts://127.0.0.1:8883')).toEqual({ url: 'mqtts://127.0.0.1:8883' });
  });

  it("a cluster's nodes become mqtt.js servers, in order, the first one also the URL", () => {
    expect(brokerTarget('mqtts://127.0.0.1:18883,mqtts://localhost:18884,mqtts://[::1]:18885')).toEqual({
      url: 'mqtts://127.0.0.1:18883',
      servers: [
        { host: '127.0.0.1', port: 18883, protocol: 'mqtts' },
        { host: 'localhost', port: 18884, protocol: 'mqtts' },
        { host: '::1', port: 18885, protocol: 'mqtts' },
      ],
    });
    expect(brokerTarget('mqtts://a.example,mqtts://b.example').servers?.map((s) => s.port)).toEqual([
      8883, 8883,
    ]);
  });

  it.each([
    ['plaintext MQTT', 'mqtt://127.0.0.1:1883', /only speaks TLS/],
    ['WebSocket', 'mqtts://127.0.0.1:1,wss://127.0.0.1:2', /only speaks TLS/],
    ['an empty entry', 'mqtts://127.0.0.1:1,,mqtts://127.0.0.1:2', /"" is not/],
    ['a trailing comma', 'mqtts://127.0.0.1:1,', /"" is not/],
    ['spaces around an entry', 'mqtts://127.0.0.1:1, mqtts://127.0.0.1:2', /spaces/],
    ['not a URL', 'broker:8883', /is not an mqtts/],
    ['credentials', 'mqtts://user:pw@127.0.0.1:1', /credentials/],
    ['a query', 'mqtts://127.0.0.1:1?x=1', /query/],
    ['a path', 'mqtts://127.0.0.1:1/mqtt', /path/],
    ['a port out of range', 'mqtts://127.0.0.1:65536', /is not an mqtts/],
    ['a node listed twice', 'mqtts://127.0.0.1:1,mqtts://127.0.0.1:1', /listed twice/],
    ['a default port listed twice', 'mqtts://h,mqtts://h:8883', /listed twice/],
    [
      'too many nodes',
      Array.from({ length: MAX_BROKER_URLS + 1 }, (_, i) => `mqtts://127.0.0.1:${i + 1}`).join(','),
      /at most 9/,
    ],
  ])('refuses %s', (_why, text, reason) => {
    expect(brokerUrlsProblem(text)).toMatch(reason);
    expect(() => brokerTarget(text)).toThrow(RangeError);
  });
});
