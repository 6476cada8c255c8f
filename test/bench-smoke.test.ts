// The comparison benchmark in its smallest mode, so that it cannot rot: every engine runs and answers
// with positive figures, gets find what the load wrote, and the JSON is written. It asserts that the
// benchmark ran, never how fast anything was.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'
import type { Summary, TargetCheck } from '../bench/src/report.js'

const repository = fileURLToPath(new URL('..', import.meta.url))
const workDirectory = mkdtempSync(join(os.tmpdir(), 'ringkv-bench-smoke-'))
afterAll(() => rmSync(workDirectory, { recursive: true, force: true }))

// The shapes the benchmark itself writes: read from its own source, not restated here.
interface Report {
  leftOut: Record<string, string>
  disk: { available: boolean; skippedReason?: string; fdatasyncAppend4KiB?: { perSecond: number } }
  summaries: Summary[]
  targets: TargetCheck[]
}

test('the benchmark runs every engine in smoke mode and writes its JSON', () => {
  // bench/ is not part of `pnpm run build` (packages only), so the test builds it.
  execFileSync(process.execPath, [join(repository, 'node_modules/typescript/bin/tsc'), '-b', join(repository, 'bench')], {
    stdio: 'inherit',
  })
  const out = join(workDirectory, 'smoke.json')
  const stdout = execFileSync(
    process.execPath,
    [join(repository, 'bench/dist/main.js'), '--mode', 'smoke', '--out', out, '--no-markdown', '--dir', workDirectory],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 110_000 },
  )
  expect(stdout).toContain('### Durable puts/s')
  expect(stdout).toContain("### ringkv's targets in this run")

  const report = JSON.parse(readFileSync(out, 'utf8')) as Report
  for (const [label, reason] of Object.entries(report.leftOut)) console.log(`bench smoke: ${label} left out: ${reason}`)
  if (!report.disk.available) console.log(`bench smoke: fio skipped: ${report.disk.skippedReason}`)
  else expect(report.disk.fdatasyncAppend4KiB!.perSecond).toBeGreaterThan(0)

  const labels = report.summaries.map((summary) => summary.label)
  for (const engine of ['ringkv fs ×1', 'lmdb', 'classic-level', 'node:fs log']) expect(labels).toContain(engine)
  if (report.leftOut['better-sqlite3'] === undefined) expect(labels).toContain('better-sqlite3')
  if (report.leftOut['ringkv io_uring ×1'] === undefined) expect(labels).toContain('ringkv io_uring ×1')

  for (const summary of report.summaries) {
    expect(summary.failures, summary.label).toEqual([])
    expect(summary.runs, summary.label).toBe(1)
    for (const put of summary.puts) {
      expect(put.opsPerSecond, `${summary.label} puts`).toBeGreaterThan(0)
      expect(put.latencyUsP50, `${summary.label} p50`).toBeGreaterThan(0)
    }
    expect(summary.loadKeysPerSecond, `${summary.label} load`).toBeGreaterThan(0)
    expect(summary.getsPerSecond, `${summary.label} gets`).toBeGreaterThan(0)
    expect(summary.getMisses, `${summary.label} wrong gets`).toBe(0)
    expect(summary.reopenMs, `${summary.label} reopen`).toBeGreaterThan(0)
    expect(summary.diskBytes, `${summary.label} disk`).toBeGreaterThan(0)
    expect(summary.peakRssBytes, `${summary.label} RSS`).toBeGreaterThan(0)
  }
  expect(report.targets).toHaveLength(4)
})
