// Owns the envelope and dialect cases: what the car does with the command around the token (PROTOCOL.md §3.1,
// §3.2, §5; PROVIDERS.md §3), from vectors/commands.json and the provider dialects.
import { canonicalAck } from '../../ack-signature.ts';
import type { ProviderId } from '../../catalog.ts';
import { encodeMessage, type ToCar } from '../../messages.ts';
import { PROVIDERS } from '../../providers/index.ts';
import {
  type CaseContext,
  type CaseOutcome,
  type ConformanceCase,
  executed,
  fail,
  judge,
  observedOf,
  pass,
  refused,
  sendToken,
} from '../case.ts';
import { freshIds, type ReceivedAck, type Session } from '../session.ts';

/** A request each dialect has that is neither unlock nor lock: remote engine start (PROVIDERS.md §4). */
export const REMOTE_START: Record<ProviderId, string> = { onstar: 'start', 'volvo-on-call': 'RES' };

/** The dialect text of a door command with its command name replaced: found as the member lock and unlock differ in. */
export function withCommandName(
  session: Session,
  command: ToCar & { type: 'command' },
  name: string,
): string {
  const lock = JSON.parse(session.adapter.encodeToCar({ ...command, action: 'lock' })) as Record<
    string,
    unknown
  >;
  const unlock = JSON.parse(session.adapter.encodeToCar({ ...command, action: 'unlock' })) as Record<
    string,
    unknown
  >;
  const replace = (a: Record<string, unknown>, b: Record<string, unknown>): boolean => {
    for (const key of Object.keys(a)) {
      const [x, y] = [a[key], b[key]];
      if (typeof x === 'object' && x !== null && typeof y === 'object' && y !== null) {
        if (replace(x as Record<string, unknown>, y as Record<string, unknown>)) return true;
      } else if (x !== y) {
        a[key] = name;
        return true;
      }
    }
    return false;
  };
  if (!replace(lock, unlock)) throw new Error(`the ${session.provider} dialect names lock and unlock alike`);
  return JSON.stringify(lock);
}

/** A command with its command id member written twice (the second the real one): strict JSON refuses it. */
function duplicateIdMember(payload: string, commandId: string): string {
  const member = new RegExp(`"([A-Za-z_]+)":"${commandId}"`).exec(payload);
  if (!member) throw new Error('the command id is not a member of the encoded command');
  return payload.replace(member[0], `"${member[1]}":"cmd_other","${member[1]}":"${commandId}"`);
}

/**
 * Sends what cannot be answered by name, or may be refused: passes when no ack came, or a refusal with one of
 * the codes, as long as nothing executed and the car stayed locked.
 */
async function refusedOrSilent(
  ctx: CaseContext,
  payload: string,
  codes: readonly string[],
): Promise<CaseOutcome> {
  const acks = await ctx.session.sendUnanswerable(payload);
  return judgeSilence(acks, codes, ctx.session);
}

function judgeSilence(acks: ReceivedAck[], codes: readonly string[], session: Session): CaseOutcome {
  if (acks.length === 0) {
    return session.locked() === false ? fail('no ack', 'the endpoint unlocked') : pass('no ack');
  }
  const [first] = acks as [ReceivedAck];
  if (!first.ack) return fail('ack does not decode', first.problem ?? '');
  const observed = first.ack.outcome === 'refused' ? `refused ${first.ack.reason}` : 'executed';
  if (first.ack.outcome !== 'refused' || !codes.includes(first.ack.reason ?? '')) {
    return fail(observed, `expected no ack${codes.length > 0 ? ` or refused ${codes.join(' or ')}` : ''}`);
  }
  if (!first.ack.locked) return fail(observed, 'the refusal left the car unlocked');
  return pass(observed);
}

/** Sends a payload whose ack can only be named by its command id, and judges the refusal. */
async function refusedById(
  ctx: CaseContext,
  payload: string,
  commandId: string,
  reason: string,
): Promise<CaseOutcome> {
  const exchange = await ctx.session.send(payload, { commandId }, 1);
  const outcome = judge(exchange, refused(reason), ctx.session.timeoutMs);
  if (ctx.session.locked() === false) await ctx.session.ensureLocked();
  return outcome;
}

const commandOf = (session: Session, action: 'lock' | 'unlock') => {
  const ids = freshIds(session, action);
  const command = {
    v: 1 as const,
    type: 'command' as const,
    commandId: ids.commandId,
    deliveryId: ids.deliveryId,
    action,
    token: session.token(ids),
  };
  return { ids, command };
};

