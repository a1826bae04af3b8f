// Owns the gateway's error registry: every refusal has a stable code, an HTTP status, and says whether a retry is safe.

/**
 * What the caller should do next (Smartcar's error `resolution`): retry the same request later, use other
 * credentials, change the request, or ask the operator. NONE: the decision stands, nothing makes it succeed.
 */
export const RESOLUTIONS = [
  'RETRY_LATER',
  'REAUTHENTICATE',
  'FIX_REQUEST',
  'CONTACT_SUPPORT',
  'NONE',
] as const;
export type Resolution = (typeof RESOLUTIONS)[number];

export interface ErrorSpec {
  status: number;
  title: string;
  /** The same request may succeed later unchanged. */
  retryable: boolean;
  resolution: Resolution;
}

export const ERRORS = {
  UNAUTHENTICATED: {
    status: 401,
    title: 'Missing, unknown or revoked API key',
    retryable: false,
    resolution: 'REAUTHENTICATE',
  },
  SCOPE_MISSING: {
    status: 403,
    title: 'The API key lacks the scope this route needs',
    retryable: false,
    resolution: 'REAUTHENTICATE',
  },
  VALIDATION_FAILED: {
    status: 400,
    title: 'Request does not match the schema',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  FIELD_NOT_ALLOWED: {
    status: 400,
    title: 'The request sets a field this API key may not set',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  VIN_MALFORMED: {
    status: 400,
    title: 'VIN is not 17 characters of A-Z 0-9 without I, O, Q',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  VIN_CHECK_DIGIT: {
    status: 400,
    title: 'VIN check digit (position 9) is wrong',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  NOT_FOUND: { status: 404, title: 'No such resource', retryable: false, resolution: 'FIX_REQUEST' },
  ROUTE_NOT_FOUND: { status: 404, title: 'No such route', retryable: false, resolution: 'FIX_REQUEST' },
  BODY_TOO_LARGE: {
    status: 413,
    title: 'Request body too large',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    title: 'Only application/json is accepted',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  IDEMPOTENCY_KEY_INVALID: {
    status: 400,
    title: 'Idempotency-Key must be 1 to 255 visible ASCII characters',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    title: 'This Idempotency-Key was already used with another request',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  IDEMPOTENCY_IN_FLIGHT: {
    status: 409,
    title: 'A request with this Idempotency-Key is still being processed',
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  VEHICLE_NOT_COMPATIBLE: {
    status: 422,
    title: 'Vehicle is outside the compatibility catalog',
    retryable: false,
    resolution: 'NONE',
  },
  VEHICLE_ALREADY_LINKED: {
    status: 409,
    title: 'Vehicle is already linked',
    retryable: false,
    resolution: 'NONE',
  },
  VEHICLE_NOT_LINKED: {
    status: 422,
    title: 'Vehicle is not linked',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  LOCATION_NOT_OWNED: {
    status: 422,
    title: "Location does not belong to the vehicle's owner",
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  RADIUS_TOO_LARGE: {
    status: 400,
    title: 'Location radius is above the cap',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  WINDOW_INVALID: {
    status: 400,
    title: 'Delivery window is empty, too long or already over',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  DELIVERY_NOT_ACTIVE: {
    status: 409,
    title: 'Delivery is not in a state that allows this',
    retryable: false,
    resolution: 'NONE',
  },
  DRIVER_NOT_ASSIGNED: {
    status: 403,
    title: 'Driver is not the one assigned to this delivery',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  OUTSIDE_WINDOW: {
    status: 403,
    title: 'Now is outside the delivery window',
    retryable: false,
    resolution: 'NONE',
  },
  PACKAGE_NOT_IN_DELIVERY: {
    status: 403,
    title: 'Scanned package is not part of this delivery',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  DRIVER_NOT_AT_LOCATION: {
    status: 403,
    title: "Driver is not within the location's radius",
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  UNLOCK_LIMIT_REACHED: {
    status: 403,
    title: 'This delivery has used all of its unlocks',
    retryable: false,
    resolution: 'NONE',
  },
  VEHICLE_REFUSED: {
    status: 409,
    title: 'The vehicle refused the command',
    retryable: false,
    resolution: 'CONTACT_SUPPORT',
  },
  VEHICLE_UNREACHABLE: {
    status: 504,
    title: 'The vehicle did not acknowledge in time',
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  BROKER_UNAVAILABLE: {
    status: 503,
    title: 'The MQTT broker is not connected',
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  INTERNAL: { status: 500, title: 'Internal error', retryable: true, resolution: 'RETRY_LATER' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export interface ApiErrorOptions {
  detail?: string;
  /** The vehicle may already have acted: only for command failures (Tesla vehicle-command's MayHaveSucceeded). */
  mayHaveSucceeded?: boolean;
  /** Extra machine-readable members for the problem document. */
  extra?: Record<string, unknown>;
}

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly resolution: Resolution;
  readonly mayHaveSucceeded: boolean | undefined;
  readonly extra: Record<string, unknown>;
  constructor(code: ErrorCode, options: ApiErrorOptions = {}) {
    super(options.detail ?? ERRORS[code].title);
    this.name = 'ApiError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryable = ERRORS[code].retryable;
    this.resolution = ERRORS[code].resolution;
    this.mayHaveSucceeded = options.mayHaveSucceeded;
    this.extra = options.extra ?? {};
  }
}
