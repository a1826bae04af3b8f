// Re-exports the private PKI.
export * from './crl.ts';
export * from './dev-pki.ts';
export * from './errors.ts';
export * from './extensions.ts';
export * from './files.ts';
export * from './fleet.ts';
export * from './identity.ts';
export * from './inspect.ts';
export * from './keys.ts';
export * from './mosquitto.ts';
export * from './nats.ts';
export * from './pki.ts';
export * from './replicas.ts';
export * from './signer.ts';
