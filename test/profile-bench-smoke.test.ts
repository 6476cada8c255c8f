// The per-put profile (bench/scripts/profile.mjs) runs in its quick mode, so it cannot rot. It asserts that it
// ran and printed a row per key order and concurrency with a number in every column, never how fast.
import { execFile, execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'

const repository = fileURLToPath(new URL('..', import.meta.url))
const script = fileURLToPath(new URL('../bench/scripts/profile.mjs', import.meta.url))

it('the per-put profile prints main, worker, batch I/O and CPU µs per put, and writes and flushes per batch', async () => {
  // It reads the bench's keys and values from bench/dist: build it, as `run bench` does.
  execFileSync(process.execPath, [`${repository}node_modules/typescript/bin/tsc`, '-b', `${repository}bench`], { stdio: 'inherit' })
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--concurrency', '1,64'], {
    env: { ...process.env, RINGKV_BENCH_QUICK: '1' },
    timeout: 120_000,
  })
  const number = '[\\d,]+(?:\\.\\d+)?'
  for (const order of ['sequential', 'hashed']) {
    for (const concurrency of [1, 64]) {
      expect(stdout).toMatch(new RegExp(`\\| ${order} \\| ${concurrency} (?:\\| ${number} ){8}\\|`))
    }
  }
  // One put per batch at c=1: its batch is its own, and the two logs' flushes show on the disk's counters.
  const c1 = new RegExp(`\\| hashed \\| 1 (?:\\| ${number} ){5}\\| 1 \\| ${number} \\| (${number}) \\|`).exec(stdout)
  expect(Number(c1![1])).toBeGreaterThanOrEqual(1)
})
