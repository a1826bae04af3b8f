// Re-exports the simulator's public API (main.ts, the program, is not re-exported).
export * from './car.ts';
export * from './car-clock.ts';
export * from './car-state.ts';
export * from './cli.ts';
export * from './errors.ts';
export * from './fleet.ts';
export * from './key-store.ts';
export * from './replay-store.ts';
export * from './revocation-store.ts';
export * from './state-file.ts';
export * from './transport.ts';
