// The comparison benchmark in its smallest mode, so that it cannot rot: every engine runs in both key orders
// and answers with positive figures, gets find what the load wrote, both orders' tables and the targets
// print with numbers, and the JSON is written. It asserts that the benchmark ran, never how fast anything was.

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
  orders: string[]
  loadOrders: string[]
  leftOut: Record<string, string>
  disk: { available: boolean; skippedReason?: string; fdatasyncAppend4KiB?: { perSecond: number } }
  summaries: Summary[]
  targets: TargetCheck[]
}

const orders = ['sequential', 'hashed']

test('the benchmark runs every engine in both key orders in smoke mode, prints both tables and the targets, and writes its JSON', () => {
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
  const number = String.raw`\d[\d,.]*`
  for (const order of orders) {
    // A table's header, then a row of figures for the default row: c=1, c=256, c=4096.
    expect(stdout).toMatch(
      new RegExp(
        String.raw`### Durable puts/s, ${order} keys .*\n\n.*\n.*\n\| ringkv \(default\) \| ${number} \| ${number} \| ${number} \|`,
      ),
    )
    expect(stdout).toMatch(
      new RegExp(
        String.raw`### Put latency, p50 / p99 \(ms\), ${order} keys\n\n.*\n.*\n\| ringkv \(default\)( \| ${number} / ${number}){3} \|`,
      ),
    )
  }
  expect(stdout).toMatch(/### Load \(2,000 sequential keys in batches of 1,000\), reads, footprint/)
  expect(stdout).toContain("### ringkv's targets in this run")
  // Five targets per order, each with its ratio and a verdict.
  for (const order of orders) {
    const rows = stdout.match(
      new RegExp(String.raw`^\| ${order} \| c=\d+: .* \| ${number}× \(needs [≤≥] ${number}×\) \| (met|\*\*not met\*\*) \|$`, 'gm'),
    )
    expect(rows, `${order} targets`).toHaveLength(5)
  }

  const report = JSON.parse(readFileSync(out, 'utf8')) as Report
  for (const [label, reason] of Object.entries(report.leftOut)) console.log(`bench smoke: ${label} left out: ${reason}`)
  if (!report.disk.available) console.log(`bench smoke: fio skipped: ${report.disk.skippedReason}`)
  else expect(report.disk.fdatasyncAppend4KiB!.perSecond).toBeGreaterThan(0)
  expect(report.orders).toEqual(orders)
  expect(report.loadOrders).toEqual(['sequential'])

  for (const order of orders) {
    const labels = report.summaries.filter((summary) => summary.order === order).map((summary) => summary.label)
    for (const engine of ['ringkv (default)', 'ringkv fs ×1', 'lmdb', 'classic-level', 'node:fs log']) expect(labels).toContain(engine)
    if (report.leftOut['better-sqlite3'] === undefined) expect(labels).toContain('better-sqlite3')
  }

  for (const summary of report.summaries) {
    const name = `${summary.order} ${summary.label}`
    expect(summary.failures, name).toEqual([])
    expect(summary.runs, name).toBe(1)
    expect(summary.setup, name).not.toBe('')
    for (const put of summary.puts) {
      expect(put.opsPerSecond, `${name} puts`).toBeGreaterThan(0)
      expect(put.latencyUsP50, `${name} p50`).toBeGreaterThan(0)
    }
    if (summary.order !== 'sequential') {
      expect(summary.loaded, name).toBeUndefined()
      continue
    }
    const loaded = summary.loaded!
    expect(loaded.loadKeysPerSecond, `${name} load`).toBeGreaterThan(0)
    expect(loaded.getsPerSecond, `${name} gets`).toBeGreaterThan(0)
    expect(loaded.getMisses, `${name} wrong gets`).toBe(0)
    expect(loaded.reopenMs, `${name} reopen`).toBeGreaterThan(0)
    expect(loaded.diskBytes, `${name} disk`).toBeGreaterThan(0)
    expect(loaded.peakRssBytes, `${name} RSS`).toBeGreaterThan(0)
  }

  expect(report.targets).toHaveLength(10)
  for (const check of report.targets) {
    expect(Number.isFinite(check.ratio), `${check.order} ${check.target}`).toBe(true)
    expect(typeof check.met, `${check.order} ${check.target}`).toBe('boolean')
  }
})
