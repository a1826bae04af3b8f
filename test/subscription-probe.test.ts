// The subscription probe's rounds on a simulated clock: proven on return, deaf on a missing probe, replicas apart.
import { describe, expect, it } from 'vitest';
import { createSubscriptionProbe, type ProbeTimers } from '../gateway/vehicles/probe.ts';
import { PROBE_TOPICS } from '../protocols/index.ts';

function simulatedClock() {
  let now = 0;
  let next = 0;
  const due = new Map<number, { at: number; fn: () => void }>();
  const timers: ProbeTimers = {
    setTimeout: (fn, ms) => {
      const id = next++;
      due.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimeout: (id) => {
      due.delete(id as number);
    },
  };
  const advance = (ms: number): void => {
    const until = now + ms;
    for (;;) {
      const first = [...due].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
      if (!first) break;
      due.delete(first[0]);
      now = first[1].at;
      first[1].fn();
    }
    now = until;
  };
  return { timers, advance, pending: () => due.size };
}

function setup() {
  const clock = simulatedClock();
  const sent: Array<{ topic: string; payload: string }> = [];
  const deaf: string[][] = [];
  let verifiedCalls = 0;
  let n = 0;
  const probe = createSubscriptionProbe({
    topics: PROBE_TOPICS,
    intervalMs: 30_000,
    timeoutMs: 5_000,
    publish: (topic, payload) => sent.push({ topic, payload }),
    onDeaf: (missing) => deaf.push(missing),
    onVerified: () => verifiedCalls++,
    newNonce: () => `gateway-r1 ${n++}`,
    timers: clock.timers,
  });
  const echo = (which: Array<{ topic: string; payload: string }>): void => {
    for (const m of which) probe.receive(m.topic, Buffer.from(m.payload));
  };
  return { clock, sent, deaf, probe, echo, verifiedCalls: () => verifiedCalls };
}

describe('subscription probe', () => {
  it('is unverified from start until a probe came back through every subscription', () => {
    const { sent, probe, echo, verifiedCalls, deaf, clock } = setup();
    probe.start();
    expect(sent.map((m) => m.topic)).toEqual([...PROBE_TOPICS]);
    expect(probe.verified()).toBe(false);
    echo(sent.slice(0, 1));
    expect(probe.verified()).toBe(false);
    echo(sent.slice(1, 2));
    expect(probe.verified()).toBe(true);
    expect(verifiedCalls()).toBe(1);
    clock.advance(29_999);
    expect(sent).toHaveLength(2);
    clock.advance(1);
    // The next round: the session stays verified while it runs.
    expect(sent).toHaveLength(4);
    expect(probe.verified()).toBe(true);
    echo(sent.slice(2));
    clock.advance(5_000);
    expect(deaf).toEqual([]);
    expect(verifiedCalls()).toBe(1);
  });

  it('reports the subscriptions whose probe did not come back within the bound, once, and stops', () => {
    const { sent, probe, echo, deaf, clock } = setup();
    probe.start();
    echo(sent.filter((m) => m.topic.endsWith('/state')));
    clock.advance(4_999);
    expect(deaf).toEqual([]);
    clock.advance(1);
    expect(deaf).toEqual([[PROBE_TOPICS[0]]]);
    expect(probe.verified()).toBe(false);
    // No further round until the next session starts it.
    clock.advance(120_000);
    expect(sent).toHaveLength(2);
    expect(deaf).toHaveLength(1);
  });

  it('finds a subscription that goes deaf after it was verified', () => {
    const { sent, probe, echo, deaf, clock } = setup();
    probe.start();
    echo(sent);
    clock.advance(30_000 + 5_000);
    expect(deaf).toEqual([[...PROBE_TOPICS]]);
    expect(probe.verified()).toBe(false);
  });

  it("does not count an earlier round's probe, another replica's, or a changed payload", () => {
    const { sent, probe, deaf, clock } = setup();
    probe.start();
    const first = sent.slice();
    clock.advance(5_000);
    expect(deaf).toHaveLength(1);
    probe.start();
    for (const m of first) expect(probe.receive(m.topic, Buffer.from(m.payload))).toBe(true);
    for (const t of PROBE_TOPICS) {
      expect(probe.receive(t, Buffer.from('gateway-r2 1'))).toBe(true);
      expect(probe.receive(t, Buffer.from(`${sent[2]?.payload}x`))).toBe(true);
    }
    expect(probe.verified()).toBe(false);
    clock.advance(5_000);
    expect(deaf).toHaveLength(2);
  });

  it('leaves every other topic to the caller', () => {
    const { probe, sent } = setup();
    probe.start();
    expect(probe.receive('vehicles/1HGCM82633A004352/state', Buffer.from(sent[0]?.payload ?? ''))).toBe(
      false,
    );
    expect(probe.verified()).toBe(false);
  });

  it("counts a car's message through a subscription as that subscription's probe, only while a round runs", () => {
    // A connect storm: thousands of first reports ahead of the probe; they prove the subscription themselves.
    const { sent, probe, echo, deaf, clock } = setup();
    probe.start();
    probe.delivered(PROBE_TOPICS[1]);
    expect(probe.verified()).toBe(false);
    probe.delivered(PROBE_TOPICS[0]);
    expect(probe.verified()).toBe(true);
    // The probes themselves, late, change nothing.
    echo(sent);
    clock.advance(30_000 + 4_999);
    // Next round: only the acks subscription delivers; the state one is reported deaf.
    probe.delivered(PROBE_TOPICS[0]);
    clock.advance(1);
    expect(deaf).toEqual([[PROBE_TOPICS[1]]]);
    // Stopped (the session is gone): traffic proves nothing until the next start.
    probe.delivered(PROBE_TOPICS[0]);
    probe.delivered(PROBE_TOPICS[1]);
    expect(probe.verified()).toBe(false);
  });

  it('runs nothing once stopped', () => {
    const { sent, probe, echo, deaf, clock } = setup();
    probe.start();
    probe.stop();
    echo(sent);
    expect(probe.verified()).toBe(false);
    clock.advance(60_000);
    expect(deaf).toEqual([]);
    expect(clock.pending()).toBe(0);
  });
});
