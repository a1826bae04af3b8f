// Owns commands to the car: minting a token bound to a command id, publishing it, checking the signed ack,
// settling the command row, and the error a request gets when a command did not go through.
import { createHash } from 'node:crypto';
import {
  type Ack,
  buildClaims,
  type Command,
  mintAccessToken,
  PROTOCOL_VERSION,
  type TokenAction,
} from '../../protocols/index.ts';
import { ApiError } from '../errors.ts';
import { insertCommand, insertVehicleAck, settleCommand } from '../store/commands.ts';
import type { Db } from '../store/db.ts';
import type { DeliveryRecord } from '../store/deliveries.ts';
import { appendEvent } from '../store/timeline.ts';
import { recordAckedState } from '../store/vehicles.ts';
import { type AckRefusal, checkSignedAck } from '../vehicles/acks.ts';
import type { VehicleLink } from '../vehicles/link.ts';
import type { CommandOutcome, DeliveryContext } from './context.ts';

/** What happened to one command on the wire, after it was settled in the store. */
export type Sent =
  | { kind: 'executed'; ack: Ack; roundTripMs: number }
  | { kind: 'refused'; ack: Ack }
  | { kind: 'timeout' }
  | { kind: 'broker_unavailable' }
  /** An ack came but did not verify against the car's certificate (TOKEN.md §9): treated as no ack. */
  | { kind: 'ack_invalid'; code: AckRefusal }
  /**
   * No ack in time, but the car's answer to a state query (or a late ack) settled the command meanwhile
   * (PROTOCOL.md §6.3); `locked` is the car's lock state that evidence showed.
   */
  | { kind: 'reconciled'; status: 'executed' | 'refused' | 'not_executed'; locked: boolean | null };

const tokenHash = (token: string): string => createHash('sha256').update(token).digest('base64url');

