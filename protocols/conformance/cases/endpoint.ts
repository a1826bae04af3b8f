// Owns the cases that need the endpoint's own behaviour over time: a lost clock (TOKEN.md §6.3), a power cycle
// (PROTOCOL.md §5.1) and the fail-safe relock (PROTOCOL.md §5). Each asks the state hook or waits.
import { TOKEN_TYP } from '../../token.ts';
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
import { ConformanceError } from '../errors.ts';
import { freshIds, type TokenIds } from '../session.ts';
import { announce, keysState } from './keys.ts';
import { revoke } from './revocation.ts';

const CLOCK_LOST = 'clock.lost';
/** How long an open car that lost its time may take to lock: its next tick (TOKEN.md §6.3). */
const LOST_CLOCK_RELOCK_MS = 5_000;

const clockLost = (ctx: CaseContext): boolean => ctx.memo.get(CLOCK_LOST) === true;

export const CLOCK_CASES: ConformanceCase[] = [
  {
    id: 'clock.lost-relocks-open-car',
    title: 'an unlocked endpoint that loses the time locks by itself',
    spec: 'TOKEN.md §6.3, PROTOCOL.md §5',
    requires: ['locked', 'clock-control'],
    expected: 'a report: locked, at: null',
    async run(ctx) {
      const { session } = ctx;
      const ids = freshIds(session, 'unlock');
      const opened = judge(
        await session.send(session.command('unlock', session.token(ids), ids), {
          commandId: ids.commandId,
          action: 'unlock',
        }),
        executed('unlock'),
        session.timeoutMs,
      );
      if (opened.verdict !== 'pass') {
        await session.ensureLocked();
        return fail(opened.observed, `the unlock before losing the clock: ${opened.detail}`);
      }
      const since = Date.now();
      const answer = await ctx.hook({ kind: 'clock', known: false });
      if (!answer.done) {
        await session.ensureLocked();
        return skip(answer.reason);
      }
      ctx.memo.set(CLOCK_LOST, true);
      const report = await session.waitForReport((r) => r.report.locked, LOST_CLOCK_RELOCK_MS, since);
      if (!report)
        return fail(
          'still unlocked',
          `no report of a lock within ${LOST_CLOCK_RELOCK_MS / 1000} s of losing the time`,
        );
      if (report.report.at !== null)
        return fail('locked', 'the report carries a time although the endpoint lost it');
      return pass('locked by itself, at: null');
    },
  },
  {
    id: 'clock.lost-refuses-token',
    title: 'a valid token while the endpoint does not know the time',
    spec: 'TOKEN.md §5 step 10, §6.3',
    requires: ['clock-control'],
    expected: 'refused CLOCK_UNKNOWN, at: null',
    vectors: ['tokens: the car does not know the time'],
    async run(ctx) {
      if (!clockLost(ctx)) return skip('needs clock.lost-relocks-open-car to have taken the time away');
      const locked = ctx.session.locked() ?? true;
      return sendToken(ctx, 'lock', (ids) => ({ token: ctx.session.token(ids) }), {
        ...refused('CLOCK_UNKNOWN', locked),
        clockKnown: false,
      });
    },
  },
  {
    id: 'clock.lost-refuses-announcement',
    title: 'a valid key announcement while the endpoint does not know the time',
    spec: 'TOKEN.md §8.2 step 10, §6.3',
    requires: ['clock-control'],
    expected: 'refused CLOCK_UNKNOWN, at: null',
    vectors: ['announcements: the car does not know the time'],
    async run(ctx) {
      if (!clockLost(ctx)) return skip('needs clock.lost-relocks-open-car to have taken the time away');
      const locked = ctx.session.locked() ?? true;
      const exchange = await announce(ctx, keysState(ctx).current);
      return judge(
        exchange,
        { ...refused('CLOCK_UNKNOWN', locked), clockKnown: false },
        ctx.session.timeoutMs,
      );
    },
  },
  {
    id: 'clock.restored',
    title: 'given its time back, the endpoint accepts tokens again',
    spec: 'TOKEN.md §6',
    requires: ['clock-control'],
    expected: 'executed (lock)',
    async run(ctx) {
      if (!clockLost(ctx)) return skip('the clock was not taken away');
      const answer = await ctx.hook({ kind: 'clock', known: true });
      if (!answer.done)
        return fail('clock still lost', `the hook did not give the time back: ${answer.reason}`);
      ctx.memo.delete(CLOCK_LOST);
      // Re-learn the endpoint's time from its answer before minting.
      await ctx.session.query().catch(() => undefined);
      return sendToken(ctx, 'lock', (ids) => ({ token: ctx.session.token(ids) }), executed('lock'));
    },
  },
];

