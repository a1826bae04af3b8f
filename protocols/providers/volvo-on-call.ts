// Owns the Volvo On Call dialect: flat snake_case objects marked "voc_api": 2, three-letter service codes and ISO times (PROVIDERS.md §4.2).
import { z } from 'zod';
import {
  AckSchema,
  type Command,
  CommandSchema,
  NonceSchema,
  PositionSchema,
  PROTOCOL_VERSION,
  type StateMessage,
  type ToCar,
  Vin,
} from '../messages.ts';
import {
  compact,
  defineAdapter,
  ExtensionsSchema,
  extensionsOf,
  MAPPED_MEMBERS,
  withExtensions,
} from './adapter.ts';
import { doorAction, ProviderError, type RecoveredIds } from './errors.ts';

const VERSION = 2;
const Id = CommandSchema.shape.commandId;
const Api = z.literal(VERSION);
const Ext = ExtensionsSchema.optional();
/** Any Volvo On Call service code (RES remote engine start, HBL honk and blink…); only RDU and RDL translate. */
const ServiceCode = z.string().regex(/^[A-Z][A-Z0-9]{1,7}$/);

/** Remote Door Unlock and Remote Door Lock; every other service is refused (ACTION_NOT_ALLOWED). */
const SERVICE_FOR = { unlock: 'RDU', lock: 'RDL' } as const;
const ACTION_FOR: Readonly<Record<string, Command['action']>> = { RDU: 'unlock', RDL: 'lock' };
/** Vehicle Status Request: the canonical state_query. */
const STATUS_SERVICE = 'VSR';

/** Car time as Volvo On Call carries it: ISO 8601 UTC with milliseconds, so whole ms round-trip exactly. */
const IsoMs = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
  .refine((s) => {
    const t = Date.parse(s);
    return Number.isFinite(t) && t >= 0 && new Date(t).toISOString() === s;
  }, 'not a real instant at or after 1970');
const LATEST_ISO_MS = Date.parse('9999-12-31T23:59:59.999Z');

function isoOf(at: number | null): string | null {
  if (at === null) return null;
  if (at > LATEST_ISO_MS)
    throw new ProviderError('MESSAGE_INVALID', `time ${at} has no four-digit-year ISO form`);
  return new Date(at).toISOString();
}
const msOf = (iso: string | null): number | null => (iso === null ? null : Date.parse(iso));

const ToCarWire = z.strictObject({
  voc_api: Api,
  service: ServiceCode,
  service_id: Id,
  assignment: Id.optional(),
  access_token: CommandSchema.shape.token.optional(),
  extensions: Ext,
});
type ToCarWire = z.infer<typeof ToCarWire>;

const AckWire = z.strictObject({
  voc_api: Api,
  message: z.literal('service_status'),
  vehicle_id: Vin,
  service: z.string().max(32),
  service_id: Id,
  assignment: Id.optional(),
  status: z.enum(['Successful', 'Failed']),
  failure_reason: AckSchema.shape.reason,
  car_locked: z.boolean(),
  status_timestamp: IsoMs.nullable(),
  extensions: Ext,
});
type AckWire = z.infer<typeof AckWire>;

const Open = z.boolean();
const StatusWire = z.strictObject({
  voc_api: Api,
  message: z.literal('vehicle_status'),
  vehicle_id: Vin,
  report_no: z.number().int().nonnegative(),
  service_id: NonceSchema.optional(),
  car_locked: z.boolean(),
  door_open: z.strictObject({ front_left: Open, front_right: Open, rear_left: Open, rear_right: Open }),
  tailgate_open: Open,
  engine_running: z.boolean(),
  position: z.strictObject({ lat: PositionSchema.shape.lat, long: PositionSchema.shape.lon }),
  timestamp: IsoMs.nullable(),
  extensions: Ext,
});
const ConnectionWire = z.strictObject({
  voc_api: Api,
  message: z.literal('connection_status'),
  vehicle_id: Vin,
  connected: z.literal(false),
  extensions: Ext,
});
const StateWire = z.discriminatedUnion('message', [StatusWire, ConnectionWire]);
type StateWire = z.infer<typeof StateWire>;

const {
  command: COMMAND_MEMBERS,
  query: QUERY_MEMBERS,
  ack: ACK_MEMBERS,
  report: REPORT_MEMBERS,
  presence: PRESENCE_MEMBERS,
} = MAPPED_MEMBERS;

function ackService(action: string): string {
  if (action === 'unlock' || action === 'lock') return SERVICE_FOR[action];
  if (ACTION_FOR[action] !== undefined) {
    throw new ProviderError(
      'MESSAGE_INVALID',
      `canonical action "${action}" is a Volvo On Call service code`,
    );
  }
  return action;
}

const open = (isOpen: boolean): 'open' | 'closed' => (isOpen ? 'open' : 'closed');

function recoverIds(json: Record<string, unknown>): RecoveredIds | null {
  if (json.voc_api !== VERSION) return null;
  const commandId = Id.safeParse(json.service_id);
  if (!commandId.success) return null;
  const service = ServiceCode.safeParse(json.service);
  const assignment = Id.safeParse(json.assignment);
  return {
    commandId: commandId.data,
    ...(assignment.success ? { deliveryId: assignment.data } : {}),
    action: service.success ? (ACTION_FOR[service.data] ?? service.data) : 'unknown',
  };
}

