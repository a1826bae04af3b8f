// Owns driving the simulated cars from the console: HTTP calls to the simulator's control API at the URL the
// configuration gives (SIMULATOR_CONTROL_URL), never an import of simulator/; its answers are parsed at this edge.
import type { z } from 'zod';
import type { Doors, Position } from '../../protocols/messages.ts';
import { ApiError } from '../errors.ts';
import { type DoorsSchema, type PositionSchema, SimulatedCarView, type SimulatorAction } from './schemas.ts';

// The console's copies of the wire's position and doors (schemas.ts) are the protocol's: this fails to compile
// when either side changes alone.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const samePosition: Same<z.infer<typeof PositionSchema>, Position> = true;
const sameDoors: Same<z.infer<typeof DoorsSchema>, Doors> = true;
void [samePosition, sameDoors];

export interface SimulatorControl {
  /** The simulator's view of one car. */
  car(vin: string): Promise<SimulatedCarView>;
  /** Applies one action to one car; resolves with the car as the simulator sees it afterwards. */
  apply(vin: string, action: SimulatorAction): Promise<SimulatedCarView>;
}

export interface SimulatorControlDeps {
  /** The control API's base URL, e.g. http://127.0.0.1:8890 (loopback: it has no authentication). */
  url: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** Stands in when no simulator is configured: every action is refused with the same stable code. */
export const noSimulator: SimulatorControl = {
  car: async () => {
    throw new ApiError('SIMULATOR_NOT_CONFIGURED');
  },
  apply: async () => {
    throw new ApiError('SIMULATOR_NOT_CONFIGURED');
  },
};

export function createSimulatorControl(deps: SimulatorControlDeps): SimulatorControl {
  const base = deps.url.endsWith('/') ? deps.url : `${deps.url}/`;
  const timeoutMs = deps.timeoutMs ?? 5_000;
  const send = deps.fetch ?? fetch;

  async function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    // Whether a POST that got no answer took effect is unknown; one that never connected did not.
    let res: Response;
    try {
      res = await send(new URL(path, base), {
        method,
        redirect: 'error',
        signal: AbortSignal.timeout(timeoutMs),
        ...(body === undefined
          ? {}
          : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
      });
    } catch (err) {
      const timedOut = (err as Error).name === 'TimeoutError';
      throw new ApiError('SIMULATOR_UNREACHABLE', {
        detail: timedOut
          ? `the simulator did not answer within ${timeoutMs} ms`
          : 'the simulator is not reachable',
        mayHaveSucceeded: method === 'POST' && timedOut,
      });
    }
    let json: unknown;
    try {
      json = await res.json();
    } catch {
      throw new ApiError('SIMULATOR_UNREACHABLE', {
        detail: `the simulator answered ${res.status} without JSON`,
        mayHaveSucceeded: method === 'POST',
      });
    }
    if (!res.ok) {
      const refusal = json as { code?: unknown; message?: unknown };
      throw new ApiError('SIMULATOR_REFUSED', {
        detail: typeof refusal.message === 'string' ? refusal.message.slice(0, 300) : `HTTP ${res.status}`,
        extra: { simulatorCode: typeof refusal.code === 'string' ? refusal.code : `HTTP_${res.status}` },
      });
    }
    return json;
  }

  const parseCar = (value: unknown): SimulatedCarView => {
    const parsed = SimulatedCarView.safeParse(value);
    if (!parsed.success)
      throw new ApiError('SIMULATOR_UNREACHABLE', { detail: 'the simulator answered with an unknown shape' });
    return parsed.data;
  };

  return {
    car: async (vin) => parseCar(await call('GET', `cars/${encodeURIComponent(vin)}`)),
    apply: async (vin, action) => {
      const answer = (await call('POST', `cars/${encodeURIComponent(vin)}/ops`, action)) as { car?: unknown };
      return parseCar(answer.car);
    },
  };
}
