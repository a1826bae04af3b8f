// Owns the replay and revocation cases: a jti is used once, and a revoked delivery's tokens are refused and its
// open car locked (TOKEN.md §4, §7, §10).
import {
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
import { freshIds, type TokenIds } from '../session.ts';

/** A delivery revoked by revoke.executes, and an unlock token minted for it before the revoke. */
interface Revoked {
  deliveryId: string;
  outstanding: { ids: TokenIds; token: string };
}

const REVOKED = 'revoked';

/** Revokes a delivery at the endpoint; the exchange of its revoke command. */
async function revoke(ctx: CaseContext, deliveryId: string) {
  const { session } = ctx;
  const ids = { ...freshIds(session, 'revoke'), deliveryId };
  return session.send(session.command('revoke', session.token(ids), ids), {
    commandId: ids.commandId,
    deliveryId,
    action: 'revoke',
  });
}

export const REPLAY_CASES: ConformanceCase[] = [
  {
    id: 'replay.jti-reused',
    title: 'a new command whose token reuses the jti of an accepted one',
    spec: 'TOKEN.md §5 step 19, §7',
    requires: ['locked'],
    expected: 'refused TOKEN_REPLAYED',
    vectors: ['tokens: a jti already used'],
    async run(ctx) {
      const { session } = ctx;
      const first = freshIds(session, 'lock');
      const accepted = await sendToken(
        ctx,
        'lock',
        () => ({ token: session.token(first), ...first }),
        executed('lock'),
      );
      if (accepted.verdict !== 'pass') return fail(accepted.observed, `the first use: ${accepted.detail}`);
      return sendToken(
        ctx,
        'unlock',
        (ids) => ({ token: session.token({ ...ids, jti: first.jti }) }),
        refused('TOKEN_REPLAYED'),
      );
    },
  },
  {
    id: 'replay.same-command-other-bytes',
    title: 'an accepted command sent again with other bytes (whitespace): not a redelivery',
    spec: 'TOKEN.md §4, §7',
    requires: ['locked'],
    expected: 'refused TOKEN_REPLAYED',
    async run(ctx) {
      const { session } = ctx;
      const ids = freshIds(session, 'lock');
      const payload = session.command('lock', session.token(ids), ids);
      const binding = { commandId: ids.commandId, deliveryId: ids.deliveryId, action: 'lock' };
      const first = judge(await session.send(payload, binding), executed('lock'), session.timeoutMs);
      if (first.verdict !== 'pass') return fail(first.observed, `the first time: ${first.detail}`);
      const respaced = JSON.stringify(JSON.parse(payload), null, 1);
      return judge(await session.send(respaced, binding), refused('TOKEN_REPLAYED'), session.timeoutMs);
    },
  },
];

export const REVOCATION_CASES: ConformanceCase[] = [
  {
    id: 'revoke.executes',
    title: 'a revoke of a delivery whose unlock token is still out',
    spec: 'TOKEN.md §10 step 3',
    requires: ['locked'],
    expected: 'executed, locked',
    async run(ctx) {
      const { session } = ctx;
      const ids = freshIds(session, 'unlock');
      const outstanding = { ids, token: session.token(ids) };
      const outcome = judge(await revoke(ctx, ids.deliveryId), executed('revoke'), session.timeoutMs);
      if (outcome.verdict === 'pass')
        ctx.memo.set(REVOKED, { deliveryId: ids.deliveryId, outstanding } satisfies Revoked);
      return outcome;
    },
  },
  revokedCase({
    id: 'revoke.outstanding-unlock-refused',
    title: "the revoked delivery's unlock token, minted before the revoke",
    spec: 'TOKEN.md §5 step 18, §10 step 4',
    vectors: ['tokens: a revoked delivery'],
    run: (ctx, r) =>
      sendToken(
        ctx,
        'unlock',
        () => ({ token: r.outstanding.token, ...r.outstanding.ids }),
        refused('TOKEN_REVOKED'),
      ),
  }),
  revokedCase({
    id: 'revoke.lock-refused',
    title: 'a new lock token for the revoked delivery',
    spec: 'TOKEN.md §5 step 18, PROTOCOL.md §6.4',
    run: (ctx, r) =>
      sendToken(
        ctx,
        'lock',
        (ids) => ({
          token: ctx.session.token({ ...ids, deliveryId: r.deliveryId }),
          deliveryId: r.deliveryId,
        }),
        refused('TOKEN_REVOKED'),
      ),
  }),
  revokedCase({
    id: 'revoke.twice-refused',
    title: 'a second revoke of the same delivery',
    spec: 'TOKEN.md §10 step 4',
    run: async (ctx, r) =>
      judge(await revoke(ctx, r.deliveryId), refused('TOKEN_REVOKED'), ctx.session.timeoutMs),
  }),
  {
    id: 'revoke.other-delivery-unaffected',
    title: 'a token of another delivery after the revoke',
    spec: 'TOKEN.md §10',
    requires: ['locked'],
    expected: 'executed (lock)',
    run: (ctx) => sendToken(ctx, 'lock', (ids) => ({ token: ctx.session.token(ids) }), executed('lock')),
  },
  {
    id: 'revoke.locks-open-car',
    title: 'a revoke of the delivery the car is open for',
    spec: 'TOKEN.md §10 step 3, PROTOCOL.md §5',
    requires: ['locked'],
    expected: 'executed, locked at once',
    async run(ctx) {
      const { session } = ctx;
      const ids = freshIds(session, 'unlock');
      const opened = judge(
        await session.send(session.command('unlock', session.token(ids), ids), {
          commandId: ids.commandId,
          deliveryId: ids.deliveryId,
          action: 'unlock',
        }),
        executed('unlock'),
        session.timeoutMs,
      );
      if (opened.verdict !== 'pass') {
        await session.ensureLocked();
        return fail(opened.observed, `the unlock before the revoke: ${opened.detail}`);
      }
      const revoked = await revoke(ctx, ids.deliveryId);
      const outcome = judge(revoked, executed('revoke'), session.timeoutMs);
      if (session.locked() === false) await session.ensureLocked();
      return outcome.verdict === 'pass' ? pass('executed, locked') : outcome;
    },
  },
];

function revokedCase(c: {
  id: string;
  title: string;
  spec: string;
  vectors?: string[];
  run(ctx: CaseContext, r: Revoked): Promise<CaseOutcome>;
}): ConformanceCase {
  return {
    id: c.id,
    title: c.title,
    spec: c.spec,
    requires: ['locked'],
    expected: 'refused TOKEN_REVOKED',
    ...(c.vectors ? { vectors: c.vectors } : {}),
    run(ctx) {
      const r = ctx.memo.get(REVOKED) as Revoked | undefined;
      return r ? c.run(ctx, r) : Promise.resolve(skip('needs revoke.executes, which did not pass'));
    },
  };
}

export const REVOKED_MEMO = REVOKED;
export type { Revoked };
export { revoke };
