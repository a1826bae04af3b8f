// Owns revoking a delivery (TOKEN.md §10): cancelled here first, then a signed revoke the car confirms.
import { ApiError } from '../errors.ts';
import { updateDelivery } from '../store/deliveries.ts';
import { appendEvent } from '../store/timeline.ts';
import type { Commands } from './commands.ts';
import type { DeliveryContext } from './context.ts';

/**
 * The outcome of revoking a delivery. The delivery is cancelled at the gateway either way (no token is minted for
 * it again); `vehicle` says whether the car confirmed, with a signed ack, that it refuses the delivery's tokens.
 */
export type RevokeResult =
  | { status: 'cancelled'; vehicle: 'revoked'; locked: boolean }
  | { status: 'cancelled'; vehicle: 'refused'; reason: string | null }
  /** No verified ack in time: the revoke stays queued for the car, and its tokens expire on their own. */
  | { status: 'cancelled'; vehicle: 'unconfirmed' };

export function createRevoking(ctx: DeliveryContext, commands: Commands) {
  const { write, now, load } = ctx;
  const { prepareCommand, send } = commands;

  /**
   * Revokes a delivery that is scheduled or in progress (TOKEN.md §10): cancels it here first, so no replica mints
   * a token for it again, then sends the car a signed revoke, so the car refuses the tokens already out and locks
   * if it is open. Revoking a cancelled delivery again re-sends the revoke. Not held off by a command in flight:
   * the car handles commands in order, so a revoke behind an unlock locks again what the unlock opened.
   */
  async function revokeDelivery(id: string): Promise<RevokeResult> {
    const d = await load(id);
    // An expired delivery was never opened, and its unlock tokens ended with its window.
    if (d.status === 'completed' || d.status === 'expired') {
      throw new ApiError('DELIVERY_NOT_ACTIVE', {
        detail: `a ${d.status} delivery has nothing left to revoke`,
      });
    }
    const t = now();
    // Like a lock, a revoke is not capped by the window: it must reach the car after the window too.
    const prepared = await prepareCommand(d, 'revoke', Number.MAX_SAFE_INTEGER);
    const command = await write(async (trx) => {
      if (d.status !== 'cancelled') {
        await updateDelivery(trx, d.id, { status: 'cancelled', updatedAt: t });
        await appendEvent(trx, d.id, {
          at: t,
          kind: 'delivery_revoked',
          outcome: 'info',
          code: null,
          detail: { previousStatus: d.status },
        });
      }
      await prepared.record(trx);
      return prepared.command;
    });
    const sent = await send(d, command);
    if (sent.kind === 'reconciled') {
      // The reconciler recorded what the car said of it; a lost ack of an executed revoke still confirms it.
      if (sent.status === 'executed') {
        return { status: 'cancelled', vehicle: 'revoked', locked: sent.locked ?? true };
      }
      if (sent.status === 'refused') return { status: 'cancelled', vehicle: 'refused', reason: null };
    }
    if (sent.kind !== 'executed' && sent.kind !== 'refused')
      return { status: 'cancelled', vehicle: 'unconfirmed' };
    const { ack } = sent;
    // TOKEN_REVOKED: the car already holds this delivery as revoked (an earlier revoke reached it).
    const confirmed = ack.outcome === 'executed' || ack.reason === 'TOKEN_REVOKED';
    if (confirmed) {
      const at = now();
      await write((trx) =>
        appendEvent(trx, d.id, {
          at,
          kind: 'vehicle_revoked',
          outcome: 'granted',
          code: null,
          detail: { commandId: command.commandId, action: 'revoke', locked: ack.locked, carTime: ack.at },
        }),
      );
    }
    return confirmed
      ? { status: 'cancelled', vehicle: 'revoked', locked: ack.locked }
      : { status: 'cancelled', vehicle: 'refused', reason: ack.reason ?? null };
  }

  return { revokeDelivery };
}
