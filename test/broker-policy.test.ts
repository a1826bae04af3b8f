// Unit tests of the broker's pure decisions: admission, access, wire limits (live brokers: broker-*.test.ts).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  allowDeliver,
  allowSubscribe,
  decideAdmission,
  decideConnect,
  decidePublish,
  type Identity,
  type PeerFacts,
} from '../gateway/broker/policy.ts';
import { createFrameScanner, createTokenBucket, type WireViolation } from '../gateway/broker/wire.ts';

const A = '1G1ZE5ST5KF100231';
const B = 'YV1A22MK3F1900345';
const car: Identity = { kind: 'vehicle', vin: A };
const gateway: Identity = { kind: 'gateway', name: 'gateway' };
const pub = (topic: string, retain = false, payloadBytes = 10) => ({ topic, retain, payloadBytes });

describe('connect', () => {
  it('requires a car client id equal to its VIN', () => {
    expect(decideConnect(car, A, null)).toBeNull();
    expect(decideConnect(car, B, null)).toBe('CLIENT_ID_MISMATCH');
    expect(decideConnect(car, '#', null)).toBe('CLIENT_ID_MISMATCH');
  });
  it('lets the gateway hold one id per replica, and nothing with wildcards', () => {
    expect(decideConnect(gateway, 'gateway-r1', null)).toBeNull();
    expect(decideConnect(gateway, 'gateway', null)).toBeNull();
    expect(decideConnect(gateway, 'gateway-+', null)).toBe('CLIENT_ID_MISMATCH');
    expect(decideConnect(gateway, 'other-r1', null)).toBe('CLIENT_ID_MISMATCH');
  });
  it("gives a replica's own certificate (gateway-r2) exactly its own id", () => {
    const replica: Identity = { kind: 'gateway', name: 'gateway-r2' };
    expect(decideConnect(replica, 'gateway-r2', null)).toBeNull();
    expect(decideConnect(replica, 'gateway-r3', null)).toBe('CLIENT_ID_MISMATCH');
    expect(decideConnect(replica, 'gateway', null)).toBe('CLIENT_ID_MISMATCH');
    expect(decideConnect(replica, 'gateway-r2-x', null)).toBe('CLIENT_ID_MISMATCH');
  });
  it('refuses wills anywhere but the car own state topic, and retained wills', () => {
    expect(decideConnect(car, A, { topic: `vehicles/${A}/state`, retain: false })).toBeNull();
    expect(decideConnect(car, A, { topic: `vehicles/${B}/commands`, retain: false })).toBe('WILL_FORBIDDEN');
    expect(decideConnect(car, A, { topic: `vehicles/${A}/state`, retain: true })).toBe('WILL_FORBIDDEN');
  });
  it('fails closed without an identity', () => {
    expect(decideConnect(null, A, null)).toBe('IDENTITY_UNKNOWN');
  });
});

describe('publish', () => {
  it('lets a car write only its own acks and state', () => {
    expect(decidePublish(car, pub(`vehicles/${A}/acks`))).toBeNull();
    expect(decidePublish(car, pub(`vehicles/${A}/state`))).toBeNull();
    expect(decidePublish(car, pub(`vehicles/${B}/acks`))).toBe('TOPIC_FORBIDDEN');
    expect(decidePublish(car, pub(`vehicles/${A}/commands`))).toBe('TOPIC_FORBIDDEN');
    expect(decidePublish(car, pub(`vehicles/${B}/commands`))).toBe('TOPIC_FORBIDDEN');
  });
  it('lets only the gateway publish commands', () => {
    expect(decidePublish(gateway, pub(`vehicles/${A}/commands`))).toBeNull();
    expect(decidePublish(gateway, pub(`vehicles/${A}/acks`))).toBe('TOPIC_FORBIDDEN');
  });
  it('lets only the gateway write its subscription probes (PROTOCOL.md §2.1), never retained', () => {
    expect(decidePublish(gateway, pub('vehicles/_probe/acks'))).toBeNull();
    expect(decidePublish(gateway, pub('vehicles/_probe/state'))).toBeNull();
    expect(decidePublish(gateway, pub('vehicles/_probe/state', true))).toBe('RETAIN_FORBIDDEN');
    expect(decidePublish(gateway, pub('vehicles/_probe2/state'))).toBe('TOPIC_FORBIDDEN');
    expect(decidePublish(car, pub('vehicles/_probe/acks'))).toBe('TOPIC_FORBIDDEN');
    expect(decidePublish(car, pub('vehicles/_probe/state'))).toBe('TOPIC_FORBIDDEN');
    expect(allowSubscribe(car, 'vehicles/_probe/state')).toBe(false);
    expect(allowDeliver(car, 'vehicles/_probe/state')).toBe(false);
    expect(allowDeliver(gateway, 'vehicles/_probe/acks')).toBe(true);
  });
  it('refuses retained messages, $SYS and oversized payloads', () => {
    expect(decidePublish(gateway, pub(`vehicles/${A}/commands`, true))).toBe('RETAIN_FORBIDDEN');
    expect(decidePublish(gateway, pub('$SYS/broker/x'))).toBe('TOPIC_FORBIDDEN');
    expect(decidePublish(car, pub(`vehicles/${A}/acks`, false, 1 << 20))).toBe('PAYLOAD_TOO_LARGE');
  });
});

