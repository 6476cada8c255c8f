// Turns the runs into medians, the medians into Markdown, and checks ringkv's targets (issue 4) against
// what this run measured. Only reads results; measures nothing.

import type { ChildResult } from './child.js'
import type { DiskLimits } from './fio.js'

export interface Summary {
  label: string
  runs: number
  failures: string[]
  puts: { concurrency: number; opsPerSecond: number; latencyUsP50: number; latencyUsP99: number }[]
  loadSeconds: number
  loadKeysPerSecond: number
  getsPerSecond: number
  getMisses: number
  reopenMs: number
  diskBytes: number
  peakRssBytes: number
}

export interface TargetCheck {
  target: string
  measured: string
  ratio: number
  /** `ratio` must be at least this (or at most, when `atMost`). */
  threshold: number
  atMost: boolean
  met: boolean | null
}

export function median(values: number[]): number {
  const finite = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b)
  if (finite.length === 0) return Number.NaN
  const middle = finite.length >> 1
  return finite.length % 2 === 1 ? finite[middle]! : (finite[middle - 1]! + finite[middle]!) / 2
}

export function summarise(label: string, results: ChildResult[], concurrencies: number[]): Summary {
  const good = results.filter((result) => result.error === undefined)
  return {
    label,
    runs: good.length,
    failures: results.filter((result) => result.error !== undefined).map((result) => result.error!),
    puts: concurrencies.map((concurrency) => {
      const at = good.map((result) => result.puts.find((put) => put.concurrency === concurrency)!)
      return {
        concurrency,
        opsPerSecond: median(at.map((put) => put.opsPerSecond)),
        latencyUsP50: median(at.map((put) => put.latencyUsP50)),
        latencyUsP99: median(at.map((put) => put.latencyUsP99)),
      }
    }),
    loadSeconds: median(good.map((result) => result.load.seconds)),
    loadKeysPerSecond: median(good.map((result) => result.load.keysPerSecond)),
    getsPerSecond: median(good.map((result) => result.gets.opsPerSecond)),
    getMisses: good.reduce((sum, result) => sum + result.gets.misses + result.gets.mismatches, 0),
    reopenMs: median(good.map((result) => result.reopenMs)),
    diskBytes: median(good.map((result) => result.diskBytes)),
    peakRssBytes: median(good.map((result) => result.peakRssBytes)),
  }
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

function count(value: number): string {
  return Number.isFinite(value) ? integer.format(value) : '—'
}

/** Microseconds shown as milliseconds with three significant digits: 0.0035, 0.145, 1.46, 12.3, 1,234. */
function milliseconds(us: number): string {
  if (!Number.isFinite(us)) return '—'
  const ms = us / 1000
  return ms >= 100 ? integer.format(ms) : String(Number(ms.toPrecision(3)))
}

function mebibytes(bytes: number): string {
  return Number.isFinite(bytes) ? (bytes / (1024 * 1024)).toFixed(0) : '—'
}

function table(header: string[], rows: string[][]): string {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, index) => (index === 0 ? '---' : '---:')).join('|')}|`]
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`)
  return lines.join('\n')
}

export function isRingkv(label: string): boolean {
  return label.startsWith('ringkv')
}

function putsAt(summary: Summary, concurrency: number): Summary['puts'][number] | undefined {
  return summary.puts.find((put) => put.concurrency === concurrency)
}

/** The ringkv row that did best on `score` (higher is better), and the best other row. */
function best(summaries: Summary[], score: (summary: Summary) => number, ringkv: boolean): Summary | undefined {
  let winner: Summary | undefined
  for (const summary of summaries) {
    if (isRingkv(summary.label) !== ringkv || summary.runs === 0 || !Number.isFinite(score(summary))) continue
    if (winner === undefined || score(summary) > score(winner)) winner = summary
  }
  return winner
}

