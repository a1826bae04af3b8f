// Re-exports the provider adapters and their registry.

export * from './adapter.ts';
export * from './errors.ts';
export * from './onstar.ts';
export * from './registry.ts';
export * from './volvo-on-call.ts';
