// Owns the broker's codes: why a client was turned away, and why a CRL was not applied.
import type { AdmissionDenial, ConnectDenial, PublishDenial, SubscribeDenial } from './policy.ts';
import type { WireViolation } from './wire.ts';

/** Every reason the broker refuses a client, stable for logs and tests. */
export type BrokerRefusalCode =
  | AdmissionDenial
  | ConnectDenial
  | PublishDenial
  | SubscribeDenial
  | WireViolation
  | 'TLS_HANDSHAKE_FAILED';

export type BrokerErrorCode = 'CRL_INVALID' | 'CRL_STALE' | 'CRL_EXPIRED';

export class BrokerError extends Error {
  readonly code: BrokerErrorCode;
  constructor(code: BrokerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BrokerError';
    this.code = code;
  }
}

/** A CONNECT refusal aedes turns into a CONNACK with this return code [MQTT-3.2.2.3], then closes. */
export class ConnectRefused extends Error {
  readonly code: BrokerRefusalCode;
  readonly returnCode: number;
  constructor(code: BrokerRefusalCode, returnCode: number) {
    super(code);
    this.name = 'ConnectRefused';
    this.code = code;
    this.returnCode = returnCode;
  }
}
