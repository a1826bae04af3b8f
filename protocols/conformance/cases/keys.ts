// Owns the key cases: announcements and their verification, the keys they add, retire and drop, and the token
// vectors that need such keys (TOKEN.md §2, §5 steps 6-7, §8; vectors/announcements.json).
import { compactJws } from '../../forge.ts';
import { KEYS_TYP } from '../../key-announcement.ts';
import type { TrustedJwk } from '../../keys.ts';
import { TOKEN_TYP } from '../../token.ts';
import {
  type AckExpectation,
  type CaseContext,
  type CaseOutcome,
  type ConformanceCase,
  executed,
  fail,
  judge,
  pass,
  refused,
  sendToken,
  skip,
} from '../case.ts';
import type { Exchange } from '../session.ts';
import { type KitKey, retiring, throwawayKey } from '../signer.ts';

/** How long after the first announcement the overlap key retires: the kit checks it before and after. */
export const OVERLAP_MS = 6_000;
const HOUR = 3_600_000;

/** What the kit knows of the endpoint's keys: what it announced last, and the keys it made up for that. */
export interface KeysState {
  /** The keys the endpoint was enrolled with, and the kit's: what the last case announces back. */
  base: TrustedJwk[];
  /** The set the endpoint holds, as far as the kit knows. */
  current: TrustedJwk[];
  seq: number;
  /** The last announcement the endpoint accepted. */
  accepted: string | null;
  /** Added by keys.announce: B new, R retired an hour ago, O retiring after OVERLAP_MS, E retiring in an hour. */
  added: { B: KitKey; R: KitKey; O: KitKey; E: KitKey } | null;
  /** Endpoint time at which O retires, ms. */
  overlapEndsAt: number;
  /** When E retires, ms (brought forward by a case). */
  eRetiresAt: number;
}

const MEMO = 'keys';

/** The kit's view of the endpoint's keys; created from the enrollment file on first use. */
export function keysState(ctx: CaseContext): KeysState {
  let state = ctx.memo.get(MEMO) as KeysState | undefined;
  if (!state) {
    const kit = ctx.session.signer.jwk;
    const base = ctx.enrolledKeys.some((k) => k.kid === kit.kid)
      ? [...ctx.enrolledKeys]
      : [...ctx.enrolledKeys, kit];
    state = { base, current: base, seq: 0, accepted: null, added: null, overlapEndsAt: 0, eRetiresAt: 0 };
    ctx.memo.set(MEMO, state);
  }
  return state;
}

/** A seq above every earlier one: the signing time in ms, as the gateway does (TOKEN.md §8.1). */
const nextSeq = (state: KeysState): number => Math.max(Date.now(), state.seq + 1);

export interface AnnounceOptions {
  seq?: number;
  /** Signs with this key (default the kit's), under its kid unless the header says otherwise. */
  signer?: KitKey;
  header?: Record<string, unknown>;
  /** Replaces payload members. */
  payload?: Record<string, unknown>;
  /** Sends this JWS as it is. */
  jws?: string;
}

/** Sends a key announcement (TOKEN.md §8.1); when the endpoint accepts it, the kit's view follows. */
export async function announce(
  ctx: CaseContext,
  keys: TrustedJwk[],
  options: AnnounceOptions = {},
): Promise<Exchange> {
  const { session } = ctx;
  const state = keysState(ctx);
  const seq = options.seq ?? nextSeq(state);
  const signer = options.signer ?? session.signer;
  const jws =
    options.jws ??
    compactJws(
      { alg: 'EdDSA', typ: KEYS_TYP, kid: signer.kid, ...options.header },
      { iss: session.issuer, seq, iat: Math.floor(session.now() / 1000), keys, ...options.payload },
      signer.key,
    );
  const commandId = session.id('cmd');
  const exchange = await session.send(
    session.keysCommand(jws, commandId),
    { commandId, action: 'keys', deliveryId: null },
    1,
  );
  if (exchange.ack?.outcome === 'executed' && options.jws === undefined) {
    state.current = keys;
    state.seq = seq;
    state.accepted = jws;
  }
  return exchange;
}

