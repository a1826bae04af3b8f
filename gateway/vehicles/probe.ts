// Owns the subscription probe: proves, after every (re)connect and then every interval, that the broker really
// delivers what the session's subscriptions cover. A broker may grant a SUBACK at QoS 1 and deliver nothing
// (nats-server when it failed to create the subscription's JetStream consumer); only a message sent through
// each subscription and seen coming back shows it works.

/** Injected so tests run the probe on a simulated clock. */
export interface ProbeTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface SubscriptionProbeDeps {
  /** One topic under each subscription to prove, that only this session's identity may write. */
  topics: readonly string[];
  /** Time between the rounds that follow a verified one. */
  intervalMs: number;
  /** How long every probe of a round may take to come back. */
  timeoutMs: number;
  /** Publishes one probe; a publish that fails shows up as a probe that never comes back. */
  publish: (topic: string, payload: string) => void;
  /** A round ran out with these topics' probes missing: the session must be dropped. */
  onDeaf: (missing: string[]) => void;
  /** Unique per round and per session, so another replica's probe on the same topic never counts. */
  newNonce: () => string;
  /** The first round since start came back: the session's subscriptions are proven. */
  onVerified?: () => void;
  timers?: ProbeTimers;
}

export interface SubscriptionProbe {
  /** A session with its subscriptions granted: unverified until the first round comes back. */
  start(): void;
  /** The session is gone: no round runs until the next start. */
  stop(): void;
  /** Every subscription delivered since the last start. */
  verified(): boolean;
  /** True for any message on a probe topic (ours or another replica's): it is no car's message. */
  receive(topic: string, payload: Buffer): boolean;
  /**
   * A car's message came in through the subscription that covers `probeTopic`, in this session: that subscription
   * delivers, as surely as its probe coming back. Under a flood (every car's first report after a connect storm)
   * the probe waits behind thousands of messages; the messages themselves then prove the subscription.
   */
  delivered(probeTopic: string): void;
}

const realTimers: ProbeTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export function createSubscriptionProbe(deps: SubscriptionProbeDeps): SubscriptionProbe {
  const timers = deps.timers ?? realTimers;
  const topics = new Set(deps.topics);
  let running = false;
  let verified = false;
  let nonce: string | null = null;
  let pending = new Set<string>();
  let timer: unknown = null;

  const clear = (): void => {
    if (timer !== null) timers.clearTimeout(timer);
    timer = null;
  };

  const round = (): void => {
    clear();
    nonce = deps.newNonce();
    pending = new Set(topics);
    const sent = nonce;
    timer = timers.setTimeout(() => {
      timer = null;
      if (!running || nonce !== sent || pending.size === 0) return;
      const missing = [...pending];
      running = false;
      verified = false;
      nonce = null;
      deps.onDeaf(missing);
    }, deps.timeoutMs);
    for (const topic of topics) deps.publish(topic, sent);
  };

  /** One subscription of the round proved; when none is left, the round is over and the next is scheduled. */
  const back = (topic: string): void => {
    if (!pending.delete(topic) || pending.size > 0) return;
    const first = !verified;
    verified = true;
    nonce = null;
    clear();
    timer = timers.setTimeout(() => {
      timer = null;
      if (running) round();
    }, deps.intervalMs);
    if (first) deps.onVerified?.();
  };

  return {
    start() {
      running = true;
      verified = false;
      round();
    },
    stop() {
      running = false;
      verified = false;
      nonce = null;
      clear();
    },
    verified: () => verified,
    receive(topic, payload) {
      if (!topics.has(topic)) return false;
      if (!running || nonce === null || payload.toString() !== nonce) return true;
      back(topic);
      return true;
    },
    delivered(probeTopic) {
      if (running && nonce !== null) back(probeTopic);
    },
  };
}
