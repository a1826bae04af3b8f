import './runtime.ts';
import { defineConfig } from 'vitest/config';

// npm run test:cluster: the whole local cluster (replicas as processes, PostgreSQL, the broker, the fleet), apart
// from npm test's budget.
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
