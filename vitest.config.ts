import { defineConfig } from 'vitest/config';

// Tests run the TypeScript sources of every workspace package (the export condition `@transformaly/source`, named so
// that no other project's tooling picks it up by accident), not stale builds.
const conditions = ['@transformaly/source', 'import', 'module', 'node', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['@transformaly/source'] } },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
