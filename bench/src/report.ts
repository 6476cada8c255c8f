// Turns the runs into medians, the medians into Markdown, and checks ringkv's targets (issue 16) against
// what this run measured, for each key order. Only reads results; measures nothing.

import type { ChildResult } from './child.js'
import type { DiskLimits } from './fio.js'
import type { KeyOrder } from './workload.js'

/** The row the targets are about: ringkv opened with `open(dir)` and nothing else. */
export const ringkvDefaultLabel = 'ringkv (default)'
/** The hand-written log: no index, no library, the floor of what a durable log costs. */
export const fsLogLabel = 'node:fs log'
/** The engines a Node.js user would install; the targets compare ringkv with the best of them. */
export const libraryEngineLabels: readonly string[] = ['lmdb', 'classic-level', 'better-sqlite3']

export interface Summary {
  label: string
  order: KeyOrder
  runs: number
  failures: string[]
  /** The configuration that ran, as the engine reported it in its first good run. */
  setup: string
  puts: { concurrency: number; opsPerSecond: number; latencyUsP50: number; latencyUsP99: number }[]
  /** Medians of the load, gets and reopen phases, when this order ran them. */
  loaded?: {
    loadSeconds: number
    loadKeysPerSecond: number
    getsPerSecond: number
    getMisses: number
    reopenMs: number
    diskBytes: number
    peakRssBytes: number
  }
}

