// How ringkv's durable write throughput scales with shards, and with client threads and cores.
//
//   node scaling.js                 both parts below, about 90 s
//   node scaling.js --quick         the same points, a fraction of a second each (for tests)
//   RINGKV_SCALING_QUICK=1 node scaling.js
//   node scaling.js --svg out.svg   write the chart somewhere else (default: scaling.svg beside this file)
//
// Part 1, shards: 1, 2, 4 … shards (up to twice the CPU count) × both backends, CONCURRENCY clients on the
// thread that opened the database.
// Part 2, client threads × cores: the database with its default options, THREAD_CONCURRENCY clients spread
// over 1, 2, 4 … client threads (up to twice the CPU count; each a worker thread with a handle made by
// share()/attach(), the opening thread only waits), the whole process pinned with `taskset` to one core,
// then to all of them. Each point of part 2 runs in a child process of its own (this script with --point),
// so that the pinning covers every thread it starts. Without taskset, the one-core points are skipped.
//
// For every point: a fresh database in a temp directory, logical clients that each await their own put (a
// new 16-byte key, a 100-byte random value) and then issue the next, a short warm-up, then a measured
// window. Every put counted here resolved only after its fdatasync.
// Prints tables on stdout, a progress bar on stderr, and writes an SVG chart of both parts.

import { execFileSync, spawnSync } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { attach, open, shardsDefault } from '@ringkv/engine'

const quick = process.argv.includes('--quick') || process.env.RINGKV_SCALING_QUICK === '1'
const svgFlag = process.argv.indexOf('--svg')
const svgPath = svgFlag >= 0 ? process.argv[svgFlag + 1] : fileURLToPath(new URL('./scaling.svg', import.meta.url))
if (svgPath === undefined) throw new RangeError('--svg needs a path')

const CONCURRENCY = quick ? 64 : 1024
// Part 2 offers more load than part 1: at 1,024 clients this machine's throughput is bound by the disk's
// flush time (every client waits a whole batch: about 1,024 puts per 4–7 ms flush), not by the CPU, so
// cores could not show. From about 16,384 clients it is bound by the CPU.
const THREAD_CONCURRENCY = quick ? 256 : 16384
const WARMUP_MS = quick ? 50 : 1000
const MEASURE_MS = quick ? 250 : 5000
const BACKENDS = ['io_uring', 'fs']
const cores = os.availableParallelism()

/** 1, 2, 4 … up to twice the core count, and twice the core count itself if it is not a power of two. */
function shardCounts() {
  const counts = []
  for (let shards = 1; shards <= 2 * cores; shards *= 2) counts.push(shards)
  if (counts.at(-1) !== 2 * cores) counts.push(2 * cores)
  return counts
}

// ---- workload ---------------------------------------------------------------------------------------

const valuePool = randomFillSync(Buffer.allocUnsafe(8 * 1024 * 1024))
let nextKey = 0

/** A key never used before: 4 bytes of hash (to spread keys over the shards), 8 zero bytes, 4 of sequence. */
function keyFor(sequence) {
  const key = Buffer.alloc(16)
  key.writeUInt32BE(Math.imul(sequence, 0x9e3779b1) >>> 0, 0)
  key.writeUInt32BE(sequence >>> 0, 12)
  return key
}

function valueFor(sequence) {
  const offset = (Math.imul(sequence, 104_729) >>> 0) % (valuePool.length - 100)
  return valuePool.subarray(offset, offset + 100)
}

/** Latencies in log-spaced buckets 1% wide, so a million puts cost a few kilobytes. */
class Histogram {
  counts = new Float64Array(2400)
  total = 0
  record(us) {
    const bucket = us <= 0.1 ? 0 : Math.min(2399, Math.ceil(Math.log(us / 0.1) / Math.log(1.01)))
    this.counts[bucket]++
    this.total++
  }
  percentile(fraction) {
    let seen = 0
    const rank = Math.max(1, Math.ceil(fraction * this.total))
    for (let bucket = 0; bucket < this.counts.length; bucket++) {
      seen += this.counts[bucket]
      if (seen >= rank) return 0.1 * 1.01 ** bucket
    }
    return Number.NaN
  }
}

/**
 * `clients` closed-loop clients of `db` until `measureEnd` (times on the shared clock: epochNow()); counts the
 * puts that completed inside [measureStart, measureEnd] and records the latency of those started in it.
 */