export function checkTargets(summaries: Summary[], disk: DiskLimits): TargetCheck[] {
  const checks: TargetCheck[] = []
  const atLeast = (target: string, measured: string, ratio: number, threshold: number): void => {
    checks.push({ target, measured, ratio, threshold, atMost: false, met: Number.isFinite(ratio) ? ratio >= threshold : null })
  }

  const puts256 = (summary: Summary) => putsAt(summary, 256)?.opsPerSecond ?? Number.NaN
  const ringkv256 = best(summaries, puts256, true)
  const other256 = best(summaries, puts256, false)
  // The hand-written node:fs log counts as an engine here (the strictest reading of the target); the best
  // library engine is named beside it.
  const library256 = best(
    summaries.filter((summary) => summary.label !== 'node:fs log'),
    puts256,
    false,
  )
  const besideLibrary =
    ringkv256 && library256 && library256 !== other256
      ? `; ${(puts256(ringkv256) / puts256(library256)).toFixed(2)}× ${library256.label} ${count(puts256(library256))}/s`
      : ''
  atLeast(
    'durable puts/s at concurrency 256 ≥ 2× the best other engine',
    ringkv256 && other256
      ? `${ringkv256.label} ${count(puts256(ringkv256))}/s vs ${other256.label} ${count(puts256(other256))}/s${besideLibrary}`
      : 'not measured',
    ringkv256 && other256 ? puts256(ringkv256) / puts256(other256) : Number.NaN,
    2,
  )

  const puts4096 = (summary: Summary) => putsAt(summary, 4096)?.opsPerSecond ?? Number.NaN
  const ringkv4096 = best(summaries, puts4096, true)
  atLeast(
    'durable puts/s at concurrency 4096 ≥ 1,000,000',
    ringkv4096 ? `${ringkv4096.label} ${count(puts4096(ringkv4096))}/s` : 'not measured',
    ringkv4096 ? puts4096(ringkv4096) / 1_000_000 : Number.NaN,
    1,
  )

  // Lower latency is better: the best ringkv row is the one with the smallest p50 at concurrency 1.
  const p50At1 = (summary: Summary) => -(putsAt(summary, 1)?.latencyUsP50 ?? Number.NaN)
  const ringkv1 = best(summaries, p50At1, true)
  const fioP50 = disk.fdatasyncAppend4KiB?.latencyUsP50
  const ratio1 = ringkv1 && fioP50 !== undefined ? -p50At1(ringkv1) / fioP50 : Number.NaN
  checks.push({
    target: "p50 at concurrency 1 ≤ 1.25× one fdatasync'd 4 KiB append (fio)",
    measured:
      ringkv1 && fioP50 !== undefined
        ? `${ringkv1.label} ${milliseconds(-p50At1(ringkv1))} ms vs fio ${milliseconds(fioP50)} ms` +
          (disk.parallelPair4KiB
            ? ` (two files in parallel, the dual log's floor: ${milliseconds(disk.parallelPair4KiB.latencyUsP50)} ms)`
            : '')
        : `not measured${disk.skippedReason ? ` (${disk.skippedReason})` : ''}`,
    ratio: ratio1,
    threshold: 1.25,
    atMost: true,
    met: Number.isFinite(ratio1) ? ratio1 <= 1.25 : null,
  })

  const getsScore = (summary: Summary) => summary.getsPerSecond
  const ringkvGets = best(summaries, getsScore, true)
  const lmdb = summaries.find((summary) => summary.label === 'lmdb' && summary.runs > 0)
  atLeast(
    'random gets/s ≥ lmdb-js',
    ringkvGets && lmdb ? `${ringkvGets.label} ${count(ringkvGets.getsPerSecond)}/s vs lmdb ${count(lmdb.getsPerSecond)}/s` : 'not measured',
    ringkvGets && lmdb ? ringkvGets.getsPerSecond / lmdb.getsPerSecond : Number.NaN,
    1,
  )
  return checks
}

export interface ReportContext {
  summaries: Summary[]
  disk: DiskLimits
  targets: TargetCheck[]
  concurrencies: number[]
  loadKeys: number
  loadBatch: number
  getConcurrency: number
  rounds: number
  /** Engines that did not run, and why. */
  leftOut: Record<string, string>
}

