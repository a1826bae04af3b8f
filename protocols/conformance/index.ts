// Re-exports the conformance kit's programmatic API (main.ts, the program, is not re-exported).
export * from './case.ts';
export * from './cases/index.ts';
export * from './cli.ts';
export * from './errors.ts';
export * from './hook.ts';
export * from './junit.ts';
export * from './link.ts';
export * from './pacer.ts';
export * from './report.ts';
export * from './run.ts';
export * from './runner.ts';
export * from './session.ts';
export * from './signer.ts';
