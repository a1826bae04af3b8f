// Owns one worker thread of a fleet (simulator/fleet-workers.ts starts it): runs its share of the cars with
// startFleet and answers the main thread's requests about them. The composition root of its thread.
import { parentPort, workerData } from 'node:worker_threads';
import { createFleetFaults } from './faults.ts';
import { type Fleet, startFleet } from './fleet.ts';
import { localFleetControl } from './fleet-control.ts';
import { readFleetPki } from './fleet-pki.ts';
import {
  type FromWorker,
  fleetDeps,
  type ToWorker,
  toWorkerError,
  type WorkerRequest,
  type WorkerStart,
} from './fleet-workers.ts';
import { type Logger, silentLogger } from './transport.ts';

if (!parentPort)
  throw new Error('simulator/fleet-worker.ts runs as a worker thread (simulator/fleet-workers.ts)');
const port = parentPort;
const start = workerData as WorkerStart;
const send = (message: FromWorker): void => port.postMessage(message);

/** Log fields cross the thread as data; anything that cannot (an Error, a function) goes as its string. */
const plain = (fields: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(fields).map(([k, v]) => [
      k,
      v === null || ['string', 'number', 'boolean', 'undefined'].includes(typeof v) ? v : String(v),
    ]),
  );
const forwarding: Logger = {
  info: (fields, msg) => send({ kind: 'log', level: 'info', fields: plain(fields), msg }),
  warn: (fields, msg) => send({ kind: 'log', level: 'warn', fields: plain(fields), msg }),
  error: (fields, msg) => send({ kind: 'log', level: 'error', fields: plain(fields), msg }),
};

const { settings } = start;
const logger = settings.forwardLogs ? forwarding : silentLogger;
const faults = settings.faults ? createFleetFaults(settings.faults) : null;

/** The share of cars, connected; null when one failed (the others are closed again, as startFleet does). */
async function boot(): Promise<Fleet | null> {
  try {
    return await startFleet({
      ...fleetDeps(settings, start.connectConcurrency),
      vehicles: start.vehicles,
      ...readFleetPki(settings.certsDir),
      // The main thread has chosen the cars already (simulator/fleet.ts selectVehicles).
      includeIncompatible: true,
      logger,
      ...(faults ? { faults } : {}),
      onConnected: () => send({ kind: 'progress' }),
    });
  } catch (err) {
    send({ kind: 'start-failed', error: toWorkerError(err) });
    return null;
  }
}

/** Answers the main thread's requests about this worker's cars. */
function serve(fleet: Fleet): void {
  const control = localFleetControl(fleet, faults);

  const answer = async (request: WorkerRequest): Promise<unknown> => {
    switch (request.kind) {
      case 'view':
        return control.view(request.vin);
      case 'views':
        return control.views();
      case 'apply':
        return control.apply(request.vin, request.op);
      case 'faults':
        return control.faultReport();
      case 'connected':
        return [...fleet.cars.values()].filter((c) => c.connection.connected).length;
      case 'stop':
        await fleet.stop();
        // Nothing else keeps this thread alive once the port closes: it ends, and the main thread sees it end.
        setImmediate(() => port.close());
        return null;
    }
  };

  port.on('message', (message: ToWorker) => {
    answer(message.request).then(
      (value) => send({ kind: 'reply', id: message.id, ok: true, value }),
      (err: unknown) => send({ kind: 'reply', id: message.id, ok: false, error: toWorkerError(err) }),
    );
  });
  send({ kind: 'started' });
}

const fleet = await boot();
if (fleet) serve(fleet);
// Without cars this thread has nothing to do: closing the port lets it end.
else port.close();
