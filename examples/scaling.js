// How ringkv's durable write throughput scales with shards.
//
//   node scaling.js                 1, 2, 4 … shards (up to twice the CPU count) × both backends, about 45 s
//   node scaling.js --quick         the same points, a fraction of a second each (for tests)
//   RINGKV_SCALING_QUICK=1 node scaling.js
//   node scaling.js --svg out.svg   write the chart somewhere else (default: scaling.svg beside this file)
//
// For every point: a fresh database in a temp directory, CONCURRENCY logical clients that each await
// their own put (a new 16-byte key, a 100-byte random value) and then issue the next, a short warm-up,
// then a measured window. Every put counted here resolved only after its fdatasync.
// Prints a table on stdout, a progress bar on stderr, and writes an SVG chart of puts/s against shards.

import { randomFillSync } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { open, shardsDefault } from '@ringkv/engine'

const quick = process.argv.includes('--quick') || process.env.RINGKV_SCALING_QUICK === '1'
const svgFlag = process.argv.indexOf('--svg')
const svgPath = svgFlag >= 0 ? process.argv[svgFlag + 1] : fileURLToPath(new URL('./scaling.svg', import.meta.url))
if (svgPath === undefined) throw new RangeError('--svg needs a path')

const CONCURRENCY = quick ? 64 : 1024
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

