// Test setup (every project): after a file's own hooks, proves that each PostgreSQL schema the file made is gone.
import { afterAll, expect } from 'vitest';
import { schemasLeft, schemasMade } from './pg-schema.ts';

// Registered before the file's hooks, so it runs after them (after-hooks run in reverse order).
afterAll(async () => {
  expect(await schemasLeft(schemasMade()), 'PostgreSQL schemas this file made and did not drop').toEqual([]);
});
