// Owns the page's calls to the gateway: the bearer key in the Authorization header (never in a URL), and a
// refusal turned into its stable code.
import type {
  ConsoleDelivery,
  ConsoleLocation,
  ConsoleMe,
  ConsoleVehicle,
  ConsoleWebhookDelivery,
  SimulatedCarView,
  SimulatorAction,
} from '../schemas.ts';

/** A problem document (RFC 9457) the gateway answered with: `code` is what the page shows. */
export class ApiRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
  ) {
    super(detail);
    this.name = 'ApiRefusal';
  }
}

export interface Api {
  me(): Promise<ConsoleMe>;
  vehicles(): Promise<{ vehicles: ConsoleVehicle[]; locations: ConsoleLocation[] }>;
  deliveries(): Promise<{ deliveries: ConsoleDelivery[] }>;
  webhookDeliveries(): Promise<{ webhookDeliveries: ConsoleWebhookDelivery[] }>;
  simulated(vin: string): Promise<SimulatedCarView>;
  drive(vin: string, action: SimulatorAction): Promise<{ car: SimulatedCarView }>;
}

export function createApi(key: string): Api {
  async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const res = await fetch(path, {
      method,
      cache: 'no-store',
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await res.json().catch(() => null)) as Record<string, unknown> | null;
    if (!res.ok) {
      const code = typeof json?.code === 'string' ? json.code : `HTTP_${res.status}`;
      const detail = typeof json?.detail === 'string' ? json.detail : res.statusText;
      throw new ApiRefusal(res.status, code, detail);
    }
    return json as T;
  }
  const vin = (v: string): string => encodeURIComponent(v);
  return {
    me: () => call('GET', '/v1/console/me'),
    vehicles: () => call('GET', '/v1/console/vehicles'),
    deliveries: () => call('GET', '/v1/console/deliveries?limit=100'),
    webhookDeliveries: () => call('GET', '/v1/console/webhook-deliveries?limit=200'),
    simulated: (v) => call('GET', `/v1/console/vehicles/${vin(v)}/simulator`),
    drive: (v, action) => call('POST', `/v1/console/vehicles/${vin(v)}/simulator`, action),
  };
}
