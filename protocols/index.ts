// Re-exports the wire contract.

export * from './catalog.ts';
export * from './keys.ts';
export * from './messages.ts';
export * from './providers/index.ts';
export * from './strict-json.ts';
export * from './token.ts';
export * from './topics.ts';
export * from './vin.ts';
