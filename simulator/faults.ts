// Owns fault injection for simulated cars: a seeded PRNG, the fault plan, and the per-car injector the transport consults.
import { z } from 'zod';

/** mulberry32: a tiny 32-bit PRNG, good enough to pick faults and small enough to read. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Derives an independent 32-bit seed for one named stream (FNV-1a over "seed/label"). */
export function seedFor(seed: number, label: string): number {
  let h = 0x811c9dc5;
  for (const ch of `${seed >>> 0}/${label}`) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const Probability = z.number().min(0).max(1);
const Ms = z.number().int().min(0).max(3_600_000);

/** Faults on one direction of messages. Every field is optional; a missing one means "no such fault". */
export const MessageFaultsSchema = z.strictObject({
  /** Chance a message is lost. For acks this is "the car executed, the ack never arrived". */
  drop: Probability.optional(),
  /** Chance a message is handled (inbound) or sent (outbound) twice. */
  duplicate: Probability.optional(),
  /** Inbound only: chance a command is held back and handled after the next one. */
  reorder: Probability.optional(),
  /** Fixed delay added to every message. */
  latencyMs: Ms.optional(),
  /** Uniform random delay in [0, jitterMs) added on top of latencyMs. */
  jitterMs: Ms.optional(),
});
export type MessageFaults = z.infer<typeof MessageFaultsSchema>;

export const LinkModeSchema = z.enum(['online', 'asleep', 'offline', 'no_signal']);
/**
 * online: connected and awake. asleep: connected but dormant; the first message on the command topic wakes
 * it after wakeLatencyMs. offline: the unit is off the network and does not try to connect. no_signal: no
 * radio coverage (a garage, a parking deck): it keeps trying with backoff and every attempt fails.
 */
export type LinkMode = z.infer<typeof LinkModeSchema>;

export const BatterySchema = z.enum(['ok', 'low']);
export type Battery = z.infer<typeof BatterySchema>;

export const ClockFaultsSchema = z.strictObject({
  /** Car clock minus real time at start, ms. */
  offsetMs: z.number().int().min(-31_536_000_000).max(31_536_000_000).optional(),
  /** Rate error in parts per million: 1000 gains a second every 1000 s. */
  driftPpm: z.number().min(-500_000).max(500_000).optional(),
  /** false: the car has lost the time (no GNSS, RTC reset) and reports at: null. */
  known: z.boolean().optional(),
});

export const FaultPlanSchema = z.strictObject({
  link: LinkModeSchema.optional(),
  /** How long an asleep car takes to wake after the first message. */
  wakeLatencyMs: Ms.optional(),
  /** An awake car falls asleep after this long without a message; absent: it stays awake. */
  sleepAfterMs: Ms.optional(),
  /** Commands and state queries from the gateway. */
  commands: MessageFaultsSchema.optional(),
  acks: MessageFaultsSchema.omit({ reorder: true }).optional(),
  state: MessageFaultsSchema.omit({ reorder: true }).optional(),
  clock: ClockFaultsSchema.optional(),
  battery: BatterySchema.optional(),
});
export type FaultPlan = z.infer<typeof FaultPlanSchema>;

/** Fleet-wide faults and per-car overrides (a car's section replaces the fleet's section of the same name). */
export const FleetFaultPlanSchema = z.strictObject({
  fleet: FaultPlanSchema.optional(),
  cars: z.record(z.string(), FaultPlanSchema).optional(),
});
export type FleetFaultPlan = z.infer<typeof FleetFaultPlanSchema>;

export const DEFAULT_WAKE_LATENCY_MS = 2_000;
/** How long a reordered command waits for a successor before it is handled anyway. */
export const REORDER_HOLD_MS = 1_000;

export type FaultKind =
  | 'command_dropped'
  | 'command_duplicated'
  | 'command_reordered'
  | 'command_delayed'
  | 'command_missed_offline'
  | 'ack_lost'
  | 'ack_duplicated'
  | 'ack_delayed'
  | 'state_dropped'
  | 'state_duplicated'
  | 'state_delayed'
  | 'link_down'
  | 'link_up'
  | 'connect_failed'
  | 'asleep'
  | 'wake_requested'
  | 'woken'
  | 'clock_jump'
  | 'clock_drift'
  | 'clock_lost'
  | 'clock_restored'
  | 'battery_low'
  | 'battery_ok'
  | 'reboot'
  | 'moved';

/** One entry of a car's fault trace. `n` counts entries per car; `msg` is the inbound/outbound message ordinal. */
export interface FaultEvent {
  n: number;
  kind: FaultKind;
  detail?: Record<string, string | number | boolean>;
}

/** What a transport lets the fault layer do to its session. */
export interface TransportHooks {
  /** Drops the session without a DISCONNECT, as a lost radio link does; the broker then publishes the will. */
  dropLink(): void;
  /** The radio may connect again: start reconnecting with the usual backoff. */
  linkRestored(): void;
}

/** connect: go ahead. fail: the attempt fails (no signal); back off and try again. wait: do not try until restored. */
export type ConnectOutcome = 'connect' | 'fail' | 'wait';

/** The transport's view of a car's faults (simulator/transport.ts calls these; nothing else does). */
export interface TransportFaults {
  attach(hooks: TransportHooks): void;
  /** Forgets everything held for the session (buffered, reordered, delayed messages) and its timers. */
  detach(): void;
  /** False while the unit is off the network (offline): it does not even try. */
  mayTryToConnect(): boolean;
  /** Decides one reconnect attempt (and records a failed one). */
  connectAttempt(): ConnectOutcome;
  /**
   * Takes one inbound message. `handle` processes it; `done` lets the MQTT client acknowledge it (PUBACK) and
   * read the next packet. Handling stays sequential: a message is handled after the ones before it, except a
   * reordered one.
   */
  inbound(handle: () => Promise<void>, done: () => void): void;
  outbound(kind: 'ack' | 'state', send: () => void): void;
  /** Whether unsolicited state reports go out now (not while asleep). */
  reportsAllowed(): boolean;
}

export interface ClockStatus {
  known: boolean;
  offsetMs: number;
  driftPpm: number;
}

export interface CarFaultsStatus {
  link: LinkMode;
  battery: Battery;
  clock: ClockStatus;
  plan: FaultPlan;
}

/** One car's faults: the transport side, the car side (battery, clock) and the operations that change them. */
export interface CarFaults extends TransportFaults {
  readonly vin: string;
  batteryLow(): boolean;
  /** The car's own time: real time through the clock faults; null when the car has lost the time. */
  carTime(): number | null;
  setLink(mode: LinkMode): void;
  setBattery(level: Battery): void;
  jumpClock(deltaMs: number): void;
  setDrift(ppm: number): void;
  setClockKnown(known: boolean): void;
  /** Replaces the message faults (commands, acks, state) and sleep settings given; others stay. */
  updatePlan(plan: FaultPlan): void;
  /** Drops the link at once, without a goodbye, for a reboot; the link mode stays as it was. */
  cutPower(): void;
  /** Notes an event the fleet caused (a reboot, a move) in this car's trace. */
  note(kind: FaultKind, detail?: FaultEvent['detail']): void;
  status(): CarFaultsStatus;
  trace(): readonly FaultEvent[];
  counts(): Partial<Record<FaultKind, number>>;
}

export interface CarFaultsDeps {
  vin: string;
  seed: number;
  plan: FaultPlan;
  /** Real time in ms; the car's clock is derived from it. */
  now: () => number;
}

const chance = (r: number, p: number | undefined): boolean => p !== undefined && r < p;
const delayOf = (f: MessageFaults | undefined, r: number): number =>
  (f?.latencyMs ?? 0) + Math.floor(r * (f?.jitterMs ?? 0));

interface Job {
  msg: number;
  handle: () => Promise<void>;
  /** The random draws for this message, taken when it arrived so that buffering does not shift the stream. */
  draws: [number, number, number, number];
}

export function createCarFaults(deps: CarFaultsDeps): CarFaults {
  const { vin } = deps;
  let plan: FaultPlan = structuredClone(deps.plan);
  // One PRNG per channel, so periodic state reports (timer driven) cannot shift the command and ack faults.
  const rCommands = mulberry32(seedFor(deps.seed, `${vin}/commands`));
  const rAcks = mulberry32(seedFor(deps.seed, `${vin}/acks`));
  const rState = mulberry32(seedFor(deps.seed, `${vin}/state`));
  const events: FaultEvent[] = [];
  const record = (kind: FaultKind, detail?: FaultEvent['detail']): void => {
    events.push(
      detail === undefined ? { n: events.length + 1, kind } : { n: events.length + 1, kind, detail },
    );
  };

  let link: LinkMode = plan.link ?? 'online';
  let battery: Battery = plan.battery ?? 'ok';
  // Car time = anchorCar + (real - anchorReal) * rate, re-anchored on every change.
  const start = deps.now();
  let anchorReal = start;
  let anchorCar = start + (plan.clock?.offsetMs ?? 0);
  let driftPpm = plan.clock?.driftPpm ?? 0;
  let clockKnown = plan.clock?.known ?? true;

  let hooks: TransportHooks | null = null;
  let inboundSeq = 0;
  let outboundSeq = 0;
  let chain: Promise<void> = Promise.resolve();
  let held: Job | null = null;
  let heldTimer: NodeJS.Timeout | null = null;
  let waking: NodeJS.Timeout | null = null;
  let sleepTimer: NodeJS.Timeout | null = null;
  const buffered: Job[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const later = (ms: number, fn: () => void): NodeJS.Timeout => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
    return timer;
  };
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => later(ms, resolve));
  const enqueue = (job: () => Promise<void>): Promise<void> => {
    const run = chain.then(job);
    chain = run.catch(() => {});
    return run;
  };

  const realNow = (): number => deps.now();
  const rawCarTime = (real: number): number => anchorCar + (real - anchorReal) * (1 + driftPpm / 1_000_000);
  const reanchor = (): number => {
    const real = realNow();
    anchorCar = rawCarTime(real);
    anchorReal = real;
    return real;
  };

  const armSleep = (): void => {
    if (sleepTimer !== null) clearTimeout(sleepTimer);
    sleepTimer = null;
    if (plan.sleepAfterMs === undefined || link !== 'online') return;
    sleepTimer = setTimeout(() => {
      sleepTimer = null;
      if (link !== 'online') return;
      link = 'asleep';
      record('asleep', { idle: true });
    }, plan.sleepAfterMs);
  };

  const releaseHeld = (): void => {
    if (heldTimer !== null) clearTimeout(heldTimer);
    heldTimer = null;
    const job = held;
    held = null;
    if (job) void enqueue(job.handle);
  };

  /** Applies the message faults to one awake inbound message. */
  const admit = (job: Job, done: () => void): void => {
    const [rDrop, rDup, rReorder, rJitter] = job.draws;
    const f = plan.commands;
    if (chance(rDrop, f?.drop)) {
      record('command_dropped', { msg: job.msg });
      done();
      return;
    }
    if (held === null && chance(rReorder, f?.reorder)) {
      record('command_reordered', { msg: job.msg });
      held = job;
      heldTimer = setTimeout(releaseHeld, REORDER_HOLD_MS);
      // Acknowledged at once: the client reads the next packet, which then overtakes this one.
      done();
      return;
    }
    const delayMs = delayOf(f, rJitter);
    if (delayMs > 0) record('command_delayed', { msg: job.msg, delayMs });
    const twice = chance(rDup, f?.duplicate);
    if (twice) record('command_duplicated', { msg: job.msg });
    const wasHeld = held;
    void enqueue(async () => {
      if (delayMs > 0) await sleep(delayMs);
      await job.handle();
      // A QoS 1 redelivery: the same bytes again, which the car answers with the same ack.
      if (twice) await job.handle();
    }).finally(() => {
      done();
      if (wasHeld !== null && held === wasHeld) releaseHeld();
    });
  };

  const wake = (): void => {
    waking = null;
    if (link !== 'asleep') return;
    link = 'online';
    record('woken');
    armSleep();
    for (const job of buffered.splice(0)) admit(job, () => {});
  };

  const dropLink = (): void => {
    if (hooks) hooks.dropLink();
  };

  const self: CarFaults = {
    vin,
    attach(h) {
      hooks = h;
      // A plan that starts off the network takes the link down right after the first connect.
      if (link === 'offline' || link === 'no_signal') queueMicrotask(dropLink);
      else armSleep();
    },
    detach() {
      hooks = null;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const timer of [heldTimer, waking, sleepTimer]) if (timer !== null) clearTimeout(timer);
      heldTimer = null;
      waking = null;
      sleepTimer = null;
      held = null;
      buffered.length = 0;
      chain = Promise.resolve();
      if (link === 'asleep') link = 'online';
    },
    mayTryToConnect: () => link !== 'offline',
    connectAttempt() {
      if (link === 'offline') return 'wait';
      if (link === 'no_signal') {
        record('connect_failed');
        return 'fail';
      }
      return 'connect';
    },
    inbound(handle, done) {
      const job: Job = {
        msg: ++inboundSeq,
        handle,
        draws: [rCommands(), rCommands(), rCommands(), rCommands()],
      };
      if (link === 'offline' || link === 'no_signal') {
        // Arrived as the link went down: the unit never saw it. No PUBACK either, so the broker delivers it
        // again in the next session [MQTT-4.4.0-1].
        record('command_missed_offline', { msg: job.msg });
        return;
      }
      if (link === 'asleep') {
        buffered.push(job);
        if (waking === null) {
          record('wake_requested', { msg: job.msg });
          waking = setTimeout(wake, plan.wakeLatencyMs ?? DEFAULT_WAKE_LATENCY_MS);
        }
        done();
        return;
      }
      armSleep();
      admit(job, done);
    },
    outbound(kind, send) {
      const msg = ++outboundSeq;
      const r = kind === 'ack' ? rAcks : rState;
      const [rDrop, rDup, rJitter] = [r(), r(), r()];
      const f = kind === 'ack' ? plan.acks : plan.state;
      if (chance(rDrop, f?.drop)) {
        record(kind === 'ack' ? 'ack_lost' : 'state_dropped', { msg });
        return;
      }
      const twice = chance(rDup, f?.duplicate);
      if (twice) record(kind === 'ack' ? 'ack_duplicated' : 'state_duplicated', { msg });
      const delayMs = delayOf(f, rJitter);
      const go = (): void => {
        send();
        if (twice) send();
      };
      if (delayMs > 0) {
        record(kind === 'ack' ? 'ack_delayed' : 'state_delayed', { msg, delayMs });
        later(delayMs, go);
      } else go();
    },
    reportsAllowed: () => link === 'online',
    batteryLow: () => battery === 'low',
    carTime() {
      if (!clockKnown) return null;
      return Math.floor(rawCarTime(realNow()));
    },
    setLink(mode) {
      const was = link;
      if (mode === was) return;
      link = mode;
      if (mode === 'offline' || mode === 'no_signal') {
        record('link_down', { mode });
        // Whatever a dormant unit had buffered is gone with the link.
        if (waking !== null) clearTimeout(waking);
        waking = null;
        buffered.length = 0;
        if (was === 'online' || was === 'asleep') dropLink();
        return;
      }
      if (was === 'offline' || was === 'no_signal') {
        record('link_up', { mode });
        hooks?.linkRestored();
      }
      if (mode === 'asleep') {
        record('asleep');
        return;
      }
      // asleep → online: woken by hand, buffered commands go through at once.
      if (was === 'asleep') {
        link = 'asleep';
        if (waking !== null) clearTimeout(waking);
        wake();
        return;
      }
      armSleep();
    },
    setBattery(level) {
      if (level === battery) return;
      battery = level;
      record(level === 'low' ? 'battery_low' : 'battery_ok');
    },
    jumpClock(deltaMs) {
      reanchor();
      anchorCar += deltaMs;
      record('clock_jump', { deltaMs });
    },
    setDrift(ppm) {
      if (ppm === driftPpm) return;
      reanchor();
      driftPpm = ppm;
      record('clock_drift', { ppm });
    },
    setClockKnown(known) {
      if (known === clockKnown) return;
      if (known) {
        // Regaining the time (GNSS fix) sets the clock right again.
        anchorReal = realNow();
        anchorCar = anchorReal;
      }
      clockKnown = known;
      record(known ? 'clock_restored' : 'clock_lost');
    },
    updatePlan(next) {
      plan = { ...plan, ...structuredClone(next) };
      armSleep();
    },
    cutPower: dropLink,
    note: record,
    status: () => ({
      link,
      battery,
      clock: {
        known: clockKnown,
        offsetMs: Math.round(rawCarTime(realNow()) - realNow()),
        driftPpm,
      },
      plan: structuredClone(plan),
    }),
    trace: () => events,
    counts() {
      const counts: Partial<Record<FaultKind, number>> = {};
      for (const e of events) counts[e.kind] = (counts[e.kind] ?? 0) + 1;
      return counts;
    },
  };
  return self;
}

