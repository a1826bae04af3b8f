// Owns the simulator's live control interface: a small JSON API over HTTP on the loopback address only.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SimulatorError } from './errors.ts';
import type { FleetFaults } from './faults.ts';
import type { Fleet } from './fleet.ts';
import { asFleetControl, type FleetControl } from './fleet-control.ts';
import { OperationSchema } from './operations.ts';

export { carView } from './fleet-control.ts';

/** The API has no authentication, so it listens on loopback only: whoever can reach it already runs as us. */
export const CONTROL_HOST = '127.0.0.1';
const MAX_BODY_BYTES = 16 * 1024;

export interface ControlServerDeps {
  /**
   * The cars; may come later through attach(), so that the API listens (and its URL can be given to whoever
   * drives it, such as the gateway's console) before the cars exist. Until then every route answers 503.
   * A fleet across worker threads (startFleetRun) is given as its FleetControl, which routes each car's
   * request to the worker that holds the car.
   */
  fleet?: Fleet | FleetControl;
  faults: FleetFaults | null;
  /** 0 picks a free port. */
  port: number;
}

export interface ControlServer {
  port: number;
  /** Serves this fleet from now on. */
  attach(fleet: Fleet | FleetControl): void;
  close(): Promise<void>;
}

/** HTTP status of each refusal; any other simulator error is a 409 (the operation cannot apply now). */
const STATUS: Partial<Record<SimulatorError['code'], number>> = {
  SIM_CONTROL_INVALID: 400,
  SIM_CONTROL_NOT_FOUND: 404,
  SIM_UNKNOWN_VIN: 404,
  SIM_CONTROL_TOO_LARGE: 413,
  SIM_CONTROL_NOT_READY: 503,
  SIM_WORKER_CRASHED: 503,
};

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new SimulatorError('SIM_CONTROL_TOO_LARGE', `body above ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new SimulatorError('SIM_CONTROL_INVALID', 'body is not JSON');
  }
}

function parseOperation(body: unknown) {
  const parsed = OperationSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join('.') || 'body';
    throw new SimulatorError('SIM_CONTROL_INVALID', `${where}: ${issue?.message}`);
  }
  return parsed.data;
}

/**
 * Routes:
 *   GET  /cars              every simulated car: state, link, battery, clock, fault plan
 *   GET  /cars/{vin}        one car
 *   POST /cars/{vin}/ops    apply one operation (simulator/operations.ts) to one car
 *   POST /fleet/ops         apply one operation to every car
 *   GET  /faults            the seed, fault counts, and each car's fault trace
 */
export async function startControlServer(deps: ControlServerDeps): Promise<ControlServer> {
  let current: FleetControl | null = deps.fleet ? asFleetControl(deps.fleet, deps.faults) : null;
  const route = async (req: IncomingMessage): Promise<{ status: number; body: unknown }> => {
    const fleet = current;
    if (!fleet) throw new SimulatorError('SIM_CONTROL_NOT_READY', 'the simulated cars are not up yet');
    const path = new URL(req.url ?? '/', 'http://control').pathname.split('/').filter(Boolean);
    const method = req.method ?? 'GET';
    const [first, vin, tail] = path;
    if (method === 'GET' && first === 'cars' && path.length === 1) {
      return { status: 200, body: { cars: await fleet.views() } };
    }
    if (method === 'GET' && first === 'cars' && vin !== undefined && path.length === 2) {
      return { status: 200, body: await fleet.view(vin) };
    }
    if (method === 'POST' && first === 'cars' && vin !== undefined && tail === 'ops' && path.length === 3) {
      // 404 before reading the body
      if (!fleet.has(vin)) throw new SimulatorError('SIM_UNKNOWN_VIN', `the fleet does not simulate ${vin}`);
      const applied = await fleet.apply(vin, parseOperation(await readBody(req)));
      return { status: 200, body: { applied, car: await fleet.view(vin) } };
    }
    if (method === 'POST' && first === 'fleet' && vin === 'ops' && path.length === 2) {
      return {
        status: 200,
        body: { applied: await fleet.apply(undefined, parseOperation(await readBody(req))) },
      };
    }
    if (method === 'GET' && first === 'faults' && path.length === 1) {
      return { status: 200, body: await fleet.faultReport() };
    }
    throw new SimulatorError('SIM_CONTROL_NOT_FOUND', `no route ${method} ${req.url}`);
  };

  const reply = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body)}\n`);
  };

  const server = createServer((req, res) => {
    route(req).then(
      ({ status, body }) => reply(res, status, body),
      (err: unknown) => {
        if (err instanceof SimulatorError) {
          return reply(res, STATUS[err.code] ?? 409, { code: err.code, message: err.message });
        }
        reply(res, 500, { code: 'SIM_CONTROL_INTERNAL', message: String(err) });
      },
    );
  });
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(deps.port, CONTROL_HOST, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    attach(fleet) {
      current = asFleetControl(fleet, deps.faults);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