export const COMMAND_CASES: ConformanceCase[] = [
  {
    id: 'command.envelope-action-differs',
    title: 'an unlock token in a lock envelope',
    spec: 'TOKEN.md §4, §5 step 13',
    requires: ['locked'],
    expected: 'refused TOKEN_ACTION_MISMATCH',
    vectors: ['commands: envelope action differs from act'],
    run: (ctx) =>
      sendToken(
        ctx,
        'unlock',
        (ids) => ({ token: ctx.session.token(ids), action: 'lock' }),
        refused('TOKEN_ACTION_MISMATCH'),
      ),
  },
  {
    id: 'command.envelope-command-differs',
    title: 'a token in an envelope with another commandId than its cid',
    spec: 'TOKEN.md §4, §5 step 14',
    requires: ['locked'],
    expected: 'refused TOKEN_BINDING_MISMATCH',
    vectors: ['commands: envelope commandId differs from cid'],
    run: (ctx) =>
      sendToken(
        ctx,
        'unlock',
        (ids) => ({ token: ctx.session.token(ids), commandId: ctx.session.id('cmd') }),
        refused('TOKEN_BINDING_MISMATCH'),
      ),
  },
  {
    id: 'command.envelope-delivery-differs',
    title: 'a token in an envelope with another deliveryId than its sub',
    spec: 'TOKEN.md §4, §5 step 14',
    requires: ['locked'],
    expected: 'refused TOKEN_BINDING_MISMATCH',
    vectors: ['commands: envelope deliveryId differs from sub'],
    run: (ctx) =>
      sendToken(
        ctx,
        'unlock',
        (ids) => ({ token: ctx.session.token(ids), deliveryId: ctx.session.id('dlv') }),
        refused('TOKEN_BINDING_MISMATCH'),
      ),
  },
  {
    id: 'command.token-3000-characters',
    title: 'a token of 3000 characters in an envelope that allows it',
    spec: 'TOKEN.md §5 step 1',
    requires: ['locked'],
    expected: 'refused TOKEN_TOO_LARGE',
    vectors: ['commands: token of 3000 characters'],
    run: (ctx) => sendToken(ctx, 'unlock', () => ({ token: 'a'.repeat(3000) }), refused('TOKEN_TOO_LARGE')),
  },
  {
    id: 'command.unknown-member',
    title: 'a command carrying a member the protocol does not define',
    spec: 'PROTOCOL.md §3, §5',
    requires: ['locked'],
    expected: 'refused COMMAND_MALFORMED',
    vectors: ['commands: unknown envelope member'],
    run(ctx) {
      const { ids, command } = commandOf(ctx.session, 'unlock');
      const payload = ctx.session.adapter.encodeToCar({ ...command, priority: 'high' } as ToCar);
      return refusedById(ctx, payload, ids.commandId, 'COMMAND_MALFORMED');
    },
  },
  {
    id: 'command.version-2',
    title: 'a revoke of protocol version 2',
    spec: 'PROTOCOL.md §3, §5',
    requires: ['locked'],
    expected: 'refused COMMAND_MALFORMED or DIALECT_MISMATCH, or no ack',
    vectors: ['commands: protocol version 2'],
    run(ctx) {
      const ids = freshIds(ctx.session, 'revoke');
      const payload = JSON.stringify({
        ...JSON.parse(ctx.session.command('revoke', ctx.session.token(ids), ids)),
        v: 2,
      });
      return refusedOrSilent(ctx, payload, ['COMMAND_MALFORMED', 'DIALECT_MISMATCH']);
    },
  },
  {
    id: 'command.duplicate-id-member',
    title: 'a command whose id member is written twice',
    spec: 'PROTOCOL.md §3, PROVIDERS.md §3 step 2',
    requires: ['locked'],
    expected: 'no ack (the command cannot be named)',
    vectors: ['commands: duplicate commandId members'],
    run(ctx) {
      const { ids, command } = commandOf(ctx.session, 'unlock');
      return refusedOrSilent(
        ctx,
        duplicateIdMember(ctx.session.adapter.encodeToCar(command), ids.commandId),
        [],
      );
    },
  },
  {
    id: 'command.not-json',
    title: 'a command that is not JSON',
    spec: 'PROTOCOL.md §3, PROVIDERS.md §3 step 2',
    requires: ['locked'],
    expected: 'no ack (the command cannot be named)',
    vectors: ['commands: not JSON'],
    run(ctx) {
      const { command } = commandOf(ctx.session, 'unlock');
      return refusedOrSilent(ctx, ctx.session.adapter.encodeToCar(command).slice(0, -1), []);
    },
  },
  {
    id: 'command.id-with-path',
    title: 'a command whose id is a path',
    spec: 'PROTOCOL.md §3, PROVIDERS.md §3 step 4',
    requires: ['locked'],
    expected: 'no ack (the command cannot be named)',
    vectors: ['commands: commandId with a path'],
    run(ctx) {
      const { command } = commandOf(ctx.session, 'unlock');
      return refusedOrSilent(ctx, ctx.session.adapter.encodeToCar({ ...command, commandId: '../cmd' }), []);
    },
  },
  {
    id: 'command.redelivery',
    title: 'the same command bytes twice (an MQTT redelivery): executed once, the same ack twice',
    spec: 'PROTOCOL.md §3.2, TOKEN.md §4',
    requires: ['locked'],
    expected: 'two identical executed acks',
    async run({ session }) {
      const { ids, command } = commandOf(session, 'lock');
      const payload = session.adapter.encodeToCar(command);
      const first = await session.send(payload, {
        commandId: ids.commandId,
        deliveryId: ids.deliveryId,
        action: 'lock',
      });
      const verdict = judge(first, executed('lock'), session.timeoutMs);
      if (verdict.verdict !== 'pass') return verdict;
      const waiting = session.acksFor(ids.commandId, 1, session.timeoutMs);
      await session.publish(payload, 1);
      const [second] = await waiting;
      if (!second?.ack) return fail('no second ack', second?.problem ?? 'the redelivery was not answered');
      const observed =
        second.ack.outcome === 'refused'
          ? `refused ${second.ack.reason} the second time`
          : 'the same ack twice';
      if (!first.ack || canonicalAck(second.ack) !== canonicalAck(first.ack)) {
        return fail(
          observed,
          'a redelivery must be answered with the ack sent the first time, not verified again',
        );
      }
      return pass(observed);
    },
  },
  {
    id: 'command.refusal-consumes-nothing',
    title: 'a token refused for its envelope still executes in its own envelope',
    spec: 'TOKEN.md §5',
    requires: ['locked'],
    expected: 'refused TOKEN_BINDING_MISMATCH, then executed',
    async run({ session }) {
      const ids = freshIds(session, 'lock');
      const token = session.token(ids);
      const wrong = { commandId: session.id('cmd'), deliveryId: ids.deliveryId };
      const first = await session.send(session.command('lock', token, wrong), { ...wrong, action: 'lock' });
      const refusal = judge(first, refused('TOKEN_BINDING_MISMATCH'), session.timeoutMs);
      if (refusal.verdict !== 'pass') return refusal;
      const right = { commandId: ids.commandId, deliveryId: ids.deliveryId };
      const second = await session.send(session.command('lock', token, right), { ...right, action: 'lock' });
      const verdict = judge(second, executed('lock'), session.timeoutMs);
      return verdict.verdict === 'pass'
        ? pass('refused, then executed')
        : fail(`then ${observedOf(second)}`, `the refusal used the token up: ${verdict.detail}`);
    },
  },
];

