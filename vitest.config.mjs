import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.test.ts'],
    // After every test, each live run's read mirror must agree with the core (lib/run.js).
    setupFiles: ['__test__/helpers/mirror-check.ts'],
    // Native addons and real child processes: one fork per file keeps them isolated.
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
})
