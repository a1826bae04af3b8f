// Owns the simulator's error classes: one base with a stable `code`, the union of codes.

export type SimulatorErrorCode =
  | 'SIM_ARGS_INVALID'
  | 'SIM_CONNECT_FAILED'
  | 'SIM_PKI_MISSING'
  | 'SIM_REPLAY_STORE_CORRUPT'
  | 'SIM_CAR_STATE_CORRUPT'
  | 'SIM_SCENARIO_INVALID'
  | 'SIM_CONTROL_FAILED'
  | 'SIM_CONTROL_INVALID'
  | 'SIM_CONTROL_NOT_FOUND'
  | 'SIM_CONTROL_NOT_READY'
  | 'SIM_CONTROL_TOO_LARGE'
  | 'SIM_KEY_STORE_CORRUPT'
  | 'SIM_REVOCATION_STORE_CORRUPT'
  | 'SIM_UNKNOWN_VIN'
  | 'SIM_SUBSCRIBE_REFUSED'
  | 'SIM_WORKER_CRASHED';

export class SimulatorError extends Error {
  readonly code: SimulatorErrorCode;
  constructor(code: SimulatorErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SimulatorError';
    this.code = code;
  }
}
