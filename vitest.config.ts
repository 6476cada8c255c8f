import { defineConfig } from 'vitest/config'

// One run covers the unit tests beside the code and the cross-package tests in test/.
// Tests import the built packages (`@ringkv/engine` resolves to dist/): `pnpm test` builds first.
export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Crash and power-loss tests share loop devices and the disk: files run one at a time.
    fileParallelism: false,
    reporters: ['default'],
  },
})
