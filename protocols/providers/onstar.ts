// Owns the OnStar dialect (GM vehicles): an envelope {"onstar":"1.0", <body>} with camelCase members (PROVIDERS.md §4.1).
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

const VERSION = '1.0';
const Id = CommandSchema.shape.commandId;
const Version = z.literal(VERSION);
const Ext = ExtensionsSchema.optional();
/** Any OnStar request name; only the two door requests translate into canonical actions. */
const RequestType = z.string().regex(/^[A-Za-z][A-Za-z0-9]{0,31}$/);

/** OnStar request names for the canonical actions; every other request is refused (ACTION_NOT_ALLOWED). */
const REQUEST_FOR = { unlock: 'unlockDoor', lock: 'lockDoor' } as const;
const ACTION_FOR: Readonly<Record<string, Command['action']>> = { unlockDoor: 'unlock', lockDoor: 'lock' };
/** The OnStar request that asks the car for its status: the canonical state_query. */
const STATUS_REQUEST = 'vehicleStatus';

const CommandRequest = z.strictObject({
  requestId: Id,
  type: RequestType,
  orderId: Id.optional(),
  authorization: CommandSchema.shape.token.optional(),
  ext: Ext,
});
const ToCarWire = z.strictObject({ onstar: Version, commandRequest: CommandRequest });
type ToCarWire = z.infer<typeof ToCarWire>;

const AckWire = z.strictObject({
  onstar: Version,
  commandResponse: z.strictObject({
    vin: Vin,
    requestId: Id,
    orderId: Id.optional(),
    type: z.string().max(32),
    status: z.enum(['success', 'failure']),
    errorCode: AckSchema.shape.reason,
    doorsLocked: z.boolean(),
    completionTime: z.number().int().nonnegative().nullable(),
    ext: Ext,
  }),
});
type AckWire = z.infer<typeof AckWire>;

const Ajar = z.boolean();
const StatusWire = z.strictObject({
  onstar: Version,
  vehicleStatus: z.strictObject({
    vin: Vin,
    sequence: z.number().int().nonnegative(),
    requestId: NonceSchema.optional(),
    doorLock: z.enum(['LOCKED', 'UNLOCKED']),
    doorAjar: z.strictObject({
      driverFront: Ajar,
      passengerFront: Ajar,
      driverRear: Ajar,
      passengerRear: Ajar,
    }),
    trunkAjar: Ajar,
    ignition: z.enum(['OFF', 'RUN']),
    location: z.strictObject({ latitude: PositionSchema.shape.lat, longitude: PositionSchema.shape.lon }),
    timestamp: z.number().int().nonnegative().nullable(),
    ext: Ext,
  }),
});
const ConnectivityWire = z.strictObject({
  onstar: Version,
  connectivity: z.strictObject({ vin: Vin, status: z.literal('OFFLINE'), ext: Ext }),
});
const StateWire = z.union([StatusWire, ConnectivityWire]);
type StateWire = z.infer<typeof StateWire>;

const {
  command: COMMAND_MEMBERS,
  query: QUERY_MEMBERS,
  ack: ACK_MEMBERS,
  report: REPORT_MEMBERS,
  presence: PRESENCE_MEMBERS,
} = MAPPED_MEMBERS;

/** Canonical action → OnStar type in an ack; a name OnStar uses for another action would not round-trip. */
function ackType(action: string): string {
  if (action === 'unlock' || action === 'lock') return REQUEST_FOR[action];
  if (ACTION_FOR[action] !== undefined) {
    throw new ProviderError('MESSAGE_INVALID', `canonical action "${action}" is an OnStar request name`);
  }
  return action;
}

const open = (ajar: boolean): 'open' | 'closed' => (ajar ? 'open' : 'closed');

function recoverIds(json: Record<string, unknown>): RecoveredIds | null {
  if (json.onstar !== VERSION || typeof json.commandRequest !== 'object' || json.commandRequest === null) {
    return null;
  }
  const body = json.commandRequest as Record<string, unknown>;
  const commandId = Id.safeParse(body.requestId);
  if (!commandId.success) return null;
  const type = RequestType.safeParse(body.type);
  const orderId = Id.safeParse(body.orderId);
  return {
    commandId: commandId.data,
    ...(orderId.success ? { deliveryId: orderId.data } : {}),
    action: type.success ? (ACTION_FOR[type.data] ?? type.data) : 'unknown',
  };
}