/** Every car's faults under one seed; a car's injector is made on first use from the fleet and car sections. */
export interface FleetFaults {
  readonly seed: number;
  forCar(vin: string): CarFaults;
  cars(): ReadonlyMap<string, CarFaults>;
  /** Fault counts summed over the fleet. */
  counts(): Partial<Record<FaultKind, number>>;
}

export interface FleetFaultsDeps {
  seed: number;
  plan?: FleetFaultPlan;
  now?: () => number;
}

/** The plan a car runs under: each section of the car's own plan replaces the fleet's section. */
export function planFor(plan: FleetFaultPlan | undefined, vin: string): FaultPlan {
  return { ...(plan?.fleet ?? {}), ...(plan?.cars?.[vin] ?? {}) };
}

export function createFleetFaults(deps: FleetFaultsDeps): FleetFaults {
  const cars = new Map<string, CarFaults>();
  const now = deps.now ?? Date.now;
  return {
    seed: deps.seed,
    forCar(vin) {
      let faults = cars.get(vin);
      if (!faults) {
        faults = createCarFaults({ vin, seed: deps.seed, plan: planFor(deps.plan, vin), now });
        cars.set(vin, faults);
      }
      return faults;
    },
    cars: () => cars,
    counts() {
      const total: Partial<Record<FaultKind, number>> = {};
      for (const faults of cars.values()) {
        for (const [kind, n] of Object.entries(faults.counts()) as Array<[FaultKind, number]>) {
          total[kind] = (total[kind] ?? 0) + n;
        }
      }
      return total;
    },
  };
}
