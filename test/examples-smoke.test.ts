// The scaling example in its quick mode, so that it cannot rot: it prints its table for every shard
// count and backend, and for client threads × cores, and writes its SVG chart. It asserts that the example
// ran, never how fast.

import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'
import { shardsDefault } from '@ringkv/engine'

const examples = fileURLToPath(new URL('../examples/', import.meta.url))
const workDirectory = mkdtempSync(join(os.tmpdir(), 'ringkv-examples-smoke-'))
afterAll(() => rmSync(workDirectory, { recursive: true, force: true }))

test('examples/scaling.js --quick prints a row per shard count and backend, and per core set and client thread count, and writes the chart', () => {
  const svg = join(workDirectory, 'scaling.svg')
  const stdout = execFileSync(process.execPath, ['scaling.js', '--svg', svg], {
    cwd: examples,
    env: { ...process.env, RINGKV_SCALING_QUICK: '1' },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 60_000,
  })
  expect(stdout).toContain('| backend | shards | durable puts/s | p50 ms | p99 ms |')

  const shardCounts = [1]
  while (shardCounts.at(-1)! * 2 <= 2 * os.availableParallelism()) shardCounts.push(shardCounts.at(-1)! * 2)
  const rows = stdout.split('\n').filter((line) => /^\| (io_uring|fs)/.test(line))
  for (const backend of ['io_uring', 'fs']) {
    const skipped = stdout.includes(`${backend} skipped:`)
    if (skipped) {
      console.log(`examples smoke: ${stdout.split('\n').find((line) => line.startsWith(`${backend} skipped:`))}`)
      continue
    }
    for (const shards of shardCounts) {
      const row = rows.find(
        (line) => line.startsWith(`| ${backend}`) && line.split('|')[2]!.trim().replace(' (default)', '') === String(shards),
      )
      expect(row, `${backend} ×${shards}`).toBeDefined()
      const putsPerSecond = Number(row!.split('|')[3]!.replaceAll(',', '').trim())
      expect(putsPerSecond, `${backend} ×${shards}`).toBeGreaterThan(0)
    }
  }

  // The default shard count is marked in the table and on the chart.
  for (const row of rows)
    expect(row.split('|')[2]!.includes('(default)')).toBe(row.split('|')[2]!.trim() === `${shardsDefault()} (default)`)
  expect(rows.some((line) => line.includes('(default)'))).toBe(true)

  // Part 2: a row per core set (one core, all) and client thread count, or the reason the one-core set was skipped.
  expect(stdout).toContain('| cores | client threads | shards | durable puts/s | p50 ms | p99 ms |')
  const threadRows = stdout.split('\n').filter((line) => /^\| \d+ \| \d+ \| \d+ \|/.test(line))
  const coreSets = stdout.includes('one core skipped:') ? [os.availableParallelism()] : [1, os.availableParallelism()]
  for (const coreCount of coreSets) {
    for (const threads of shardCounts) {
      const row = threadRows.find(
        (line) => line.split('|')[1]!.trim() === String(coreCount) && line.split('|')[2]!.trim() === String(threads),
      )
      expect(row, `${coreCount} cores × ${threads} threads`).toBeDefined()
      expect(Number(row!.split('|')[3]!.trim()), `${coreCount} cores × ${threads} threads: shards`).toBe(shardsDefault())
    }
  }
  if (coreSets.length === 2) expect(stdout).toMatch(/cores \/ 1 core: best thread count of each \d+\.\d+x/)

  expect(existsSync(svg)).toBe(true)
  const chart = readFileSync(svg, 'utf8')
  expect(chart.startsWith('<svg')).toBe(true)
  expect(chart).toContain('<polyline')
  expect(chart).toContain('>default</text>')
  expect(chart).toContain('durable puts/s by client threads, on one core and on all')
  expect(chart.trimEnd().endsWith('</svg>')).toBe(true)
})
