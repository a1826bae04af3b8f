// Re-exports the audit log's contract: entries, the Merkle tree, checkpoints, the bundle and its verifier.

export * from './bundle.ts';
export * from './checkpoint.ts';
export * from './entry.ts';
export * from './errors.ts';
export * from './merkle.ts';
export * from './verify.ts';