async function drive(db, clients, firstKey, measureStart, measureEnd, histogram) {
  let completed = 0
  nextKey = firstKey
  const client = async () => {
    for (let start = epochNow(); start < measureEnd; start = epochNow()) {
      const sequence = nextKey++
      await db.put(keyFor(sequence), valueFor(sequence))
      const end = epochNow()
      if (end >= measureStart && end <= measureEnd) completed++
      if (start >= measureStart) histogram.record((end - start) * 1000)
    }
  }
  await Promise.all(Array.from({ length: clients }, client))
  return completed
}

/** A point's figures: puts/s over the measured window, and latency percentiles in ms. */
function rates(completed, histogram) {
  return {
    putsPerSecond: completed / (MEASURE_MS / 1000),
    p50Ms: histogram.percentile(0.5) / 1000,
    p99Ms: histogram.percentile(0.99) / 1000,
  }
}

/** Milliseconds on a clock every thread shares (performance.now() starts anew in each thread). */
function epochNow() {
  return performance.timeOrigin + performance.now()
}

async function measure(shards, backend) {
  const directory = await mkdtemp(join(os.tmpdir(), 'ringkv-scaling-'))
  try {
    const db = await open(directory, { shards, backend })
    const histogram = new Histogram()
    const measureStart = epochNow() + WARMUP_MS
    const measureEnd = measureStart + MEASURE_MS
    const completed = await drive(db, CONCURRENCY, 0, measureStart, measureEnd, histogram)
    const stats = db.stats().shards
    await db.close()
    return { shards, backend, ...rates(completed, histogram), backendsUsed: [...new Set(stats.map((shard) => shard.backend))].join('+') }
  } finally {
    await rm(directory, { recursive: true, force: true })
  }
}

// ---- progress on stderr -----------------------------------------------------------------------------

function progress(total) {
  const started = performance.now()
  const perPointMs = WARMUP_MS + MEASURE_MS
  let done = 0
  let label = ''
  let pointStart = started
  const draw = () => {
    if (!process.stderr.isTTY) return
    const fraction = Math.min(
      1,
      (done * perPointMs + Math.min(perPointMs, Math.max(0, performance.now() - pointStart))) / (total * perPointMs),
    )
    const width = 30
    const filled = Math.round(fraction * width)
    const seconds = ((performance.now() - started) / 1000).toFixed(0)
    process.stderr.write(
      `\r[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}%  ${label.padEnd(24)} ${seconds}s `,
    )
  }
  const timer = setInterval(draw, 100)
  return {
    start(text) {
      label = text
      pointStart = performance.now()
      draw()
    },
    finish(text) {
      done++
      pointStart = Number.POSITIVE_INFINITY // nothing of the next point has run until start()
      if (!process.stderr.isTTY) process.stderr.write(`[${done}/${total}] ${text}\n`)
      draw()
    },
    stop() {
      clearInterval(timer)
      if (process.stderr.isTTY) process.stderr.write('\n')
    },
  }
}

// ---- output -----------------------------------------------------------------------------------------

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })
const ms = (value) => (Number.isFinite(value) ? String(Number(value.toPrecision(3))) : '—')

function table(results) {
  const lines = ['| backend | shards | durable puts/s | p50 ms | p99 ms |', '|---|---:|---:|---:|---:|']
  for (const result of results) {
    const backend = result.backendsUsed === result.backend ? result.backend : `${result.backend} (ran ${result.backendsUsed})`
    const shards = result.shards === shardsDefault() ? `${result.shards} (default)` : String(result.shards)
    lines.push(`| ${backend} | ${shards} | ${integer.format(result.putsPerSecond)} | ${ms(result.p50Ms)} | ${ms(result.p99Ms)} |`)
  }
  return lines.join('\n')
}

/** Round up to 1, 2 or 5 × a power of ten, for the y axis. */
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value))
  return [1, 2, 2.5, 5, 10].map((step) => step * power).find((candidate) => candidate >= value)
}

function shortCount(value) {
  if (value >= 1e6) return `${Number((value / 1e6).toPrecision(3))}M`
  if (value >= 1e3) return `${Number((value / 1e3).toPrecision(3))}k`
  return String(Math.round(value))
}

