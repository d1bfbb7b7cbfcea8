import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const source = (path: string) => fileURLToPath(new URL(path, import.meta.url))

export default defineConfig({
  resolve: {
    // Tests run against the sources; test/dist-entrypoints.test.ts loads the built packages.
    alias: [
      { find: /^@tether\/core\/testing$/, replacement: source('./packages/core/src/testing.ts') },
      { find: /^@tether\/core\/adapter$/, replacement: source('./packages/core/src/adapter.ts') },
      { find: /^@tether\/core$/, replacement: source('./packages/core/src/index.ts') },
      { find: /^@tether\/express$/, replacement: source('./packages/express/src/index.ts') },
      { find: /^@tether\/fastify$/, replacement: source('./packages/fastify/src/index.ts') },
    ],
  },
  test: {
    // In CI a JSON report is written too, from which .ci/run prints its closing "N passed, N failed".
    reporters: process.env.CI ? ['default', ['json', { outputFile: '.cache/vitest-report.json' }]] : ['default'],
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    // Heap-flatness tests call global.gc().
    execArgv: ['--expose-gc'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    typecheck: {
      enabled: true,
      include: ['packages/*/test/**/*.test-d.ts'],
      tsconfig: './tsconfig.json',
    },
  },
})