async function measure(shards, backend) {
  const directory = await mkdtemp(join(os.tmpdir(), 'ringkv-scaling-'))
  try {
    const db = await open(directory, { shards, backend })
    const histogram = new Histogram()
    const measureStart = performance.now() + WARMUP_MS
    const measureEnd = measureStart + MEASURE_MS
    let completed = 0
    const client = async () => {
      for (let start = performance.now(); start < measureEnd; start = performance.now()) {
        const sequence = nextKey++
        await db.put(keyFor(sequence), valueFor(sequence))
        const end = performance.now()
        if (end >= measureStart && end <= measureEnd) completed++
        if (start >= measureStart) histogram.record((end - start) * 1000)
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, client))
    const stats = db.stats().shards
    await db.close()
    return {
      shards,
      backend,
      putsPerSecond: completed / (MEASURE_MS / 1000),
      p50Ms: histogram.percentile(0.5) / 1000,
      p99Ms: histogram.percentile(0.99) / 1000,
      backendsUsed: [...new Set(stats.map((shard) => shard.backend))].join('+'),
    }
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

function chart(results, counts) {
  const width = 720
  const height = 440
  const left = 80
  const right = 30
  const top = 88
  const bottom = 60
  const inset = 40 // keeps the first and last points and their labels off the plot's edges
  const plotWidth = width - left - right
  const plotHeight = height - top - bottom
  const yMax = niceCeiling(Math.max(1, ...results.map((result) => result.putsPerSecond)) * 1.25)
  const x = (shards) =>
    left + (counts.length === 1 ? plotWidth / 2 : inset + (counts.indexOf(shards) / (counts.length - 1)) * (plotWidth - 2 * inset))
  const y = (value) => top + plotHeight - (value / yMax) * plotHeight
  const colors = { io_uring: '#2563eb', fs: '#ea580c' }
  const parts = []
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif">`,
  )
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  parts.push(`<text x="${left}" y="28" font-size="18" font-weight="600" fill="#111827">ringkv: durable puts/s by shard count</text>`)
  const subtitles = [
    `${CONCURRENCY} concurrent clients · 16-byte keys, 100-byte values · every put acknowledged after its fdatasync`,
    `${cores} cores · ${os.type()} ${os.release()} · Node.js ${process.version} · ${MEASURE_MS / 1000} s per point`,
  ]
  subtitles.forEach((subtitle, index) => {
    parts.push(`<text x="${left}" y="${50 + index * 17}" font-size="12" fill="#4b5563">${escapeXml(subtitle)}</text>`)
  })
  for (let tick = 0; tick <= 5; tick++) {
    const value = (yMax / 5) * tick
    parts.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${y(value)}" y2="${y(value)}" stroke="#e5e7eb"/>`)
    parts.push(`<text x="${left - 10}" y="${y(value) + 4}" font-size="12" text-anchor="end" fill="#374151">${shortCount(value)}</text>`)
  }
  for (const shards of counts) {
    parts.push(`<text x="${x(shards)}" y="${top + plotHeight + 20}" font-size="12" text-anchor="middle" fill="#374151">${shards}</text>`)
  }
  // Dashed lines: the core count, and the shard count a new directory gets when `shards` is not given;
  // labelled at the foot of the plot, clear of the legend.
  const marks = [
    [cores, 'cores'],
    [shardsDefault(), 'default'],
  ]
  marks.forEach(([shards, label], index) => {
    if (!counts.includes(shards)) return
    parts.push(`<line x1="${x(shards)}" x2="${x(shards)}" y1="${top}" y2="${top + plotHeight}" stroke="#9ca3af" stroke-dasharray="4 4"/>`)
    parts.push(`<text x="${x(shards) + 6}" y="${top + plotHeight - 8 - index * 14}" font-size="11" fill="#6b7280">${label}</text>`)
  })
  parts.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${top + plotHeight}" y2="${top + plotHeight}" stroke="#6b7280"/>`)
  parts.push(
    `<text x="${left + plotWidth / 2}" y="${height - 15}" font-size="13" text-anchor="middle" fill="#111827">shards (one worker thread and its two logs each)</text>`,
  )
  parts.push(
    `<text transform="translate(20 ${top + plotHeight / 2}) rotate(-90)" font-size="13" text-anchor="middle" fill="#111827">durable puts/s</text>`,
  )
  BACKENDS.forEach((backend, index) => {
    const points = results.filter((result) => result.backend === backend)
    if (points.length === 0) return
    const color = colors[backend]
    const path = points.map((point) => `${x(point.shards).toFixed(1)},${y(point.putsPerSecond).toFixed(1)}`).join(' ')
    parts.push(`<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2.5"/>`)
    for (const point of points) {
      const cx = x(point.shards).toFixed(1)
      const cy = y(point.putsPerSecond).toFixed(1)
      parts.push(
        `<circle cx="${cx}" cy="${cy}" r="4" fill="${color}"><title>${backend}, ${point.shards} shards: ${integer.format(point.putsPerSecond)} puts/s, p50 ${ms(point.p50Ms)} ms, p99 ${ms(point.p99Ms)} ms</title></circle>`,
      )
      // The label goes above the point when this line is the higher one here, below when it is the lower.
      const other = results.find((result) => result.backend !== backend && result.shards === point.shards)
      const above = other === undefined || point.putsPerSecond >= other.putsPerSecond
      parts.push(
        `<text x="${cx}" y="${Number(cy) + (above ? -10 : 19)}" font-size="11" text-anchor="middle" fill="${color}">${shortCount(point.putsPerSecond)}</text>`,
      )
    }
    const legendY = top + 8 + index * 18
    parts.push(`<line x1="${left + 14}" x2="${left + 38}" y1="${legendY}" y2="${legendY}" stroke="${color}" stroke-width="2.5"/>`)
    parts.push(
      `<text x="${left + 44}" y="${legendY + 4}" font-size="12" fill="#111827">${backend === 'fs' ? 'fs (libuv write + fdatasync)' : 'io_uring (linked write → fdatasync)'}</text>`,
    )
  })
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}

// ---- main -------------------------------------------------------------------------------------------

const counts = shardCounts()
const plan = BACKENDS.flatMap((backend) => counts.map((shards) => ({ backend, shards })))
const bar = progress(plan.length)
const results = []
const skipped = new Map()
for (const { backend, shards } of plan) {
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
await writeFile(svgPath, chart(results, counts))
console.log(`\nChart: ${svgPath}`)