export const DIALECT_CASES: ConformanceCase[] = [
  {
    id: 'dialect.foreign',
    title: "a valid unlock in another provider's dialect",
    spec: 'PROVIDERS.md §3 step 3, PROTOCOL.md §5',
    requires: ['locked'],
    expected: 'refused DIALECT_MISMATCH',
    async run(ctx) {
      const { session } = ctx;
      const [foreign] = Object.values(PROVIDERS).filter((a) => a.id !== session.provider);
      if (!foreign) return { verdict: 'skip', observed: 'not run', detail: 'only one dialect is defined' };
      const { ids, command } = commandOf(session, 'unlock');
      return refusedById(ctx, foreign.encodeToCar(command), ids.commandId, 'DIALECT_MISMATCH');
    },
  },
  {
    id: 'dialect.canonical-door-command',
    title: 'a valid unlock in the canonical form, not in the dialect',
    spec: 'PROVIDERS.md §3 step 3, PROTOCOL.md §3',
    requires: ['locked'],
    expected: 'refused DIALECT_MISMATCH, or no ack',
    run(ctx) {
      const { command } = commandOf(ctx.session, 'unlock');
      return refusedOrSilent(ctx, encodeMessage(command), ['DIALECT_MISMATCH']);
    },
  },
  {
    id: 'dialect.action-not-allowed',
    title: 'remote engine start, in the dialect, with a valid token',
    spec: 'PROTOCOL.md §5, PROVIDERS.md §3 step 5',
    requires: ['locked'],
    expected: 'refused ACTION_NOT_ALLOWED',
    vectors: ['commands: action outside the set'],
    run(ctx) {
      const { ids, command } = commandOf(ctx.session, 'lock');
      const payload = withCommandName(ctx.session, command, REMOTE_START[ctx.session.provider]);
      return refusedById(ctx, payload, ids.commandId, 'ACTION_NOT_ALLOWED');
    },
  },
];