const REBOOT = 'reboot';

interface Rebooted {
  /** A lock accepted before the power cycle: its exact bytes, and its ids. */
  accepted: { payload: string; ids: TokenIds };
  /** A delivery revoked before the power cycle. */
  revokedDelivery: string;
}

function afterReboot(c: {
  id: string;
  title: string;
  spec: string;
  expected: string;
  run(ctx: CaseContext, r: Rebooted): Promise<CaseOutcome>;
}): ConformanceCase {
  return {
    id: c.id,
    title: c.title,
    spec: c.spec,
    requires: ['locked'],
    expected: c.expected,
    run(ctx) {
      const r = ctx.memo.get(REBOOT) as Rebooted | undefined;
      return r ? c.run(ctx, r) : Promise.resolve(skip('needs reboot.endpoint-returns, which did not pass'));
    },
  };
}

export const REBOOT_CASES: ConformanceCase[] = [
  {
    id: 'reboot.endpoint-returns',
    title: 'after accepting a lock and a revoke, the endpoint is power-cycled and answers again',
    spec: 'PROTOCOL.md §5.1',
    requires: ['locked', 'reboot'],
    expected: 'answers a state query after the power cycle',
    async run(ctx) {
      const { session } = ctx;
      const ids = freshIds(session, 'lock');
      const payload = session.command('lock', session.token(ids), ids);
      const before = judge(
        await session.send(payload, { commandId: ids.commandId, deliveryId: ids.deliveryId, action: 'lock' }),
        executed('lock'),
        session.timeoutMs,
      );
      if (before.verdict !== 'pass')
        return fail(before.observed, `the lock before the power cycle: ${before.detail}`);
      const revokedDelivery = session.id('dlv');
      const revoked = judge(await revoke(ctx, revokedDelivery), executed('revoke'), session.timeoutMs);
      if (revoked.verdict !== 'pass')
        return fail(revoked.observed, `the revoke before the power cycle: ${revoked.detail}`);
      const started = Date.now();
      const answer = await ctx.hook({ kind: 'reboot' });
      if (!answer.done) return skip(answer.reason);
      try {
        await session.query(undefined, ctx.rebootTimeoutMs);
      } catch (err) {
        if (!(err instanceof ConformanceError)) throw err;
        return fail('not back', `no answer within ${ctx.rebootTimeoutMs / 1000} s of the power cycle`);
      }
      ctx.memo.set(REBOOT, { accepted: { payload, ids }, revokedDelivery } satisfies Rebooted);
      // A unit that lost power sent no DISCONNECT, so the broker published its will (PROTOCOL.md §1). Told, not
      // required: a broker may take the old session over before it notices the drop.
      const will = session.presences().some((at) => at >= started)
        ? 'its will was published'
        : 'no will seen';
      return pass(`back after ${((Date.now() - started) / 1000).toFixed(1)} s (${will})`);
    },
  },
  afterReboot({
    id: 'reboot.replay-kept',
    title: 'the lock accepted before the power cycle, the same bytes again',
    spec: 'PROTOCOL.md §5.1, TOKEN.md §7',
    expected: 'refused TOKEN_REPLAYED',
    run: async (ctx, r) =>
      judge(
        await ctx.session.send(r.accepted.payload, {
          commandId: r.accepted.ids.commandId,
          deliveryId: r.accepted.ids.deliveryId,
          action: 'lock',
        }),
        refused('TOKEN_REPLAYED'),
        ctx.session.timeoutMs,
      ),
  }),
  afterReboot({
    id: 'reboot.revocation-kept',
    title: 'an unlock of the delivery revoked before the power cycle',
    spec: 'PROTOCOL.md §5.1, TOKEN.md §10',
    expected: 'refused TOKEN_REVOKED',
    run: (ctx, r) =>
      sendToken(
        ctx,
        'unlock',
        (ids) => ({
          token: ctx.session.token({ ...ids, deliveryId: r.revokedDelivery }),
          deliveryId: r.revokedDelivery,
        }),
        refused('TOKEN_REVOKED'),
      ),
  }),
  afterReboot({
    id: 'reboot.keys-kept',
    title: 'the retired and the dropped key are still refused after the power cycle',
    spec: 'PROTOCOL.md §5.1, TOKEN.md §2, §8',
    expected: 'refused TOKEN_KID_RETIRED; refused TOKEN_KID_UNKNOWN',
    async run(ctx) {
      const state = keysState(ctx);
      if (!state.added) return skip('needs keys.announce, which did not pass');
      const { R, B } = state.added;
      const under = (key: typeof R, reason: string) =>
        sendToken(
          ctx,
          'unlock',
          (ids) => ({
            token: ctx.session.token(ids, {
              header: { alg: 'EdDSA', typ: TOKEN_TYP, kid: key.kid },
              key: key.key,
            }),
          }),
          refused(reason),
        );
      const retired = await under(R, 'TOKEN_KID_RETIRED');
      if (retired.verdict !== 'pass') return retired;
      if (state.current.some((k) => k.kid === B.kid))
        return pass(retired.observed, 'keys.drops-key did not pass');
      const dropped = await under(B, 'TOKEN_KID_UNKNOWN');
      return dropped.verdict === 'pass' ? pass(`${retired.observed}; ${dropped.observed}`) : dropped;
    },
  }),
  afterReboot({
    id: 'reboot.outcomes-kept',
    title: 'a query naming the lock accepted before the power cycle',
    spec: 'PROTOCOL.md §3.5, §5.1',
    expected: 'commands: executed',
    async run(ctx, r) {
      let commands: Awaited<ReturnType<typeof ctx.session.query>>['report']['commands'];
      try {
        commands = (await ctx.session.query([r.accepted.ids.commandId])).report.commands;
      } catch (err) {
        if (!(err instanceof ConformanceError)) throw err;
        return fail('no answer', 'the query went unanswered');
      }
      const outcome = commands?.find((c) => c.commandId === r.accepted.ids.commandId);
      if (!outcome)
        return fail('not listed', 'the endpoint forgot the outcome of a command across the power cycle');
      return outcome.outcome === 'executed'
        ? pass('executed')
        : fail(
            `${outcome.outcome} ${outcome.reason ?? ''}`.trim(),
            'the lock executed before the power cycle',
          );
    },
  }),
];

