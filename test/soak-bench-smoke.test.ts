// The soak benchmark (bench/scripts/soak.mjs) for a few seconds in each checkpoint mode, so that it cannot rot.
// It asserts that each run printed its samples, read every key back as last acknowledged, and, where
// checkpoints ran, that they did and that disk stayed under a bound from the options; never how fast.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'

const script = fileURLToPath(new URL('../bench/scripts/soak.mjs', import.meta.url))
const keys = 500
const shards = 2
const segmentBytes = 64 * 1024
const small = ['--keys', String(keys), '--shards', String(shards), '--sample-seconds', '1', '--segment-bytes', String(segmentBytes)]
const liveBytes = keys * (16 + 16 + 100)
// Disk with checkpoints: the current checkpoint and the one replacing it (2 x live), and per shard the log
// they do not cover yet: a segment holding the previous checkpoint's point, the log up to the threshold
// (--log-bytes: one segment), the rest of the segment written and the next one, the retired one kept for
// reuse, and what the writers add while a checkpoint is
// written (at about 10k puts/s per shard, a 100 ms checkpoint is 2 segments). 16 segments leaves room for
// checkpoints five times slower on a busy machine; without checkpoints these 3 s write about 5 to 10 MB.
const diskBound = 2 * liveBytes + shards * 16 * segmentBytes
const number = String.raw`[\d,]+(?:\.\d+)?`

interface Sample {
  seconds: number
  putsPerSecond: number
  diskBytes: number
}
interface Run {
  samples: Sample[]
  checkpoints: number
  compactions: number
  disk: { closedBytes: number }
  reopenMs: number
  check: { keysChecked: number; mismatches: number }
}

function soak(options: string[]): Promise<{ stdout: string }> {
  return promisify(execFile)(process.execPath, [script, ...small, ...options], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 })
}

it('auto checkpoints: samples with disk under the bound, checkpoints made, the reopen reads every key back', async () => {
  const { stdout } = await soak(['--checkpoints', 'auto', '--log-bytes', String(segmentBytes), '--seconds', '3'])
  // | s | puts/s | p50 | p99 | max | disk MB | engine disk MB | live MB | disk/live | allowance used | within bound | RSS MB | checkpoints |
  const row = String.raw`^\| ${number} \| ${number} \| (?:[^|]+ \| ){3}(${number}) \| (?:${number} \| ){4}(?:yes|no) \| ${number} \| ${number} \(\+${number}\) \|$`
  const disks = [...stdout.matchAll(new RegExp(row, 'gm'))].map((match) => Number(match[1]) * 1e6)
  expect(disks.length).toBeGreaterThanOrEqual(2)
  for (const disk of disks) expect(disk).toBeLessThanOrEqual(diskBound)
  const checkpoints = /^checkpoints: ([\d,]+) \(failures 0\)/m.exec(stdout)
  expect(Number(checkpoints![1]!.replaceAll(',', ''))).toBeGreaterThanOrEqual(1)
  const reused = /^checkpoints: .*; ([\d,]+) log segments reused;/m.exec(stdout)
  expect(Number(reused![1]!.replaceAll(',', ''))).toBeGreaterThanOrEqual(1)
  expect(stdout).toMatch(new RegExp(`^reopen: open\\(\\) took ${number} ms`, 'm'))
  expect(stdout).toMatch(new RegExp(`^\\| 1 \\| ${number} \\| ${number} \\| ${number} \\| ${number} \\| ${number} \\|$`, 'm'))
  expect(stdout).toMatch(/^read-back check: OK \(500 keys hold their last acknowledged value\)$/m)
})

it('compact-loop: checkpoints back to back keep disk under the bound, and the reopen reads every key back', async () => {
  const { stdout } = await soak(['--checkpoints', 'compact-loop', '--seconds', '2', '--json'])
  const run = JSON.parse(stdout) as Run
  expect(run.samples.length).toBeGreaterThanOrEqual(2)
  expect(run.compactions).toBeGreaterThanOrEqual(1)
  expect(run.checkpoints).toBeGreaterThanOrEqual(shards)
  for (const sample of run.samples) expect(sample.diskBytes).toBeLessThanOrEqual(diskBound)
  expect(run.disk.closedBytes).toBeLessThanOrEqual(diskBound)
  expect(run.check).toEqual({ keysChecked: keys, mismatches: 0 })
})

it('paired rounds of off and auto print each run and the ratio; off makes no checkpoint', async () => {
  const { stdout } = await soak(['--rounds', '1', '--modes', 'off,auto', '--seconds', '2', '--log-bytes', String(segmentBytes)])
  expect(stdout).toMatch(/^1 round\(s\), modes off, auto \(A = off\)/m)
  expect(stdout).toMatch(new RegExp(String.raw`^\| 1 \| off \| ${number} \| (?:${number} \| ){3}— / ${number} \| 0 \| .* \| OK \|$`, 'm'))
  expect(stdout).toMatch(new RegExp(String.raw`^\| 1 \| auto \| ${number} \| (?:${number} \| ){3}.* \| [1-9][\d,]* \| .* \| OK \|$`, 'm'))
  expect(stdout).toMatch(new RegExp(`^auto/off per round: puts/s ${number} \\(${number} – ${number}\\); p99`, 'm'))
})
