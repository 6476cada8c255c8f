// The group-commit placement benchmark runs in its quick mode, so it cannot rot. It asserts that it ran and
// printed a row per engine and grouping, never which grouping won.
import { execFile, execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'

const repository = fileURLToPath(new URL('..', import.meta.url))
const script = fileURLToPath(new URL('../bench/scripts/grouping.mjs', import.meta.url))

it('the grouping benchmark prints a row per engine and grouping, with the ratio of drain to turn', async () => {
  // The script imports bench/dist, which `pnpm run build` does not build (packages only).
  execFileSync(process.execPath, [`${repository}node_modules/typescript/bin/tsc`, '-b', `${repository}bench`], { stdio: 'inherit' })
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--concurrency', '64'], {
    env: { ...process.env, RINGKV_BENCH_QUICK: '1' },
    timeout: 60_000,
  })
  expect(stdout).toContain('c=64, sequential keys; 1 round(s)')
  for (const engine of ['better-sqlite3', 'node:fs log']) {
    expect(stdout).toMatch(
      new RegExp(
        `\\| ${engine} \\| microtask-drain \\| [\\d,]+ \\| [\\d,]+ – [\\d,]+ \\| [\\d.]+ \\| [\\d.]+ \\| [\\d.]+ \\([\\d.]+ – [\\d.]+\\) \\|`,
      ),
    )
    expect(stdout).toMatch(
      new RegExp(`\\| ${engine} \\| event-loop-turn \\| [\\d,]+ \\| [\\d,]+ – [\\d,]+ \\| [\\d.]+ \\| [\\d.]+ \\|  \\|`),
    )
  }
})