export interface TargetCheck {
  order: KeyOrder
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

export function summarise(label: string, order: KeyOrder, results: ChildResult[], concurrencies: number[]): Summary {
  const good = results.filter((result) => result.error === undefined)
  const loaded = good.flatMap((result) => (result.loaded ? [result.loaded] : []))
  return {
    label,
    order,
    runs: good.length,
    failures: results.filter((result) => result.error !== undefined).map((result) => result.error!),
    setup: good[0]?.setup ?? '',
    puts: concurrencies.map((concurrency) => {
      const at = good.map((result) => result.puts.find((put) => put.concurrency === concurrency)!)
      return {
        concurrency,
        opsPerSecond: median(at.map((put) => put.opsPerSecond)),
        latencyUsP50: median(at.map((put) => put.latencyUsP50)),
        latencyUsP99: median(at.map((put) => put.latencyUsP99)),
      }
    }),
    loaded:
      loaded.length === 0
        ? undefined
        : {
            loadSeconds: median(loaded.map((result) => result.load.seconds)),
            loadKeysPerSecond: median(loaded.map((result) => result.load.keysPerSecond)),
            getsPerSecond: median(loaded.map((result) => result.gets.opsPerSecond)),
            getMisses: loaded.reduce((sum, result) => sum + result.gets.misses + result.gets.mismatches, 0),
            reopenMs: median(loaded.map((result) => result.reopenMs)),
            diskBytes: median(loaded.map((result) => result.diskBytes)),
            peakRssBytes: median(loaded.map((result) => result.peakRssBytes)),
          },
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

function putsAt(summary: Summary, concurrency: number): Summary['puts'][number] | undefined {
  return summary.puts.find((put) => put.concurrency === concurrency)
}

/** The row with the highest `score` among `rows`, leaving out rows that did not run or did not measure it. */
function best(rows: Summary[], score: (summary: Summary) => number): Summary | undefined {
  let winner: Summary | undefined
  for (const summary of rows) {
    if (summary.runs === 0 || !Number.isFinite(score(summary))) continue
    if (winner === undefined || score(summary) > score(winner)) winner = summary
  }
  return winner
}

/**
 * ringkv's targets (issue 16), as data: each compares the default row's durable puts/s at one concurrency
 * with the best library engine's or with the node:fs log's, or its p50 at one concurrency with the best
 * peer's (every row that is not ringkv). Each key order is checked on its own: a target holds only if it
 * holds on both.
 */
export const targets: readonly {
  concurrency: number
  against: 'best engine' | 'node:fs log' | 'best peer p50'
  threshold: number
}[] = [
  { concurrency: 256, against: 'best engine', threshold: 2 },
  { concurrency: 256, against: 'node:fs log', threshold: 1.2 },
  { concurrency: 4096, against: 'best engine', threshold: 2 },
  { concurrency: 4096, against: 'node:fs log', threshold: 1.5 },
  { concurrency: 1, against: 'best peer p50', threshold: 1.25 },
]

export function checkTargets(summaries: Summary[], orders: KeyOrder[]): TargetCheck[] {
  const checks: TargetCheck[] = []
  for (const order of orders) {
    const rows = summaries.filter((summary) => summary.order === order && summary.runs > 0)
    const ringkv = rows.find((summary) => summary.label === ringkvDefaultLabel)
    for (const { concurrency, against, threshold } of targets) {
      if (against === 'best peer p50') {
        // Lower is better: the best peer is the one with the highest negated p50.
        const p50 = (summary: Summary) => putsAt(summary, concurrency)?.latencyUsP50 ?? Number.NaN
        const peer = best(
          rows.filter((summary) => !summary.label.startsWith('ringkv')),
          (summary) => -p50(summary),
        )
        const ratio = ringkv && peer ? p50(ringkv) / p50(peer) : Number.NaN
        checks.push({
          order,
          target: `c=${concurrency}: put p50 ≤ ${threshold}× the best peer's p50`,
          measured:
            ringkv && peer
              ? `${ringkv.label} ${milliseconds(p50(ringkv))} ms vs ${peer.label} ${milliseconds(p50(peer))} ms`
              : 'not measured',
          ratio,
          threshold,
          atMost: true,
          met: Number.isFinite(ratio) ? ratio <= threshold : null,
        })
        continue
      }
      const puts = (summary: Summary) => putsAt(summary, concurrency)?.opsPerSecond ?? Number.NaN
      const other =
        against === 'best engine'
          ? best(
              rows.filter((summary) => libraryEngineLabels.includes(summary.label)),
              puts,
            )
          : rows.find((summary) => summary.label === fsLogLabel)
      const ratio = ringkv && other ? puts(ringkv) / puts(other) : Number.NaN
      checks.push({
        order,
        target:
          against === 'best engine'
            ? `c=${concurrency}: durable puts/s ≥ ${threshold}× the best engine's (${libraryEngineLabels.join(', ')})`
            : `c=${concurrency}: durable puts/s ≥ ${threshold}× the node:fs log's`,
        measured: ringkv && other ? `${ringkv.label} ${count(puts(ringkv))}/s vs ${other.label} ${count(puts(other))}/s` : 'not measured',
        ratio,
        threshold,
        atMost: false,
        met: Number.isFinite(ratio) ? ratio >= threshold : null,
      })
    }
  }
  return checks
}

/** One line: how many targets this run met in every key order it measured (a target holds only if it holds in each). */
function targetsInEveryOrder(checks: TargetCheck[], orders: KeyOrder[]): string {
  const byTarget = new Map<string, TargetCheck[]>()
  for (const check of checks) byTarget.set(check.target, [...(byTarget.get(check.target) ?? []), check])
  const met = [...byTarget.values()].filter((group) => group.length === orders.length && group.every((check) => check.met === true))
  return `Met in every key order measured (${orders.join(', ')}): ${met.length} of ${byTarget.size} targets.`
}

export interface ReportContext {
  summaries: Summary[]
  disk: DiskLimits
  targets: TargetCheck[]
  orders: KeyOrder[]
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
  const rounds = `median of ${context.rounds} round${context.rounds === 1 ? '' : 's'}`
  const header = ['engine', ...concurrencies.map((concurrency) => `c=${concurrency}`)]

  for (const order of context.orders) {
    const rows = summaries.filter((summary) => summary.order === order)
    sections.push(
      `### Durable puts/s, ${order} keys (${rounds}; c = concurrent clients, each awaiting its own put)\n\n` +
        table(
          header,
          rows.map((summary) => [
            summary.label,
            ...concurrencies.map((concurrency) => count(putsAt(summary, concurrency)?.opsPerSecond ?? Number.NaN)),
          ]),
        ),
    )
    sections.push(
      `### Put latency, p50 / p99 (ms), ${order} keys\n\n` +
        table(
          header,
          rows.map((summary) => [
            summary.label,
            ...concurrencies.map((concurrency) => {
              const put = putsAt(summary, concurrency)
              return put ? `${milliseconds(put.latencyUsP50)} / ${milliseconds(put.latencyUsP99)}` : '—'
            }),
          ]),
        ),
    )
  }

  for (const order of context.orders) {
    const rows = summaries.filter((summary) => summary.order === order && summary.loaded !== undefined)
    if (rows.length === 0) continue
    sections.push(
      `### Load (${count(context.loadKeys)} ${order} keys in batches of ${count(context.loadBatch)}), reads, footprint\n\n` +
        table(
          ['engine', 'load s', 'load keys/s', `random gets/s (c=${context.getConcurrency})`, 'peak RSS MiB', 'on disk MiB', 'reopen ms'],
          rows.map(({ label, loaded }) => [
            label,
            loaded!.loadSeconds.toFixed(2),
            count(loaded!.loadKeysPerSecond),
            count(loaded!.getsPerSecond) + (loaded!.getMisses > 0 ? ` (${loaded!.getMisses} wrong)` : ''),
            mebibytes(loaded!.peakRssBytes),
            mebibytes(loaded!.diskBytes),
            Number.isFinite(loaded!.reopenMs) ? loaded!.reopenMs.toFixed(0) : '—',
          ]),
        ),
    )
  }

  // One line per row: what ran, as the engine itself reported it (the same for every key order).
  const setups = new Map<string, string>()
  for (const summary of summaries) if (summary.setup !== '' && !setups.has(summary.label)) setups.set(summary.label, summary.setup)
  if (setups.size > 0) {
    sections.push('### What ran\n\n' + [...setups].map(([label, setup]) => `- ${label}: ${setup}`).join('\n'))
  }

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
    `### ringkv's targets in this run (${ringkvDefaultLabel} against its peers, for each key order)\n\n` +
      table(
        ['keys', 'target', 'measured', 'ratio', 'met'],
        context.targets.map((check) => [
          check.order,
          check.target,
          check.measured,
          Number.isFinite(check.ratio) ? `${check.ratio.toFixed(2)}× (needs ${check.atMost ? '≤' : '≥'} ${check.threshold}×)` : '—',
          check.met === null ? 'not measured' : check.met ? 'met' : '**not met**',
        ]),
      ) +
      `\n\n${targetsInEveryOrder(context.targets, context.orders)}`,
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
