// Owns where what a car says goes: a state report to the vehicle's record, then to its deliveries, then to the
// reconciler; an ack nobody waits for to the reconciler.
import type { Logger } from 'pino';
import type { Ack, StateMessage } from '../../protocols/index.ts';
import type { VehicleService } from '../vehicles/vehicles.ts';
import type { Reconciler } from './reconcile.ts';
import type { DeliveryService } from './service.ts';

export function routeCarMessages(deps: {
  vehicles: Pick<VehicleService, 'observe'>;
  deliveries: Pick<DeliveryService, 'observe'>;
  reconciler: Pick<Reconciler, 'onState' | 'onAck'>;
  logger: Logger;
  /** After a report is recorded (the console's live view). */
  onRecorded?: (vin: string) => void;
}) {
  const { vehicles, deliveries, reconciler, logger } = deps;
  return {
    onState: async (vin: string, message: StateMessage): Promise<void> => {
      try {
        await vehicles.observe(vin, message);
        await deliveries.observe(vin, message);
      } catch (err) {
        logger.error({ err, vin }, 'state not recorded');
      }
      deps.onRecorded?.(vin);
      // After the records: a report that still disagrees with them starts a reconciliation (PROTOCOL.md §6.3).
      reconciler.onState(vin, message);
    },
    onUnmatchedAck: (vin: string, ack: Ack): void => {
      // Late (after its timeout), or meant for another replica: the reconciler verifies and applies it.
      logger.debug(
        { event: 'ack.unmatched', vin, deliveryId: ack.deliveryId, commandId: ack.commandId },
        'ack nobody waits for',
      );
      reconciler.onAck(vin, ack).catch((err: unknown) => logger.error({ err, vin }, 'late ack not applied'));
    },
  };
}
