// Re-exports the wire contract.

export * from './ack-signature.ts';
export * from './broker-urls.ts';
export * from './canonical-json.ts';
export * from './catalog.ts';
export * from './errors.ts';
export * from './jws.ts';
export * from './key-announcement.ts';
export * from './keys.ts';
export * from './messages.ts';
export * from './providers/index.ts';
export * from './strict-json.ts';
export * from './token.ts';
export * from './topics.ts';
export * from './vin.ts';
