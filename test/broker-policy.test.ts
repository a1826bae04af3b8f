// Unit tests of the broker's pure access decisions (the live broker is exercised in delivery.e2e.test.ts).
import { describe, expect, it } from 'vitest';
import {
  allowDeliver,
  allowSubscribe,
  decideConnect,
  decidePublish,
  type Identity,
} from '../gateway/broker/policy.ts';

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
