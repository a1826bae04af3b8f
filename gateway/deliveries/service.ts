// Owns assembling the delivery service from its parts: scheduling, unlocking, commands, relocking, reports,
// revocation and expiry, all over one shared context.
import { createCommands } from './commands.ts';
import { createDeliveryContext, type DeliveryServiceDeps } from './context.ts';
import { createExpiry } from './expiry.ts';
import { createRelocking } from './relock.ts';
import { createReportHandling } from './reports.ts';
import { createRevoking } from './revoke.ts';
import { createScheduling } from './scheduling.ts';
import { createUnlocking } from './unlock.ts';

export function createDeliveryService(deps: DeliveryServiceDeps) {
  const ctx = createDeliveryContext(deps);
  const commands = createCommands(ctx);
  const relocking = createRelocking(ctx, commands);
  const scheduling = createScheduling(ctx);
  const { unlock } = createUnlocking(ctx, commands, relocking);
  const { observe } = createReportHandling(ctx);
  const { revokeDelivery } = createRevoking(ctx, commands);
  const { expire } = createExpiry(ctx);
  return {
    schedule: scheduling.schedule,
    confirmParking: scheduling.confirmParking,
    unlock,
    lock: relocking.lock,
    requestAction: scheduling.requestAction,
    relock: relocking.relock,
    observe,
    revokeDelivery,
    expire,
    view: scheduling.view,
    emit: ctx.emit,
    load: ctx.load,
  };
}

export type DeliveryService = ReturnType<typeof createDeliveryService>;