export function createCommands(ctx: DeliveryContext) {
  const { deps, db, write, policy, now, newId, logger } = ctx;

  /**
   * Mints a token bound to a fresh command id; returns what to publish and how to record it. The signature is
   * made before the write starts, so the shared transaction of a group commit never waits for it.
   */
  async function prepareCommand(
    d: DeliveryRecord,
    action: TokenAction,
    notAfterMs: number,
  ): Promise<{ command: Command; record: (trx: Db) => Promise<void> }> {
    const t = now();
    const signing = deps.signer.keys.active();
    const commandId = `cmd_${newId()}`;
    const jti = newId();
    const claims = buildClaims({
      issuer: deps.signer.issuer,
      vin: d.vin,
      deliveryId: d.id,
      action,
      commandId,
      jti,
      nowMs: t,
      ttlS: policy.tokenTtlS,
      notAfterMs,
    });
    const token = await mintAccessToken({ privateKey: signing.privateKey, kid: signing.kid, claims });
    const record = async (trx: Db): Promise<void> => {
      await insertCommand(trx, {
        id: commandId,
        deliveryId: d.id,
        vin: d.vin,
        action,
        jti,
        tokenHash: tokenHash(token),
        status: 'sent',
        reason: null,
        issuedAt: t,
        expiresAt: claims.exp * 1000,
        ackedAt: null,
      });
      await appendEvent(trx, d.id, {
        at: t,
        kind: 'command_sent',
        outcome: 'info',
        code: null,
        detail: {
          commandId,
          action,
          jti,
          tokenSha256: tokenHash(token),
          exp: claims.exp,
          kid: signing.kid,
        },
      });
    };
    return {
      command: { v: PROTOCOL_VERSION, type: 'command', commandId, deliveryId: d.id, action, token },
      record,
    };
  }

  /**
   * Publishes a prepared command, waits for the ack and settles the command row; failures go on the timeline.
   * An ack counts only when it is bound to this command and signed by the car's certificate (TOKEN.md §9); the
   * verified ack is kept as evidence with the settlement.
   */
  async function send(
    d: DeliveryRecord,
    command: Command,
    /** What an executed command changes, written in the same unit as its settlement (one commit, not two). */
    onExecuted?: (trx: Db, executed: Extract<Sent, { kind: 'executed' }>) => Promise<void>,
    /** The car's pinned certificate, read with the vehicle before the command (saves reading it again). */
    pinnedPem?: string | null,
  ): Promise<Sent> {
    const ids = { deliveryId: d.id, commandId: command.commandId, action: command.action, vin: d.vin };
    const settled = (outcome: CommandOutcome, reason: string | null, roundTripMs: number | null): void =>
      deps.observer?.commandSettled({ action: command.action, outcome, reason, roundTripMs });
    logger.info(
      { event: 'command.sent', ...ids, tokenSha256: tokenHash(command.token) },
      `${command.action} sent`,
    );
    const link = deps.link();
    if (!link?.connected()) {
      logger.warn(
        { event: 'command.not_sent', ...ids, reason: 'BROKER_UNAVAILABLE' },
        'broker not connected',
      );
      settled('not_sent', 'BROKER_UNAVAILABLE', null);
      await write((trx) =>
        settleCommand(trx, command.commandId, {
          status: 'timeout',
          reason: 'BROKER_UNAVAILABLE',
          ackedAt: null,
        }),
      );
      return { kind: 'broker_unavailable' };
    }
    const started = now();
    let result: Awaited<ReturnType<VehicleLink['send']>>;
    try {
      result = await link.send(d.vin, command, policy.commandTimeoutMs);
    } catch (err) {
      // The client refused or lost the PUBLISH; it may still have reached the broker, so nothing is ruled out.
      logger.warn({ event: 'command.publish_failed', ...ids, err }, 'publish failed');
      result = { kind: 'timeout' };
    }
    // What the ack settles is recorded before the car's next message is handled (the link holds it until
    // recorded() or a short bound): its state report, right behind the ack, then reads what the ack wrote and
    // repeats it instead of writing it again.
    const recorded = result.kind === 'ack' ? result.recorded : undefined;
    const settle = async (): Promise<Sent> => {
      const t = now();
      if (result.kind === 'timeout') {
        logger.warn({ event: 'command.timeout', ...ids, waitedMs: t - started }, 'no ack in time');
        settled('timeout', null, null);
        return afterTimeout(d, command, t - started);
      }
      const expected = { vin: d.vin, commandId: command.commandId, action: command.action, deliveryId: d.id };
      const check = await checkSignedAck(db, expected, result.ack, t, deps.currentCertificate, pinnedPem);
      if (!check.ok) {
        logger.warn({ event: 'ack.rejected', ...ids, code: check.code }, 'ack refused');
        settled('timeout', check.code, null);
        await write(async (trx) => {
          await settleCommand(trx, command.commandId, {
            status: 'timeout',
            reason: check.code,
            ackedAt: null,
          });
          await appendEvent(trx, d.id, {
            at: t,
            kind: 'ack_rejected',
            outcome: 'denied',
            code: check.code,
            detail: { commandId: command.commandId, action: command.action },
          });
        });
        return { kind: 'ack_invalid', code: check.code };
      }
      const { ack } = result;
      logger.info(
        {
          event: 'ack.received',
          ...ids,
          outcome: ack.outcome,
          reason: ack.reason,
          locked: ack.locked,
          roundTripMs: t - started,
        },
        `${command.action} ${ack.outcome}`,
      );
      settled(ack.outcome === 'executed' ? 'executed' : 'refused', ack.reason ?? null, t - started);
      if (ack.outcome === 'refused') {
        await write(async (trx) => {
          await settleCommand(trx, command.commandId, {
            status: 'refused',
            reason: ack.reason ?? null,
            ackedAt: t,
          });
          await insertVehicleAck(trx, check.evidence);
          await recordAckedState(trx, d.vin, ack.locked, t);
          await appendEvent(trx, d.id, {
            at: t,
            kind: 'vehicle_refused',
            outcome: 'denied',
            code: ack.reason ?? 'UNSPECIFIED',
            detail: { commandId: command.commandId, action: command.action, locked: ack.locked },
          });
        });
        return { kind: 'refused', ack };
      }
      const executed = { kind: 'executed' as const, ack, roundTripMs: t - started };
      await write(async (trx) => {
        await settleCommand(trx, command.commandId, { status: 'executed', reason: null, ackedAt: t });
        await insertVehicleAck(trx, check.evidence);
        // The signed ack says how the car is locked now: recorded here, the report that follows changes nothing.
        await recordAckedState(trx, d.vin, ack.locked, t);
        await onExecuted?.(trx, executed);
      });
      return executed;
    };
    try {
      return await settle();
    } finally {
      recorded?.();
    }
  }

  /**
   * No ack in time (PROTOCOL.md §6.2). A PUBACK from the broker is not delivery to the car, so once published the
   * command may have run; before answering, the gateway asks the car for its state, which settles the command when
   * the car answers: executed (the ack was lost) or not executed (nothing happened, and it will not run later).
   * Only without an answer does the request end with mayHaveSucceeded: true.
   */
  async function afterTimeout(d: DeliveryRecord, command: Command, waitedMs: number): Promise<Sent> {
    await write(async (trx) => {
      // Conditional: a late ack may have settled the command since the wait ended (reconcile.ts).
      const moved = await trx
        .updateTable('commands')
        .set({ status: 'timeout', reason: 'NO_ACK' })
        .where('id', '=', command.commandId)
        .where('status', '=', 'sent')
        .executeTakeFirst();
      if (Number(moved.numUpdatedRows) !== 1) return;
      await appendEvent(trx, d.id, {
        at: now(),
        kind: 'command_timeout',
        outcome: 'denied',
        code: 'VEHICLE_UNREACHABLE',
        detail: { commandId: command.commandId, action: command.action, waitedMs },
      });
    });
    if (!deps.reconciler) return { kind: 'timeout' };
    const { status, locked } = await deps.reconciler.afterTimeout(d.vin, command.commandId, d.id);
    if (status === 'executed' || status === 'refused' || status === 'not_executed') {
      return { kind: 'reconciled', status, locked };
    }
    return { kind: 'timeout' };
  }

  function commandError(sent: Exclude<Sent, { kind: 'executed' }>): ApiError {
    if (sent.kind === 'broker_unavailable')
      return new ApiError('BROKER_UNAVAILABLE', { mayHaveSucceeded: false });
    if (sent.kind === 'ack_invalid') {
      return new ApiError('VEHICLE_ACK_INVALID', {
        mayHaveSucceeded: true,
        detail: `the ack did not verify (${sent.code}); the car may have acted (the token expires on its own)`,
      });
    }
    if (sent.kind === 'timeout') {
      return new ApiError('VEHICLE_UNREACHABLE', {
        mayHaveSucceeded: true,
        detail: `no ack within ${policy.commandTimeoutMs} ms and no answer to a state query; the car may have acted (the token expires on its own)`,
      });
    }
    if (sent.kind === 'reconciled') {
      if (sent.status === 'refused') {
        return new ApiError('VEHICLE_REFUSED', {
          mayHaveSucceeded: false,
          detail: 'the vehicle refused (its ack came late)',
        });
      }
      if (sent.status === 'not_executed') {
        return new ApiError('VEHICLE_UNREACHABLE', {
          mayHaveSucceeded: false,
          detail:
            'no ack in time; the car answered a state query without having acted, so it will not act on this command',
        });
      }
      return new ApiError('VEHICLE_REFUSED', {
        detail: 'the car acted (its ack was lost) but reports itself unlocked',
      });
    }
    return new ApiError('VEHICLE_REFUSED', {
      mayHaveSucceeded: false,
      detail: `the vehicle refused: ${sent.ack.reason ?? 'unspecified'}`,
      extra: { vehicleReason: sent.ack.reason ?? null },
    });
  }

  return { prepareCommand, send, commandError };
}

export type Commands = ReturnType<typeof createCommands>;
