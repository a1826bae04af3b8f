// Re-exports the simulator's public API (main.ts, the program, is not re-exported).
export * from './car.ts';
export * from './car-state.ts';
export * from './cli.ts';
export * from './errors.ts';
export * from './fleet.ts';
export * from './replay-store.ts';
export * from './transport.ts';
