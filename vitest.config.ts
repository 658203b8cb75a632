import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Tests run the TypeScript sources of every workspace package, not stale builds.
    conditions: ['source'],
  },
  test: {
    include: ['test/**/*.test.ts', 'core/test/**/*.test.ts', 'plugins/*/test/**/*.test.ts', 'cli/test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