const KEPT: AckExpectation = { outcome: 'executed', locked: true };

/** The current set with one key's JWK replaced. */
const replacing = (state: KeysState, kid: string, jwk: TrustedJwk): TrustedJwk[] =>
  state.current.map((k) => (k.kid === kid ? jwk : k));

/** A case that needs keys.announce to have run. */
function withKeys(
  run: (ctx: CaseContext, state: KeysState, added: NonNullable<KeysState['added']>) => Promise<CaseOutcome>,
): (ctx: CaseContext) => Promise<CaseOutcome> {
  return async (ctx) => {
    const state = keysState(ctx);
    if (!state.added) return skip('needs keys.announce, which did not pass');
    return run(ctx, state, state.added);
  };
}

/** An announcement case: the keys and options from the state, and the verdict expected. */
function announcementCase(c: {
  id: string;
  vector: string;
  spec: string;
  expected: AckExpectation;
  make: (
    ctx: CaseContext,
    state: KeysState,
    added: NonNullable<KeysState['added']>,
  ) =>
    | Promise<{ keys: TrustedJwk[]; options?: AnnounceOptions }>
    | { keys: TrustedJwk[]; options?: AnnounceOptions };
}): ConformanceCase {
  return {
    id: c.id,
    title: c.vector,
    spec: c.spec,
    requires: ['locked'],
    expected: c.expected.outcome === 'executed' ? 'executed' : `refused ${String(c.expected.reason)}`,
    vectors: [`announcements: ${c.vector}`],
    run: withKeys(async (ctx, state, added) => {
      const { keys, options } = await c.make(ctx, state, added);
      return judge(await announce(ctx, keys, options), c.expected, ctx.session.timeoutMs);
    }),
  };
}

/** A token signed by one of the announced keys. */
const tokenUnder = (ctx: CaseContext, key: KitKey, action: 'lock' | 'unlock', expected: AckExpectation) =>
  sendToken(
    ctx,
    action,
    (ids) => ({
      token: ctx.session.token(ids, { header: { alg: 'EdDSA', typ: TOKEN_TYP, kid: key.kid }, key: key.key }),
    }),
    expected,
  );

/** The first cases: one announcement sets up the keys later cases use, and the tokens under them. */
export const KEYS_SETUP_CASES: ConformanceCase[] = [
  {
    id: 'keys.announce',
    title: 'an announcement adding a key, a retired key, one in its overlap and one retiring in an hour',
    spec: 'TOKEN.md §8.1, §8.2',
    requires: ['locked'],
    expected: 'executed',
    vectors: [
      'announcements: valid: adds gateway-b',
      'announcements: valid: adds gateway-b and retires gateway-a in an hour',
      'commands: valid key announcement',
    ],
    async run(ctx) {
      const state = keysState(ctx);
      const [B, R, O, E] = await Promise.all([
        throwawayKey(),
        throwawayKey(),
        throwawayKey(),
        throwawayKey(),
      ]);
      const now = ctx.session.now();
      const overlapEndsAt = now + OVERLAP_MS;
      const keys = [
        ...state.base,
        B.jwk,
        retiring(R.jwk, now - HOUR),
        retiring(O.jwk, overlapEndsAt),
        retiring(E.jwk, now + HOUR),
      ];
      const outcome = judge(await announce(ctx, keys), KEPT, ctx.session.timeoutMs);
      if (outcome.verdict === 'pass') {
        state.added = { B, R, O, E };
        state.overlapEndsAt = overlapEndsAt;
        state.eRetiresAt = now + HOUR;
      }
      return outcome;
    },
  },
  {
    id: 'keys.overlap-key-valid',
    title: 'a token under an announced key before its retirement',
    spec: 'TOKEN.md §5 step 7, §8.3',
    requires: ['locked'],
    expected: 'executed (lock)',
    vectors: ['tokens: valid under a key in its overlap (retires in 10 min)'],
    run: withKeys((ctx, _s, { O }) => tokenUnder(ctx, O, 'lock', executed('lock'))),
  },
  {
    id: 'keys.new-key-valid',
    title: 'a token under the key just announced',
    spec: 'TOKEN.md §8.1',
    requires: ['locked'],
    expected: 'executed (lock)',
    run: withKeys((ctx, _s, { B }) => tokenUnder(ctx, B, 'lock', executed('lock'))),
  },
  {
    id: 'keys.retired-key-refused',
    title: 'a token under a key retired an hour ago',
    spec: 'TOKEN.md §5 step 7',
    requires: ['locked'],
    expected: 'refused TOKEN_KID_RETIRED',
    vectors: ['tokens: kid retired an hour ago'],
    run: withKeys((ctx, _s, { R }) => tokenUnder(ctx, R, 'unlock', refused('TOKEN_KID_RETIRED'))),
  },
];

