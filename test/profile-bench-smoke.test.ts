// The per-put profile (bench/scripts/profile.mjs) and the paired runs of two builds (paired.mjs, which runs
// profile.mjs's job) run in their quick mode, so they cannot rot. They assert that each ran and printed its
// rows with a number in every column, never how fast.
import { execFile, execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'

const repository = fileURLToPath(new URL('..', import.meta.url))
const script = fileURLToPath(new URL('../bench/scripts/profile.mjs', import.meta.url))
const pairedScript = fileURLToPath(new URL('../bench/scripts/paired.mjs', import.meta.url))
const number = '[\\d,]+(?:\\.\\d+)?'

it('the per-put profile prints main, worker, batch I/O and CPU µs per put, and writes and flushes per batch', async () => {
  // It reads the bench's keys and values from bench/dist: build it, as `run bench` does.
  execFileSync(process.execPath, [`${repository}node_modules/typescript/bin/tsc`, '-b', `${repository}bench`], { stdio: 'inherit' })
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--concurrency', '1,64'], {
    env: { ...process.env, RINGKV_BENCH_QUICK: '1' },
    timeout: 120_000,
  })
  for (const order of ['sequential', 'hashed']) {
    for (const concurrency of [1, 64]) {
      expect(stdout).toMatch(new RegExp(`\\| ${order} \\| ${concurrency} (?:\\| ${number} ){8}\\|`))
    }
  }
  // One put per batch at c=1: its batch is its own, and the two logs' flushes show on the disk's counters.
  const c1 = new RegExp(`\\| hashed \\| 1 (?:\\| ${number} ){5}\\| 1 \\| ${number} \\| (${number}) \\|`).exec(stdout)
  expect(Number(c1![1])).toBeGreaterThanOrEqual(1)
})

it('paired runs of two builds print each pair and the median ratio with its range', async () => {
  execFileSync(process.execPath, [`${repository}node_modules/typescript/bin/tsc`, '-b', `${repository}bench`], { stdio: 'inherit' })
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [pairedScript, '--a', repository, '--b', repository, '--concurrency', '16', '--pairs', '2', '--order', 'sequential'],
    { env: { ...process.env, RINGKV_BENCH_QUICK: '1' }, timeout: 120_000 },
  )
  expect(stdout).toMatch(/sequential keys, c=16, 2000 puts per run, 2 pair\(s\)/)
  for (const pair of [1, 2]) expect(stdout).toMatch(new RegExp(`\\| ${pair} \\| ${number} \\| ${number} \\| ${number} \\|`))
  expect(stdout).toMatch(new RegExp(`median: A ${number} puts/s, B ${number} puts/s; B/A ${number} \\(${number} – ${number}\\)`))
})
