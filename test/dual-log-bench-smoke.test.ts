// The dual-log benchmark runs in its quick mode, so it cannot rot. It asserts that it ran and printed
// every row, never how fast.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'

const script = fileURLToPath(new URL('../bench/scripts/dual-log.mjs', import.meta.url))

it('the dual-log benchmark prints every mode and concurrency, and the recovery time', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [script], {
    env: { ...process.env, RINGKV_BENCH_QUICK: '1', RINGKV_BENCH_BACKEND: 'fs' },
    timeout: 120_000,
  })
  for (const mode of ['intent + completion', 'intent only']) {
    for (const concurrency of [1, 16, 256]) {
      expect(stdout).toMatch(new RegExp(`\\| ${mode.replace('+', '\\+')} \\| ${concurrency} \\| [\\d,]+ \\| \\d+ \\| \\d+ \\|`))
    }
  }
  expect(stdout).toMatch(/Recovery of 20,000 records \(20 batches, [\d.]+ MB of intent log\): replay \d+ ms/)
})