/** The announcement vectors, then dropping a key. */
export const KEYS_CASES: ConformanceCase[] = [
  {
    id: 'keys.access-token-as-announcement',
    title: 'an access token presented as an announcement',
    spec: 'TOKEN.md §8.2 (§5 step 5)',
    requires: ['locked'],
    expected: 'refused TOKEN_TYP_INVALID',
    vectors: ['announcements: an access token presented as an announcement'],
    run: withKeys(async (ctx) => {
      const { session } = ctx;
      const ids = {
        commandId: session.id('cmd'),
        deliveryId: session.id('dlv'),
        jti: session.id('jti'),
        action: 'lock' as const,
      };
      return judge(
        await announce(ctx, [], { jws: session.token(ids) }),
        refused('TOKEN_TYP_INVALID'),
        session.timeoutMs,
      );
    }),
  },
  announcementCase({
    id: 'keys.signed-by-retired-key',
    vector: 'signed by the retired key',
    spec: 'TOKEN.md §8.2 (§5 step 7)',
    expected: refused('TOKEN_KID_RETIRED'),
    make: (_ctx, state, { R }) => ({ keys: state.current, options: { signer: R } }),
  }),
  announcementCase({
    id: 'keys.signed-by-announced-key',
    vector: 'signed by the key it announces (not yet trusted)',
    spec: 'TOKEN.md §8.2 (§5 step 6)',
    expected: refused('TOKEN_KID_UNKNOWN'),
    make: async (_ctx, state) => {
      const F = await throwawayKey();
      return { keys: [...state.current, F.jwk], options: { signer: F } };
    },
  }),
  announcementCase({
    id: 'keys.signed-by-other-key',
    vector: 'signed by another key under a pinned kid',
    spec: 'TOKEN.md §8.2 (§5 step 8)',
    expected: refused('TOKEN_SIGNATURE_INVALID'),
    make: async (ctx, state) => {
      const other = await throwawayKey();
      return { keys: state.current, options: { signer: { ...other, kid: ctx.session.signer.kid } } };
    },
  }),
  announcementCase({
    id: 'keys.header-jku',
    vector: 'jku header',
    spec: 'TOKEN.md §8.2 (§5 step 4)',
    expected: refused('TOKEN_HEADER_FORBIDDEN'),
    make: (_ctx, state) => ({
      keys: state.current,
      options: { header: { jku: 'https://attacker.example/jwks.json' } },
    }),
  }),
  announcementCase({
    id: 'keys.extra-member',
    vector: 'an extra member',
    spec: 'TOKEN.md §8.2 step 9',
    expected: refused('KEYS_PAYLOAD_INVALID'),
    make: (_ctx, state) => ({ keys: state.current, options: { payload: { note: 'x' } } }),
  }),
  announcementCase({
    id: 'keys.kid-not-thumbprint',
    vector: "a kid that is not its key's thumbprint",
    spec: 'TOKEN.md §8.2 step 9',
    expected: refused('KEYS_PAYLOAD_INVALID'),
    make: async (_ctx, state) => {
      const F = await throwawayKey();
      return { keys: [...state.current, { ...F.jwk, kid: 'not-the-thumbprint' }] };
    },
  }),
  announcementCase({
    id: 'keys.same-key-twice',
    vector: 'the same key twice',
    spec: 'TOKEN.md §8.2 step 9',
    expected: refused('KEYS_PAYLOAD_INVALID'),
    make: (ctx, state) => ({ keys: [...state.current, ctx.session.signer.jwk] }),
  }),
  announcementCase({
    id: 'keys.seventeen-keys',
    vector: 'seventeen keys',
    spec: 'TOKEN.md §8.2 step 9',
    expected: refused('KEYS_PAYLOAD_INVALID'),
    make: (ctx) => ({ keys: Array.from({ length: 17 }, () => ctx.session.signer.jwk) }),
  }),
  announcementCase({
    id: 'keys.rsa-key',
    vector: 'an RSA key',
    spec: 'TOKEN.md §8.2 step 9',
    expected: refused('KEYS_PAYLOAD_INVALID'),
    make: (_ctx, state) => ({
      keys: [
        ...state.current,
        { kty: 'RSA', n: 'AQAB', e: 'AQAB', kid: 'rsa-key-0001' } as unknown as TrustedJwk,
      ],
    }),
  }),
  announcementCase({
    id: 'keys.issuer-mismatch',
    vector: 'another issuer',
    spec: 'TOKEN.md §8.2 step 11',
    expected: refused('TOKEN_ISSUER_MISMATCH'),
    make: (_ctx, state) => ({ keys: state.current, options: { payload: { iss: 'urn:gateway:elsewhere' } } }),
  }),
  {
    id: 'keys.seq-replayed',
    title: 'the announcement the endpoint holds, sent again in a new command',
    spec: 'TOKEN.md §8.2 step 12',
    requires: ['locked'],
    expected: 'refused KEYS_STALE',
    vectors: ['announcements: seq the car already holds (a replay)'],
    run: withKeys(async (ctx, state) => {
      if (!state.accepted) return skip('no announcement was accepted yet');
      return judge(
        await announce(ctx, [], { jws: state.accepted }),
        refused('KEYS_STALE'),
        ctx.session.timeoutMs,
      );
    }),
  },
  announcementCase({
    id: 'keys.seq-rollback',
    vector: "seq below the car's (a rollback)",
    spec: 'TOKEN.md §8.2 step 12',
    expected: refused('KEYS_STALE'),
    make: (_ctx, state) => ({ keys: state.current, options: { seq: state.seq - 1 } }),
  }),
  announcementCase({
    id: 'keys.lifts-retirement',
    vector: 'lifts the retirement of gateway-retired',
    spec: 'TOKEN.md §8.2 step 13',
    expected: refused('KEYS_RETIREMENT_LIFTED'),
    make: (_ctx, state, { R }) => ({ keys: replacing(state, R.kid, R.jwk) }),
  }),
  announcementCase({
    id: 'keys.postpones-retirement',
    vector: 'postpones the retirement of gateway-overlap',
    spec: 'TOKEN.md §8.2 step 13',
    expected: refused('KEYS_RETIREMENT_LIFTED'),
    make: (_ctx, state, { E }) => ({
      keys: replacing(state, E.kid, retiring(E.jwk, state.eRetiresAt + HOUR)),
    }),
  }),
  {
    id: 'keys.brings-retirement-forward',
    title: 'valid: brings a retirement forward',
    spec: 'TOKEN.md §8.2 step 13',
    requires: ['locked'],
    expected: 'executed',
    vectors: ['announcements: valid: brings a retirement forward'],
    run: withKeys(async (ctx, state, { E }) => {
      const at = state.eRetiresAt - HOUR / 2;
      const outcome = judge(
        await announce(ctx, replacing(state, E.kid, retiring(E.jwk, at))),
        KEPT,
        ctx.session.timeoutMs,
      );
      if (outcome.verdict === 'pass') state.eRetiresAt = at;
      return outcome;
    }),
  },
  announcementCase({
    id: 'keys.no-active-key',
    vector: 'leaves no key that is not retired',
    spec: 'TOKEN.md §8.2 step 14',
    expected: refused('KEYS_NO_ACTIVE_KEY'),
    make: async (ctx, state, { R }) => {
      const F = await throwawayKey();
      // R as the endpoint holds it (a later retiredAt would be refused at step 13 first), F retired already.
      const held = state.current.find((k) => k.kid === R.kid) ?? retiring(R.jwk, ctx.session.now() - HOUR);
      return { keys: [held, retiring(F.jwk, ctx.session.now() - 1_000)] };
    },
  }),
  {
    id: 'keys.drops-key',
    title: 'valid: drops keys (a key left out is no longer trusted)',
    spec: 'TOKEN.md §8.1',
    requires: ['locked'],
    expected: 'executed',
    vectors: ['announcements: valid: drops keys (a key left out is no longer trusted)'],
    run: withKeys(async (ctx, state, { B }) =>
      judge(
        await announce(
          ctx,
          state.current.filter((k) => k.kid !== B.kid),
        ),
        KEPT,
        ctx.session.timeoutMs,
      ),
    ),
  },
  {
    id: 'keys.dropped-key-refused',
    title: 'a token under the key the last announcement left out',
    spec: 'TOKEN.md §8.1, §5 step 6',
    requires: ['locked'],
    expected: 'refused TOKEN_KID_UNKNOWN',
    run: withKeys((ctx, _s, { B }) => tokenUnder(ctx, B, 'unlock', refused('TOKEN_KID_UNKNOWN'))),
  },
];

