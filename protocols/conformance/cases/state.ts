// Owns the state-query cases: outcomes of named commands, disowning the unknown ones, queries in turn with
// commands, and report sequence numbers (PROTOCOL.md §3.3, §3.5).
import type { CommandOutcome } from '../../messages.ts';
import { type ConformanceCase, executed, fail, judge, pass, refused } from '../case.ts';
import { ConformanceError } from '../errors.ts';
import { freshIds, type Session } from '../session.ts';
import { otherVin } from './tokens.ts';

const describe = (c: CommandOutcome): string => `${c.outcome}${c.reason ? ` ${c.reason}` : ''}`;

/** Asks; a query that goes unanswered fails the case rather than the run. */
async function ask(session: Session, commandIds?: string[]) {
  try {
    return await session.query(commandIds);
  } catch (err) {
    if (err instanceof ConformanceError) return null;
    throw err;
  }
}

export const STATE_CASES: ConformanceCase[] = [
  {
    id: 'state.query-commands',
    title: 'a query naming an executed and a refused command reports both outcomes as their acks said',
    spec: 'PROTOCOL.md §3.5',
    requires: ['locked'],
    expected: 'commands: executed; refused TOKEN_AUDIENCE_MISMATCH',
    async run({ session }) {
      const ok = freshIds(session, 'lock');
      const bad = freshIds(session, 'unlock');
      const a = await session.send(session.command('lock', session.token(ok), ok), {
        commandId: ok.commandId,
        action: 'lock',
      });
      const token = session.token(bad, { claims: session.claims(bad, { aud: otherVin(session.vin) }) });
      const b = await session.send(session.command('unlock', token, bad), {
        commandId: bad.commandId,
        action: 'unlock',
      });
      for (const [exchange, expected] of [
        [a, executed('lock')],
        [b, refused('TOKEN_AUDIENCE_MISMATCH')],
      ] as const) {
        const verdict = judge(exchange, expected, session.timeoutMs);
        if (verdict.verdict !== 'pass') return fail(verdict.observed, `setting up: ${verdict.detail}`);
      }
      const answer = await ask(session, [ok.commandId, bad.commandId]);
      if (!answer) return fail('no answer', 'the query went unanswered');
      const commands = answer.report.commands;
      if (commands === undefined) {
        return fail(
          'no commands member',
          'the answer must say what became of the named commands (outcome memory)',
        );
      }
      const got = (id: string) => commands.find((c) => c.commandId === id);
      const first = got(ok.commandId);
      const second = got(bad.commandId);
      const observed = `${first ? describe(first) : 'missing'}; ${second ? describe(second) : 'missing'}`;
      if (first?.outcome !== 'executed' || first.reason !== undefined)
        return fail(observed, 'the lock executed');
      if (second?.outcome !== 'refused' || second.reason !== 'TOKEN_AUDIENCE_MISMATCH') {
        return fail(observed, 'the unlock was refused TOKEN_AUDIENCE_MISMATCH');
      }
      return pass(observed);
    },
  },
  {
    id: 'state.query-disowns',
    title: 'a command a query named before it arrived is refused when it comes',
    spec: 'PROTOCOL.md §3.5, §5',
    requires: ['locked'],
    expected: 'not listed, then refused COMMAND_DISOWNED',
    async run({ session }) {
      const ids = freshIds(session, 'lock');
      const answer = await ask(session, [ids.commandId]);
      if (!answer) return fail('no answer', 'the query went unanswered');
      if (answer.report.commands?.some((c) => c.commandId === ids.commandId)) {
        return fail('listed', 'the endpoint reported an outcome for a command it never received');
      }
      const exchange = await session.send(session.command('lock', session.token(ids), ids), {
        commandId: ids.commandId,
        deliveryId: ids.deliveryId,
        action: 'lock',
      });
      return judge(exchange, refused('COMMAND_DISOWNED'), session.timeoutMs);
    },
  },
  {
    id: 'state.query-in-turn',
    title: 'a query sent right behind an unlock is answered after it: unlocked, the unlock executed',
    spec: 'PROTOCOL.md §3.5',
    requires: ['locked'],
    expected: 'locked: false, commands: executed',
    async run({ session }) {
      const ids = freshIds(session, 'unlock');
      await session.publish(session.command('unlock', session.token(ids), ids), 2);
      const answer = await ask(session, [ids.commandId]);
      await session.ensureLocked();
      if (!answer) return fail('no answer', 'the query went unanswered');
      const outcome = answer.report.commands?.find((c) => c.commandId === ids.commandId);
      const observed = `locked: ${answer.report.locked}, ${outcome ? describe(outcome) : 'not listed'}`;
      if (answer.report.locked || outcome?.outcome !== 'executed') {
        return fail(observed, 'the answer must reflect every command published before the query');
      }
      return pass(observed);
    },
  },
];

/** Runs last: every report of the run carried a larger seq than the one before, and decoded. */
export const SEQ_CASE: ConformanceCase = {
  id: 'state.seq-increases',
  title:
    'every state report of the run decoded, each with a larger seq than the last (across the reboot too)',
  spec: 'PROTOCOL.md §3.3',
  requires: [],
  expected: 'strictly increasing seq',
  async run({ session }) {
    const reports = session.reports();
    const problems = session.stateProblems();
    if (problems.length > 0) return fail(`${problems.length} undecodable`, problems[0] ?? '');
    for (let i = 1; i < reports.length; i++) {
      const [a, b] = [reports[i - 1]?.report.seq ?? 0, reports[i]?.report.seq ?? 0];
      if (b <= a) return fail(`seq ${a} then ${b}`, `report ${i + 1} of ${reports.length} did not increase`);
    }
    return pass(`${reports.length} reports`);
  },
};