export function markdown(context: ReportContext): string {
  const { summaries, disk, concurrencies } = context
  const sections: string[] = []

  sections.push(
    `### Durable puts/s (median of ${context.rounds} round${context.rounds === 1 ? '' : 's'}; c = concurrent clients, each awaiting its own put)\n\n` +
      table(
        ['engine', ...concurrencies.map((concurrency) => `c=${concurrency}`)],
        summaries.map((summary) => [
          summary.label,
          ...concurrencies.map((concurrency) => count(putsAt(summary, concurrency)?.opsPerSecond ?? Number.NaN)),
        ]),
      ),
  )

  sections.push(
    '### Put latency, p50 / p99 (ms)\n\n' +
      table(
        ['engine', ...concurrencies.map((concurrency) => `c=${concurrency}`)],
        summaries.map((summary) => [
          summary.label,
          ...concurrencies.map((concurrency) => {
            const put = putsAt(summary, concurrency)
            return put ? `${milliseconds(put.latencyUsP50)} / ${milliseconds(put.latencyUsP99)}` : '—'
          }),
        ]),
      ),
  )

  sections.push(
    `### Load (${count(context.loadKeys)} keys in batches of ${count(context.loadBatch)}), reads, footprint\n\n` +
      table(
        ['engine', 'load s', 'load keys/s', `random gets/s (c=${context.getConcurrency})`, 'peak RSS MiB', 'on disk MiB', 'reopen ms'],
        summaries.map((summary) => [
          summary.label,
          Number.isFinite(summary.loadSeconds) ? summary.loadSeconds.toFixed(2) : '—',
          count(summary.loadKeysPerSecond),
          count(summary.getsPerSecond) + (summary.getMisses > 0 ? ` (${summary.getMisses} wrong)` : ''),
          mebibytes(summary.peakRssBytes),
          mebibytes(summary.diskBytes),
          Number.isFinite(summary.reopenMs) ? summary.reopenMs.toFixed(0) : '—',
        ]),
      ),
  )

  if (disk.available && disk.fdatasyncAppend4KiB && disk.sequentialWrite) {
    const append = disk.fdatasyncAppend4KiB
    sections.push(
      `### The disk's limits (${disk.fioVersion}, same run, same file system)\n\n` +
        table(
          ['fio job', 'result'],
          [
            ["fdatasync'd 4 KiB appends, 1 writer", `${count(append.perSecond)}/s`],
            [
              'one append, p50 (write + fdatasync)',
              `${milliseconds(append.latencyUsP50)} ms (${milliseconds(append.writeLatencyUsP50)} + ${milliseconds(append.fdatasyncLatencyUsP50)})`,
            ],
            ['fdatasync p99', `${milliseconds(append.fdatasyncLatencyUsP99)} ms`],
            ...(disk.parallelPair4KiB
              ? [
                  [
                    "two files at once, each 4 KiB write + fdatasync over written space, p50 (the dual log's floor)",
                    `${milliseconds(disk.parallelPair4KiB.latencyUsP50)} ms`,
                  ],
                ]
              : []),
            ['sequential write, 1 MiB O_DIRECT, 16 in flight', `${count(disk.sequentialWrite.mebibytesPerSecond)} MiB/s`],
          ],
        ),
    )
  } else {
    sections.push(`### The disk's limits\n\nSkipped: ${disk.skippedReason}.`)
  }

  sections.push(
    "### ringkv's targets in this run\n\n" +
      table(
        ['target', 'measured', 'ratio', 'met'],
        context.targets.map((check) => [
          check.target,
          check.measured,
          Number.isFinite(check.ratio) ? `${check.ratio.toFixed(2)}× (needs ${check.atMost ? '≤' : '≥'} ${check.threshold}×)` : '—',
          check.met === null ? 'not measured' : check.met ? 'yes' : '**no**',
        ]),
      ),
  )

  const leftOut = Object.entries(context.leftOut)
  if (leftOut.length > 0) {
    sections.push('### Left out\n\n' + leftOut.map(([label, reason]) => `- ${label}: ${reason}`).join('\n'))
  }

  const failures = summaries.filter((summary) => summary.failures.length > 0)
  if (failures.length > 0) {
    sections.push(
      '### Failed runs\n\n' +
        failures
          .map((summary) => `- ${summary.label}: ${summary.failures.length} failed; first: ${summary.failures[0]!.split('\n')[0]}`)
          .join('\n'),
    )
  }
  return sections.join('\n\n')
}
