// The shard-count benchmark runs in its quick mode, so it cannot rot. It asserts that it ran and printed a
// row per shard count and concurrency, never how fast.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'

const script = fileURLToPath(new URL('../bench/scripts/shards.mjs', import.meta.url))

it('the shard-count benchmark prints a row per shard count and concurrency, with its ratio to the first', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--shards', '1,2', '--concurrency', '1,64'], {
    env: { ...process.env, RINGKV_BENCH_QUICK: '1' },
    timeout: 120_000,
  })
  expect(stdout).toMatch(/shardsDefault\(\) = \d+; 1 round\(s\)/)
  for (const concurrency of [1, 64]) {
    expect(stdout).toMatch(new RegExp(`\\| ${concurrency} \\| 1 \\| [\\d,]+ \\| [\\d,]+ – [\\d,]+ \\| 1\\.00 \\(1\\.00 – 1\\.00\\) \\|`))
    expect(stdout).toMatch(new RegExp(`\\| ${concurrency} \\| 2 \\| [\\d,]+ \\| [\\d,]+ – [\\d,]+ \\| [\\d.]+ \\([\\d.]+ – [\\d.]+\\) \\|`))
  }
})