function escapeXml(text) {
  return text.replace(/[<>&"]/g, (character) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[character])
}

/**
 * One chart: a line per series over the x values `xs` (evenly spaced), dashed vertical marks, a legend.
 * Returns an SVG group `height` tall, to stack with others (svgOf).
 */
function panel({ title, subtitles, xLabel, xs, series, marks }) {
  const width = 720
  const height = 440
  const left = 80
  const right = 30
  const top = 88
  const bottom = 60
  const inset = 40 // keeps the first and last points and their labels off the plot's edges
  const plotWidth = width - left - right
  const plotHeight = height - top - bottom
  const values = series.flatMap((line) => line.points.map((point) => point.y))
  const yMax = niceCeiling(Math.max(1, ...values) * 1.25)
  const x = (value) => left + (xs.length === 1 ? plotWidth / 2 : inset + (xs.indexOf(value) / (xs.length - 1)) * (plotWidth - 2 * inset))
  const y = (value) => top + plotHeight - (value / yMax) * plotHeight
  const parts = []
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  parts.push(`<text x="${left}" y="28" font-size="18" font-weight="600" fill="#111827">${escapeXml(title)}</text>`)
  subtitles.forEach((subtitle, index) => {
    parts.push(`<text x="${left}" y="${50 + index * 17}" font-size="12" fill="#4b5563">${escapeXml(subtitle)}</text>`)
  })
  for (let tick = 0; tick <= 5; tick++) {
    const value = (yMax / 5) * tick
    parts.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${y(value)}" y2="${y(value)}" stroke="#e5e7eb"/>`)
    parts.push(`<text x="${left - 10}" y="${y(value) + 4}" font-size="12" text-anchor="end" fill="#374151">${shortCount(value)}</text>`)
  }
  for (const value of xs) {
    parts.push(`<text x="${x(value)}" y="${top + plotHeight + 20}" font-size="12" text-anchor="middle" fill="#374151">${value}</text>`)
  }
  // Dashed lines, labelled at the foot of the plot, clear of the legend.
  marks.forEach(([value, label], index) => {
    if (!xs.includes(value)) return
    parts.push(`<line x1="${x(value)}" x2="${x(value)}" y1="${top}" y2="${top + plotHeight}" stroke="#9ca3af" stroke-dasharray="4 4"/>`)
    parts.push(`<text x="${x(value) + 6}" y="${top + plotHeight - 8 - index * 14}" font-size="11" fill="#6b7280">${label}</text>`)
  })
  parts.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${top + plotHeight}" y2="${top + plotHeight}" stroke="#6b7280"/>`)
  parts.push(
    `<text x="${left + plotWidth / 2}" y="${height - 15}" font-size="13" text-anchor="middle" fill="#111827">${escapeXml(xLabel)}</text>`,
  )
  parts.push(
    `<text transform="translate(20 ${top + plotHeight / 2}) rotate(-90)" font-size="13" text-anchor="middle" fill="#111827">durable puts/s</text>`,
  )
  series.forEach((line, index) => {
    if (line.points.length === 0) return
    const path = line.points.map((point) => `${x(point.x).toFixed(1)},${y(point.y).toFixed(1)}`).join(' ')
    parts.push(`<polyline points="${path}" fill="none" stroke="${line.color}" stroke-width="2.5"/>`)
    for (const point of line.points) {
      const cx = x(point.x).toFixed(1)
      const cy = y(point.y).toFixed(1)
      parts.push(`<circle cx="${cx}" cy="${cy}" r="4" fill="${line.color}"><title>${escapeXml(point.title)}</title></circle>`)
      // The label goes above the point when this line is the higher one here, below when it is the lower.
      const others = series.filter((other) => other !== line).flatMap((other) => other.points.filter((at) => at.x === point.x))
      const above = others.every((other) => point.y >= other.y)
      parts.push(
        `<text x="${cx}" y="${Number(cy) + (above ? -10 : 19)}" font-size="11" text-anchor="middle" fill="${line.color}">${shortCount(point.y)}</text>`,
      )
    }
    const legendY = top + 8 + index * 18
    parts.push(`<line x1="${left + 14}" x2="${left + 38}" y1="${legendY}" y2="${legendY}" stroke="${line.color}" stroke-width="2.5"/>`)
    parts.push(`<text x="${left + 44}" y="${legendY + 4}" font-size="12" fill="#111827">${escapeXml(line.label)}</text>`)
  })
  return { width, height, body: parts.join('\n') }
}

/** Panels stacked top to bottom, as one SVG document. */
function svgOf(panels) {
  const width = Math.max(...panels.map((one) => one.width))
  const height = panels.reduce((sum, one) => sum + one.height, 0)
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif">`,
  ]
  let offset = 0
  for (const one of panels) {
    parts.push(`<g transform="translate(0 ${offset})">`, one.body, '</g>')
    offset += one.height
  }
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}

const platform = `${cores} cores · ${os.type()} ${os.release()} · Node.js ${process.version} · ${MEASURE_MS / 1000} s per point`

function shardsPanel(results, counts) {
  const colors = { io_uring: '#2563eb', fs: '#ea580c' }
  const labels = { io_uring: 'io_uring (linked write → fdatasync)', fs: 'fs (libuv write + fdatasync)' }
  return panel({
    title: 'ringkv: durable puts/s by shard count',
    subtitles: [`${CONCURRENCY} concurrent clients · 16-byte keys, 100-byte values · every put acknowledged after its fdatasync`, platform],
    xLabel: 'shards (one worker thread and its two logs each)',
    xs: counts,
    series: BACKENDS.map((backend) => ({
      label: labels[backend],
      color: colors[backend],
      points: results
        .filter((result) => result.backend === backend)
        .map((result) => ({
          x: result.shards,
          y: result.putsPerSecond,
          title: `${backend}, ${result.shards} shards: ${integer.format(result.putsPerSecond)} puts/s, p50 ${ms(result.p50Ms)} ms, p99 ${ms(result.p99Ms)} ms`,
        })),
    })),
    marks: [
      [cores, 'cores'],
      [shardsDefault(), 'default'],
    ],
  })
}

function threadsPanel(results, threadCounts) {
  const colors = ['#7c3aed', '#059669']
  return panel({
    title: 'ringkv: durable puts/s by client threads, on one core and on all',
    subtitles: [
      `${THREAD_CONCURRENCY} clients spread over the client threads · default options (${shardsDefault()} shard${shardsDefault() === 1 ? '' : 's'}) · whole process pinned with taskset`,
      platform,
    ],
    xLabel: 'client threads (each with a handle: share() / attach())',
    xs: threadCounts,
    series: coreSets().map((set, index) => ({
      label: set.label,
      color: colors[index % colors.length],
      points: results
        .filter((result) => result.cores === set.count)
        .map((result) => ({
          x: result.threads,
          y: result.putsPerSecond,
          title: `${set.label}, ${result.threads} client threads: ${integer.format(result.putsPerSecond)} puts/s, p50 ${ms(result.p50Ms)} ms, p99 ${ms(result.p99Ms)} ms`,
        })),
    })),
    marks: [[cores, 'cores']],
  })
}

// ---- part 2: client threads × cores --------------------------------------------------------------------

/** The core sets part 2 pins the process to: the first core, then all of them. */
function coreSets() {
  return [
    { count: 1, cpus: '0', label: '1 core' },
    { count: cores, cpus: `0-${cores - 1}`, label: `${cores} cores` },
  ]
}

/** One point of part 2, in this process: the default database, THREAD_CONCURRENCY clients over `threads` worker threads. */
async function measureThreads(threads) {
  const directory = await mkdtemp(join(os.tmpdir(), 'ringkv-scaling-threads-'))
  try {
    const db = await open(directory)
    const workers = Array.from({ length: threads }, (_, index) => {
      const share = db.share()
      const clients = Math.floor(THREAD_CONCURRENCY / threads) + (index < THREAD_CONCURRENCY % threads ? 1 : 0)
      return new Worker(new URL(import.meta.url), {
        workerData: { share, clients, firstKey: (index + 1) * 100_000_000 },
        transferList: share.transferList,
      })
    })
    const next = (worker) =>
      new Promise((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
      })
    // Every thread has started (module loading, attach) before the warm-up begins.
    await Promise.all(workers.map(next))
    const measureStart = epochNow() + WARMUP_MS
    const measureEnd = measureStart + MEASURE_MS
    const answers = workers.map(next)
    for (const worker of workers) worker.postMessage({ measureStart, measureEnd })
    const histogram = new Histogram()
    let completed = 0
    for (const answer of await Promise.all(answers)) {
      completed += answer.completed
      for (let bucket = 0; bucket < histogram.counts.length; bucket++) histogram.counts[bucket] += answer.counts[bucket]
      histogram.total += answer.total
    }
    const shards = db.shards
    await db.close()
    return { threads, shards, ...rates(completed, histogram) }
  } finally {
    await rm(directory, { recursive: true, force: true })
  }
}

/** A client thread of part 2: its share of the clients, through a handle. */
async function clientThread() {
  const db = attach(workerData.share)
  const histogram = new Histogram()
  const started = new Promise((resolve) => parentPort.once('message', resolve))
  parentPort.postMessage('ready')
  const { measureStart, measureEnd } = await started
  const completed = await drive(db, workerData.clients, workerData.firstKey, measureStart, measureEnd, histogram)
  await db.close()
  parentPort.postMessage({ completed, counts: histogram.counts, total: histogram.total })
}

/** Whether `taskset` can pin a process here, and why not. */
function tasksetProblem() {
  try {
    execFileSync('taskset', ['-c', '0', process.execPath, '-e', '0'], { stdio: 'ignore' })
    return undefined
  } catch (error) {
    return `taskset -c 0 failed (${error.code ?? error.message}): the one-core points need util-linux's taskset`
  }
}

/** Runs one point of part 2 in a child process pinned to `set`. */
function pinnedPoint(set, threads, pin) {
  const script = fileURLToPath(import.meta.url)
  const command = pin ? 'taskset' : process.execPath
  const args = [...(pin ? ['-c', set.cpus, process.execPath] : []), script, '--point', String(threads), ...(quick ? ['--quick'] : [])]
  const child = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 120_000 })
  if (child.status !== 0)
    throw new Error(`the point ${set.label} × ${threads} threads failed: ${child.error?.message ?? `exit ${child.status}`}`)
  return { ...JSON.parse(child.stdout.trim().split('\n').at(-1)), cores: set.count, label: set.label }
}