/**
 * The overlap key once its retirement has come (TOKEN.md §8.3). It runs late in the suite, so the time the
 * cases before it take counts towards the wait.
 */
export const KEYS_OVERLAP_ENDED_CASE: ConformanceCase = {
  id: 'keys.overlap-ended',
  title: 'a token under the overlap key once its retirement has come',
  spec: 'TOKEN.md §5 step 7, §8.3',
  requires: ['locked'],
  expected: 'refused TOKEN_KID_RETIRED',
  vectors: ['tokens: kid whose overlap has ended'],
  run: withKeys(async (ctx, state, { O }) => {
    const wait = state.overlapEndsAt + 1_000 - ctx.session.now();
    if (wait > 0) await ctx.sleep(wait);
    return tokenUnder(ctx, O, 'unlock', refused('TOKEN_KID_RETIRED'));
  }),
};

/** Last: the endpoint gets back the keys it was enrolled with (and the kit's), without the ones the kit made up. */
export const KEYS_RESTORE_CASE: ConformanceCase = {
  id: 'keys.restore',
  title: 'an announcement of the enrolled keys: the run leaves the endpoint trusting what it trusted before',
  spec: 'TOKEN.md §8.1',
  requires: ['locked'],
  expected: 'executed, then a token under the kit key executes',
  async run(ctx) {
    const state = keysState(ctx);
    if (state.seq === 0) return pass('nothing to restore', 'no announcement was accepted during the run');
    const restored = judge(await announce(ctx, state.base), KEPT, ctx.session.timeoutMs);
    if (restored.verdict !== 'pass') return restored;
    const after = await sendToken(
      ctx,
      'lock',
      (ids) => ({ token: ctx.session.token(ids) }),
      executed('lock'),
    );
    return after.verdict === 'pass'
      ? pass('restored')
      : fail(after.observed, `after the restore: ${after.detail}`);
  },
};
