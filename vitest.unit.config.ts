import { defineConfig } from 'vitest/config'
import full from './vitest.config.js'

// `pnpm test:unit`: the fast layers, in about 20 s on 2 cores, with no root, no loop devices and no Debian
// packages: the unit tests beside the code (the seeded simulation among them) and the conformance suite
// (both backends; the SIGKILL test kills only its own writer child). Left to `pnpm test` (vitest.config.ts):
// test/crash/ (root, loop devices, mkfs, xfs_io; minutes) and the bench and example smoke tests (they build
// and run the real programs, small). Like the full run, the tests import the built packages: the script
// builds first.
export default defineConfig({
  test: {
    ...full.test,
    include: ['packages/*/src/**/*.test.ts', 'test/conformance/**/*.test.ts'],
    // Nothing here shares a loop device or a mount: files may run side by side.
    fileParallelism: true,
  },
})