function threadsTable(results) {
  const lines = ['| cores | client threads | shards | durable puts/s | p50 ms | p99 ms |', '|---:|---:|---:|---:|---:|---:|']
  for (const result of results) {
    lines.push(
      `| ${result.cores} | ${result.threads} | ${result.shards} | ${integer.format(result.putsPerSecond)} | ${ms(result.p50Ms)} | ${ms(result.p99Ms)} |`,
    )
  }
  return lines.join('\n')
}

// ---- main -------------------------------------------------------------------------------------------

async function main() {
  const counts = shardCounts()
  const threadCounts = counts // 1, 2, 4 … client threads, up to twice the core count
  const problem = tasksetProblem()
  const sets = coreSets().filter((set) => problem === undefined || set.count === cores)
  const plan = [
    ...BACKENDS.flatMap((backend) => counts.map((shards) => ({ backend, shards }))),
    ...sets.flatMap((set) => threadCounts.map((threads) => ({ set, threads }))),
  ]
  const bar = progress(plan.length)
  const results = []
  const threadResults = []
  const skipped = new Map()
  for (const point of plan) {
    if (point.set !== undefined) {
      const { set, threads } = point
      bar.start(`${set.label}, ${threads} thread${threads === 1 ? '' : 's'}`)
      const result = pinnedPoint(set, threads, problem === undefined)
      threadResults.push(result)
      bar.finish(`${set.label} ×${threads} threads: ${integer.format(result.putsPerSecond)} puts/s`)
      continue
    }
    const { backend, shards } = point
    if (skipped.has(backend)) {
      bar.finish(`${backend} ×${shards}: skipped`)
      continue
    }
    bar.start(`${backend}, ${shards} shard${shards === 1 ? '' : 's'}`)
    try {
      const result = await measure(shards, backend)
      results.push(result)
      bar.finish(`${backend} ×${shards}: ${integer.format(result.putsPerSecond)} puts/s`)
    } catch (error) {
      if (error?.code !== 'BACKEND_UNAVAILABLE') {
        bar.stop()
        throw error
      }
      skipped.set(backend, error.message)
      bar.finish(`${backend} ×${shards}: skipped`)
    }
  }
  bar.stop()

  console.log(
    `Durable puts at concurrency ${CONCURRENCY}, ${MEASURE_MS / 1000} s per point after ${WARMUP_MS} ms of warm-up (${cores} cores):\n`,
  )
  console.log(table(results))
  for (const [backend, reason] of skipped) console.log(`\n${backend} skipped: ${reason}`)

  console.log(`\nClient threads × cores: ${THREAD_CONCURRENCY} clients over the client threads, default options:\n`)
  console.log(threadsTable(threadResults))
  if (problem !== undefined) console.log(`\none core skipped: ${problem}`)
  else {
    const at = (count, threads) => threadResults.find((result) => result.cores === count && result.threads === threads).putsPerSecond
    const best = (count) => Math.max(...threadCounts.map((threads) => at(count, threads)))
    const each = threadCounts.map((threads) => `${threads}: ${(at(cores, threads) / at(1, threads)).toFixed(2)}x`).join(', ')
    console.log(`\n${cores} cores / 1 core: best thread count of each ${(best(cores) / best(1)).toFixed(2)}x; by client threads ${each}`)
  }
  await writeFile(svgPath, svgOf([shardsPanel(results, counts), threadsPanel(threadResults, threadCounts)]))
  console.log(`\nChart: ${svgPath}`)
}

const pointFlag = process.argv.indexOf('--point')
if (!isMainThread) await clientThread()
else if (pointFlag >= 0) console.log(JSON.stringify(await measureThreads(Number(process.argv[pointFlag + 1]))))
else await main()