export const onstar = defineAdapter({
  id: 'onstar',
  name: 'OnStar',
  recognises: (json) => json.onstar === VERSION,
  recoverIds,
  toCar: {
    wire: ToCarWire,
    toWire(m: ToCar): ToCarWire {
      if (m.type === 'state_query') {
        return {
          onstar: VERSION,
          commandRequest: compact({
            requestId: m.nonce,
            type: STATUS_REQUEST,
            ext: extensionsOf(m, QUERY_MEMBERS),
          }),
        };
      }
      return {
        onstar: VERSION,
        commandRequest: compact({
          requestId: m.commandId,
          type: REQUEST_FOR[doorAction(m.action)],
          orderId: m.deliveryId,
          authorization: m.token,
          ext: extensionsOf(m, COMMAND_MEMBERS),
        }),
      };
    },
    fromWire({ commandRequest: r }) {
      if (r.type === STATUS_REQUEST) {
        if (r.orderId !== undefined || r.authorization !== undefined) {
          throw new ProviderError('MESSAGE_INVALID', 'a vehicleStatus request carries no order or token');
        }
        return withExtensions(
          { v: PROTOCOL_VERSION, type: 'state_query', nonce: r.requestId },
          r.ext,
          QUERY_MEMBERS,
        );
      }
      const action = ACTION_FOR[r.type];
      if (action === undefined) {
        throw new ProviderError(
          'ACTION_NOT_ALLOWED',
          `OnStar request "${r.type}" is outside unlock and lock`,
          {
            commandId: r.requestId,
            ...(r.orderId === undefined ? {} : { deliveryId: r.orderId }),
            action: r.type,
          },
        );
      }
      return withExtensions(
        {
          v: PROTOCOL_VERSION,
          type: 'command',
          commandId: r.requestId,
          deliveryId: r.orderId,
          action,
          token: r.authorization,
        },
        r.ext,
        COMMAND_MEMBERS,
      );
    },
  },
  ack: {
    wire: AckWire,
    toWire: (a): AckWire => ({
      onstar: VERSION,
      commandResponse: compact({
        vin: a.vin,
        requestId: a.commandId,
        orderId: a.deliveryId,
        type: ackType(a.action),
        status: a.outcome === 'executed' ? 'success' : 'failure',
        errorCode: a.reason,
        doorsLocked: a.locked,
        completionTime: a.at,
        ext: extensionsOf(a, ACK_MEMBERS),
      }),
    }),
    fromWire: ({ commandResponse: r }) =>
      withExtensions(
        compact({
          v: PROTOCOL_VERSION,
          type: 'ack',
          vin: r.vin,
          commandId: r.requestId,
          deliveryId: r.orderId,
          action: ACTION_FOR[r.type] ?? r.type,
          outcome: r.status === 'success' ? 'executed' : 'refused',
          reason: r.errorCode,
          locked: r.doorsLocked,
          at: r.completionTime,
        }),
        r.ext,
        ACK_MEMBERS,
      ),
  },
  state: {
    wire: StateWire,
    toWire(m: StateMessage): StateWire {
      if (m.type === 'presence') {
        return {
          onstar: VERSION,
          connectivity: compact({
            vin: m.vin,
            status: 'OFFLINE' as const,
            ext: extensionsOf(m, PRESENCE_MEMBERS),
          }),
        };
      }
      return {
        onstar: VERSION,
        vehicleStatus: compact({
          vin: m.vin,
          sequence: m.seq,
          requestId: m.nonce,
          doorLock: m.locked ? ('LOCKED' as const) : ('UNLOCKED' as const),
          doorAjar: {
            driverFront: m.doors.driver === 'open',
            passengerFront: m.doors.passenger === 'open',
            driverRear: m.doors.rearLeft === 'open',
            passengerRear: m.doors.rearRight === 'open',
          },
          trunkAjar: m.trunk === 'open',
          ignition: m.ignition === 'on' ? ('RUN' as const) : ('OFF' as const),
          location: { latitude: m.position.lat, longitude: m.position.lon },
          timestamp: m.at,
          ext: extensionsOf(m, REPORT_MEMBERS),
        }),
      };
    },
    fromWire(w) {
      if ('connectivity' in w) {
        const c = w.connectivity;
        return withExtensions(
          { v: PROTOCOL_VERSION, type: 'presence', vin: c.vin, online: false },
          c.ext,
          PRESENCE_MEMBERS,
        );
      }
      const s = w.vehicleStatus;
      return withExtensions(
        compact({
          v: PROTOCOL_VERSION,
          type: 'state',
          vin: s.vin,
          seq: s.sequence,
          online: true,
          locked: s.doorLock === 'LOCKED',
          doors: {
            driver: open(s.doorAjar.driverFront),
            passenger: open(s.doorAjar.passengerFront),
            rearLeft: open(s.doorAjar.driverRear),
            rearRight: open(s.doorAjar.passengerRear),
          },
          trunk: open(s.trunkAjar),
          ignition: s.ignition === 'RUN' ? 'on' : 'off',
          position: { lat: s.location.latitude, lon: s.location.longitude },
          at: s.timestamp,
          nonce: s.requestId,
        }),
        s.ext,
        REPORT_MEMBERS,
      );
    },
  },
});