describe('subscribe and deliver', () => {
  it('lets a car read only its own command topic', () => {
    expect(allowSubscribe(car, `vehicles/${A}/commands`)).toBe(true);
    expect(allowSubscribe(car, `vehicles/${B}/commands`)).toBe(false);
    expect(allowSubscribe(car, 'vehicles/+/commands')).toBe(false);
    expect(allowSubscribe(car, '#')).toBe(false);
    expect(allowSubscribe(car, `vehicles/${A}/acks`)).toBe(false);
    expect(allowDeliver(car, `vehicles/${B}/commands`)).toBe(false);
  });
  it('lets the gateway read acks and state but not commands or $SYS', () => {
    expect(allowSubscribe(gateway, 'vehicles/+/acks')).toBe(true);
    expect(allowSubscribe(gateway, 'vehicles/+/state')).toBe(true);
    expect(allowSubscribe(gateway, 'vehicles/+/commands')).toBe(false);
    expect(allowSubscribe(gateway, '#')).toBe(false);
    expect(allowSubscribe(gateway, '$SYS/#')).toBe(false);
    expect(allowDeliver(gateway, '$SYS/x/heartbeat')).toBe(false);
  });
});

describe('admission', () => {
  const NOW = Date.parse('2030-06-01T12:00:00Z');
  const peer = (over: Partial<PeerFacts> = {}): PeerFacts => ({
    certificate: { serial: '4ABC', notBefore: NOW - 1000, notAfter: NOW + 1000 },
    verifyError: null,
    identity: car,
    revoked: false,
    now: NOW,
    ...over,
  });

  it('admits a verified, valid, unrevoked certificate that binds an identity', () => {
    expect(decideAdmission(peer())).toBeNull();
    expect(decideAdmission(peer({ identity: gateway }))).toBeNull();
    expect(decideAdmission(peer({ now: NOW + 1000 }))).toBeNull();
  });

  it.each([
    ['no certificate', { certificate: null }, 'CERT_MISSING'],
    ['another CA', { verifyError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, 'CERT_UNTRUSTED'],
    ['a self-signed certificate', { verifyError: 'DEPTH_ZERO_SELF_SIGNED_CERT' }, 'CERT_UNTRUSTED'],
    ['an expired certificate', { verifyError: 'CERT_HAS_EXPIRED' }, 'CERT_EXPIRED'],
    ['a not-yet-valid certificate', { verifyError: 'CERT_NOT_YET_VALID' }, 'CERT_NOT_YET_VALID'],
    ['no clientAuth EKU', { verifyError: 'INVALID_PURPOSE' }, 'CERT_PURPOSE_INVALID'],
    ['a certificate on the CRL', { verifyError: 'CERT_REVOKED' }, 'CERT_REVOKED'],
    ['an expired CRL', { verifyError: 'CRL_HAS_EXPIRED' }, 'CRL_UNUSABLE'],
    ['a verify result it does not know', { verifyError: 'SOMETHING_NEW' }, 'CERT_REJECTED'],
    // A resumed session skips OpenSSL's checks: these come from our own clock and revocation set.
    ['a resumed session past notAfter', { now: NOW + 1001 }, 'CERT_EXPIRED'],
    ['a resumed session before notBefore', { now: NOW - 1001 }, 'CERT_NOT_YET_VALID'],
    ['a serial revoked since the handshake', { revoked: true }, 'CERT_REVOKED'],
    ['a certificate that binds no identity', { identity: null }, 'IDENTITY_UNKNOWN'],
  ] as Array<[string, Partial<PeerFacts>, string]>)('refuses %s with %s', (_why, over, code) => {
    expect(decideAdmission(peer(over))).toBe(code);
  });
});

describe('wire limits', () => {
  const header = (type: number, length: number): number[] => {
    const bytes = [(type << 4) | (type === 8 || type === 10 ? 2 : 0)];
    let n = length;
    do {
      let digit = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) digit |= 0x80;
      bytes.push(digit);
    } while (n > 0);
    return bytes;
  };
  const packet = (type: number, length: number): number[] => [
    ...header(type, length),
    ...new Array(length).fill(0x61),
  ];
  const scan = (bytes: number[], max = 100, allowPublish?: () => boolean) =>
    createFrameScanner({ maxPacketBytes: max, allowPublish }).push(Uint8Array.from(bytes));

  it('follows packets of every size up to the cap, header included', () => {
    expect(scan([...packet(1, 20), ...packet(3, 98), ...packet(12, 0)])).toBeNull();
    expect(scan(packet(3, 99))).toBe('PACKET_TOO_LARGE');
    expect(scan(packet(3, 16_382), 16_385)).toBeNull();
    expect(scan(packet(3, 16_382), 16_384)).toBe('PACKET_TOO_LARGE');
  });

  it('judges a packet by its header, before its body arrives', () => {
    expect(scan([0x30, 0xff, 0xff, 0xff, 0x7f])).toBe('PACKET_TOO_LARGE');
    expect(scan([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])).toBe('LENGTH_MALFORMED');
  });

  it('refuses SUBSCRIBE and UNSUBSCRIBE without a topic filter [MQTT-3.8.3-3] [MQTT-3.10.3-2]', () => {
    expect(scan(packet(8, 2))).toBe('PACKET_MALFORMED');
    expect(scan(packet(8, 5))).toBe('PACKET_MALFORMED');
    expect(scan(packet(8, 6))).toBeNull();
    expect(scan(packet(10, 4))).toBe('PACKET_MALFORMED');
    expect(scan(packet(10, 5))).toBeNull();
  });

  it('asks the rate limit once per PUBLISH and keeps refusing after the first violation', () => {
    let asked = 0;
    const scanner = createFrameScanner({ maxPacketBytes: 100, allowPublish: () => ++asked <= 2 });
    expect(scanner.push(Uint8Array.from([...packet(3, 4), ...packet(12, 0), ...packet(3, 4)]))).toBeNull();
    expect(asked).toBe(2);
    expect(scanner.push(Uint8Array.from(packet(3, 4)))).toBe('RATE_LIMITED');
    expect(scanner.push(Uint8Array.from(packet(12, 0)))).toBe('RATE_LIMITED');
  });

  it('gives the same verdict however the bytes are split', () => {
    const stream = fc.array(
      fc.tuple(fc.constantFrom(1, 3, 8, 10, 12, 14), fc.integer({ min: 0, max: 140 })),
      { maxLength: 8 },
    );
    fc.assert(
      fc.property(stream, fc.array(fc.integer({ min: 1, max: 20 }), { maxLength: 30 }), (packets, cuts) => {
        const bytes = packets.flatMap(([type, length]) => packet(type, length));
        const whole = scan(bytes);
        const scanner = createFrameScanner({ maxPacketBytes: 100 });
        let verdict: WireViolation | null = null;
        let at = 0;
        for (const cut of [...cuts, bytes.length]) {
          verdict = scanner.push(Uint8Array.from(bytes.slice(at, at + cut)));
          at += cut;
        }
        verdict = scanner.push(Uint8Array.from(bytes.slice(at)));
        expect(verdict).toBe(whole);
      }),
    );
  });
});

describe('token bucket', () => {
  it('allows a burst, then refills at the rate and never beyond the burst', () => {
    let now = 0;
    const bucket = createTokenBucket({ burst: 3, perSecond: 2, now: () => now });
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
    now += 499;
    expect(bucket.take()).toBe(false);
    now += 1;
    expect(bucket.take()).toBe(true);
    expect(bucket.take()).toBe(false);
    now += 60_000;
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
  });

  it('adds nothing when the clock steps back', () => {
    let now = 10_000;
    const bucket = createTokenBucket({ burst: 1, perSecond: 1, now: () => now });
    expect(bucket.take()).toBe(true);
    now = 0;
    expect(bucket.take()).toBe(false);
    now = 999;
    expect(bucket.take()).toBe(false);
    now = 1000;
    expect(bucket.take()).toBe(true);
  });
});