export const volvoOnCall = defineAdapter({
  id: 'volvo-on-call',
  name: 'Volvo On Call',
  recognises: (json) => json.voc_api === VERSION,
  recoverIds,
  toCar: {
    wire: ToCarWire,
    toWire(m: ToCar): ToCarWire {
      if (m.type === 'state_query') {
        return compact({
          voc_api: VERSION,
          service: STATUS_SERVICE,
          service_id: m.nonce,
          extensions: extensionsOf(m, QUERY_MEMBERS),
        });
      }
      return compact({
        voc_api: VERSION,
        service: SERVICE_FOR[doorAction(m.action)],
        service_id: m.commandId,
        assignment: m.deliveryId,
        access_token: m.token,
        extensions: extensionsOf(m, COMMAND_MEMBERS),
      });
    },
    fromWire(w) {
      if (w.service === STATUS_SERVICE) {
        if (w.assignment !== undefined || w.access_token !== undefined) {
          throw new ProviderError('MESSAGE_INVALID', 'a VSR request carries no assignment or token');
        }
        return withExtensions(
          { v: PROTOCOL_VERSION, type: 'state_query', nonce: w.service_id },
          w.extensions,
          QUERY_MEMBERS,
        );
      }
      const action = ACTION_FOR[w.service];
      if (action === undefined) {
        throw new ProviderError('ACTION_NOT_ALLOWED', `service ${w.service} is outside unlock and lock`, {
          commandId: w.service_id,
          ...(w.assignment === undefined ? {} : { deliveryId: w.assignment }),
          action: w.service,
        });
      }
      return withExtensions(
        {
          v: PROTOCOL_VERSION,
          type: 'command',
          commandId: w.service_id,
          deliveryId: w.assignment,
          action,
          token: w.access_token,
        },
        w.extensions,
        COMMAND_MEMBERS,
      );
    },
  },
  ack: {
    wire: AckWire,
    toWire: (a): AckWire =>
      compact({
        voc_api: VERSION,
        message: 'service_status' as const,
        vehicle_id: a.vin,
        service: ackService(a.action),
        service_id: a.commandId,
        assignment: a.deliveryId,
        status: a.outcome === 'executed' ? ('Successful' as const) : ('Failed' as const),
        failure_reason: a.reason,
        car_locked: a.locked,
        status_timestamp: isoOf(a.at),
        extensions: extensionsOf(a, ACK_MEMBERS),
      }),
    fromWire: (w) =>
      withExtensions(
        compact({
          v: PROTOCOL_VERSION,
          type: 'ack',
          vin: w.vehicle_id,
          commandId: w.service_id,
          deliveryId: w.assignment,
          action: ACTION_FOR[w.service] ?? w.service,
          outcome: w.status === 'Successful' ? 'executed' : 'refused',
          reason: w.failure_reason,
          locked: w.car_locked,
          at: msOf(w.status_timestamp),
        }),
        w.extensions,
        ACK_MEMBERS,
      ),
  },
  state: {
    wire: StateWire,
    toWire(m: StateMessage): StateWire {
      if (m.type === 'presence') {
        return compact({
          voc_api: VERSION,
          message: 'connection_status' as const,
          vehicle_id: m.vin,
          connected: false as const,
          extensions: extensionsOf(m, PRESENCE_MEMBERS),
        });
      }
      return compact({
        voc_api: VERSION,
        message: 'vehicle_status' as const,
        vehicle_id: m.vin,
        report_no: m.seq,
        service_id: m.nonce,
        car_locked: m.locked,
        door_open: {
          front_left: m.doors.driver === 'open',
          front_right: m.doors.passenger === 'open',
          rear_left: m.doors.rearLeft === 'open',
          rear_right: m.doors.rearRight === 'open',
        },
        tailgate_open: m.trunk === 'open',
        engine_running: m.ignition === 'on',
        position: { lat: m.position.lat, long: m.position.lon },
        timestamp: isoOf(m.at),
        extensions: extensionsOf(m, REPORT_MEMBERS),
      });
    },
    fromWire(w) {
      if (w.message === 'connection_status') {
        return withExtensions(
          { v: PROTOCOL_VERSION, type: 'presence', vin: w.vehicle_id, online: false },
          w.extensions,
          PRESENCE_MEMBERS,
        );
      }
      return withExtensions(
        compact({
          v: PROTOCOL_VERSION,
          type: 'state',
          vin: w.vehicle_id,
          seq: w.report_no,
          online: true,
          locked: w.car_locked,
          doors: {
            driver: open(w.door_open.front_left),
            passenger: open(w.door_open.front_right),
            rearLeft: open(w.door_open.rear_left),
            rearRight: open(w.door_open.rear_right),
          },
          trunk: open(w.tailgate_open),
          ignition: w.engine_running ? 'on' : 'off',
          position: { lat: w.position.lat, lon: w.position.long },
          at: msOf(w.timestamp),
          nonce: w.service_id,
        }),
        w.extensions,
        REPORT_MEMBERS,
      );
    },
  },
});
