// Owns the opening cases: the endpoint answers, trusts the kit's key, and signs its acks (PROTOCOL.md §3.5, TOKEN.md §2, §9).
import type { ConformanceCase } from '../case.ts';
import { executed, fail, judge, pass, refused, sendToken } from '../case.ts';
import { ConformanceError } from '../errors.ts';
import { freshIds } from '../session.ts';
import { otherVin } from './tokens.ts';

export const SESSION_CASES: ConformanceCase[] = [
  {
    id: 'state.query-answered',
    title: 'a state query is answered with one report echoing its nonce',
    spec: 'PROTOCOL.md §3.5',
    requires: ['parked', 'doors-closed'],
    expected: 'a report with the nonce, the time, no commands',
    async run({ session }) {
      let answer: Awaited<ReturnType<typeof session.query>>;
      try {
        answer = await session.query();
      } catch (err) {
        if (!(err instanceof ConformanceError)) throw err;
        return {
          verdict: 'fail',
          observed: 'no answer',
          detail: `${err.message}: check --vin, --provider and the broker, and that the unit is online`,
          abort: true,
        };
      }
      const { report } = answer;
      const ms = answer.receivedAt - answer.sentAt;
      if (report.vin !== session.vin) return fail('answered', `the report names ${report.vin}`);
      if (report.at === null)
        return fail('answered', 'the report says at: null: the endpoint does not know the time');
      if (report.commands !== undefined) {
        return fail(
          'answered',
          'a query without commandIds must be answered without commands (PROTOCOL.md §3.5)',
        );
      }
      return pass(`answered in ${ms} ms`);
    },
  },
  {
    id: 'session.kit-key-trusted',
    title: "a valid lock signed with the kit's key executes: the endpoint trusts the key",
    spec: 'TOKEN.md §2',
    requires: ['locked'],
    expected: 'executed (lock)',
    async run(ctx) {
      const outcome = await sendToken(
        ctx,
        'lock',
        (ids) => ({ token: ctx.session.token(ids) }),
        executed('lock'),
      );
      if (outcome.verdict === 'pass') return outcome;
      const untrusted = /TOKEN_KID_UNKNOWN|TOKEN_SIGNATURE_INVALID|TOKEN_ISSUER_MISMATCH|no ack/.test(
        outcome.observed,
      );
      return untrusted
        ? {
            ...outcome,
            abort: true,
            detail: `${outcome.detail}; the endpoint must trust the kit's signing key (kid ${ctx.session.signer.kid}) and issuer ${ctx.session.issuer}: enroll it in its trusted-keys.json (README, Conformance kit)`,
          }
        : outcome;
    },
  },
  {
    id: 'ack.signature',
    title: 'acks are signed with the key certified for the VIN, refusals included',
    spec: 'TOKEN.md §9',
    requires: ['locked'],
    expected: 'executed and refused acks, both verifying',
    async run(ctx) {
      const { session } = ctx;
      const accepted = await sendToken(
        ctx,
        'lock',
        (ids) => ({ token: session.token(ids) }),
        executed('lock'),
      );
      if (accepted.verdict !== 'pass') return accepted;
      const ids = freshIds(session, 'unlock');
      const token = session.token(ids, { claims: session.claims(ids, { aud: otherVin(session.vin) }) });
      const exchange = await session.send(session.command('unlock', token, ids), {
        commandId: ids.commandId,
        deliveryId: ids.deliveryId,
        action: 'unlock',
      });
      const refusal = judge(exchange, refused('TOKEN_AUDIENCE_MISMATCH'), session.timeoutMs);
      if (session.locked() === false) await session.ensureLocked();
      if (refusal.verdict !== 'pass') return refusal;
      return pass('both signed (ES256, canonical ack)');
    },
  },
];
