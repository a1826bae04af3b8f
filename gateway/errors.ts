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
  IDEMPOTENCY_RESPONSE_LOST: {
    status: 409,
    title:
      "This Idempotency-Key's request took effect, but its response was lost (the gateway stopped first)",
    retryable: false,
    resolution: 'NONE',
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
  VIN_YEAR_MISMATCH: {
    status: 422,
    title:
      'VIN model year (position 10, its 30-year cycle from position 7) does not agree with the stated year',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  VIN_MAKE_MISMATCH: {
    status: 422,
    title: 'VIN manufacturer prefix (WMI, positions 1-3) does not belong to the stated make',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  CONSENT_INVALID: {
    status: 422,
    title: 'Consent must be to exactly unlock and lock',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  VEHICLE_NOT_ENROLLED: {
    status: 422,
    title: 'No valid certificate from the project CA is on file for this VIN',
    retryable: false,
    resolution: 'CONTACT_SUPPORT',
  },
  LOCATION_NOT_PUBLIC: {
    status: 422,
    title: 'Location is not publicly accessible (garage or restricted area)',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  ACTION_NOT_CONSENTED: {
    status: 403,
    title: 'The owner did not consent to this action',
    retryable: false,
    resolution: 'NONE',
  },
  ACCESS_BLOCKED: {
    status: 403,
    title: 'The owner blocked access for this delivery or vehicle',
    retryable: false,
    resolution: 'NONE',
  },
  PARKING_NOT_CONFIRMED: {
    status: 409,
    title: 'Parking at the location has not been confirmed by the car',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  VEHICLE_MOVED: {
    status: 409,
    title: 'The car moved or started since its parking was confirmed',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  VEHICLE_NOT_AT_LOCATION: {
    status: 409,
    title: "The car reports a position outside the location's radius",
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  VEHICLE_NOT_PARKED: {
    status: 409,
    title: 'The car reports its ignition on',
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  VEHICLE_CERTIFICATE_REVOKED: {
    status: 409,
    title: "The vehicle's certificate is revoked: no command is sent to it",
    retryable: false,
    resolution: 'CONTACT_SUPPORT',
  },
  VEHICLE_ACK_INVALID: {
    status: 502,
    title: "The vehicle's acknowledgement did not verify against its certificate",
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  RATE_LIMITED: {
    status: 429,
    title: 'Too many requests for this API key',
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  VEHICLE_RATE_LIMITED: {
    status: 429,
    title: 'Too many commands for this vehicle',
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  NOT_READY: {
    status: 503,
    title: 'The gateway is not ready to serve',
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  SHUTTING_DOWN: {
    status: 503,
    title: 'The gateway is shutting down',
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  WEBHOOK_URL_FORBIDDEN: {
    status: 422,
    title: 'The webhook URL is not a public address, or is not https in production',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  AUDIT_RANGE_INVALID: {
    status: 400,
    title: 'Index or tree size outside the audit log',
    retryable: false,
    resolution: 'FIX_REQUEST',
  },
  AUDIT_UNAVAILABLE: {
    status: 503,
    title: 'No audit checkpoint key is configured',
    retryable: false,
    resolution: 'CONTACT_SUPPORT',
  },
  SIMULATOR_NOT_CONFIGURED: {
    status: 501,
    title: 'No simulator is configured to drive (SIMULATOR_CONTROL_URL)',
    retryable: false,
    resolution: 'NONE',
  },
  SIMULATOR_UNREACHABLE: {
    status: 502,
    title: "The simulator's control API did not answer",
    retryable: true,
    resolution: 'RETRY_LATER',
  },
  SIMULATOR_REFUSED: {
    status: 409,
    title: 'The simulator refused the action',
    retryable: false,
    resolution: 'FIX_REQUEST',
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
  /** Seconds until a retry may succeed: sent as Retry-After (RFC 9110 §10.2.3). */
  retryAfterS?: number;
}

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly resolution: Resolution;
  readonly mayHaveSucceeded: boolean | undefined;
  readonly extra: Record<string, unknown>;
  readonly retryAfterS: number | undefined;
  constructor(code: ErrorCode, options: ApiErrorOptions = {}) {
    super(options.detail ?? ERRORS[code].title);
    this.name = 'ApiError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryable = ERRORS[code].retryable;
    this.resolution = ERRORS[code].resolution;
    this.mayHaveSucceeded = options.mayHaveSucceeded;
    this.extra = options.extra ?? {};
    this.retryAfterS = options.retryAfterS;
  }
}

export type KeyRingErrorCode = 'SIGNING_KEY_UNKNOWN' | 'SIGNING_KEY_ACTIVE' | 'SIGNING_KEY_NOT_ED25519';

/** An operator's key-ring request that cannot be done (TOKEN.md §8.3); never crosses the network. */
export class KeyRingError extends Error {
  readonly code: KeyRingErrorCode;
  constructor(code: KeyRingErrorCode, message: string) {
    super(message);
    this.name = 'KeyRingError';
    this.code = code;
  }
}

export type CrlErrorCode = 'CRL_INVALID' | 'CRL_STALE';

/** A CRL the gateway's own revocation check does not take (vehicles/revocation.ts); never crosses the network. */
export class CrlError extends Error {
  readonly code: CrlErrorCode;
  constructor(code: CrlErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CrlError';
    this.code = code;
  }
}

/** The vehicle link cannot address a car (internal: the services check linking before they send). */
export class LinkError extends Error {
  readonly code: 'PROVIDER_UNKNOWN';
  constructor(code: LinkError['code'], message: string) {
    super(message);
    this.name = 'LinkError';
    this.code = code;
  }
}

/**
 * A webhook URL, or an address its name resolved to, that the gateway does not send to: the same code refuses a
 * registration (422) and fails a delivery attempt (webhooks/destination.ts).
 */
export class WebhookUrlError extends Error {
  readonly code = 'WEBHOOK_URL_FORBIDDEN' satisfies ErrorCode;
  constructor(message: string) {
    super(message);
    this.name = 'WebhookUrlError';
  }
}

/** Another live replica on the same store already runs under this GATEWAY_REPLICA: the start is refused. */
export class ReplicaError extends Error {
  readonly code: 'REPLICA_NAME_TAKEN';
  constructor(code: ReplicaError['code'], message: string) {
    super(message);
    this.name = 'ReplicaError';
    this.code = code;
  }
}