/** How late a fail-safe relock may come: the endpoint checks its deadline periodically, not continuously. */
export const relockTolerance = (relockMs: number): number => Math.max(3_000, relockMs * 0.05);

export const FAILSAFE_CASES: ConformanceCase[] = [
  {
    id: 'failsafe.relock',
    title: 'after an unlock with no lock following, the endpoint locks by itself on time and reports it',
    spec: 'PROTOCOL.md §5',
    requires: ['parked', 'doors-closed', 'locked'],
    expected: 'a report: locked, at the fail-safe time',
    async run(ctx) {
      const { session, relockMs } = ctx;
      const ids = freshIds(session, 'unlock');
      const exchange = await session.send(session.command('unlock', session.token(ids), ids), {
        commandId: ids.commandId,
        action: 'unlock',
      });
      const opened = judge(exchange, executed('unlock'), session.timeoutMs);
      if (opened.verdict !== 'pass' || !exchange.ack || exchange.receivedAt === null) {
        await session.ensureLocked();
        return fail(opened.observed, `the unlock: ${opened.detail}`);
      }
      const tolerance = relockTolerance(relockMs);
      const report = await session.waitForReport(
        (r) => r.report.locked,
        relockMs + tolerance + 2_000,
        exchange.receivedAt,
      );
      if (!report) {
        await session.ensureLocked();
        return fail(
          'still unlocked',
          `no report of a lock within ${((relockMs + tolerance) / 1000).toFixed(1)} s of the unlock`,
        );
      }
      const openedAt = exchange.ack.at;
      const elapsed =
        report.report.at !== null && openedAt !== null
          ? report.report.at - openedAt
          : report.receivedAt - exchange.receivedAt;
      const observed = `relocked after ${(elapsed / 1000).toFixed(2)} s`;
      if (elapsed < relockMs - 1_000)
        return fail(observed, `before its fail-safe time of ${relockMs / 1000} s`);
      if (elapsed > relockMs + tolerance) {
        return fail(
          observed,
          `later than its fail-safe time of ${relockMs / 1000} s + ${tolerance / 1000} s`,
        );
      }
      return pass(observed, `fail-safe time ${relockMs / 1000} s`);
    },
  },
];
