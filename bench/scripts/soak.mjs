// A soak: a fixed key set overwritten at random for a fixed time, with and without checkpoints (issue 15's
// proof). It shows whether disk stays bounded, what checkpoints cost the writers, and what a reopen takes.
//   node bench/scripts/soak.mjs                                   10,000 keys of 16 B / 100 B, c=256, 2 shards, 60 s, auto
//   node bench/scripts/soak.mjs --checkpoints off                 today's behaviour: no checkpoint, the log only grows
//   node bench/scripts/soak.mjs --checkpoints compact-loop        db.compact() awaited back to back while the writers run
//   node bench/scripts/soak.mjs --rounds 6 --modes off,auto --seconds 20
//                                                                 paired rounds, each run in a fresh directory and process
//   node bench/scripts/soak.mjs --keys 1000000 --seconds 600 --json
// Options: --keys --key-bytes --value-bytes --concurrency --shards --seconds --sample-seconds --segment-bytes
// --log-bytes --live-ratio (passed to open()'s segmentBytes and autoCheckpoint), --no-preload, --dir (where the
// database directories are made; default the system's temporary directory), --keep (leave them there), --json.
//
// One run: open a fresh directory; unless --no-preload, write every key once; then for --seconds,
// `concurrency` closed-loop clients each await db.put(random key, a new value) in turn. Keys are the key's
// index, zero-padded decimal; a value carries the number of the write that made it. Every put's latency
// (performance.now() around the await) goes into log-linear histograms (8 buckets per power of two: a
// percentile is the middle of its bucket, within ±6.25%; a max is exact): one per sample, one per 100 ms
// slice of the run, one overall. Every --sample-seconds a row: puts/s, the sample's put latency p50/p99/max,
// the directory's bytes on disk (every file's size) and the engine's own figure (logDiskBytes +
// checkpointDiskBytes), live bytes, disk/live, the allowance used (below), RSS (the whole process: the shards'
// worker threads too), and the checkpoints made.
// When checkpoints ran: stats() is polled every 25 ms, and a checkpoint seen completed at t with duration d
// ran in [t - d, t] (db.compact()'s own calls in compact-loop mode); the 100 ms slices that overlap such a
// window are "during a checkpoint", the others "without", and the summary gives both latency figures, the
// worst single put, and the longest the checkpoints held a shard's thread at once (lastCheckpoint.stepMsMax).
// Live bytes are the keys written so far x (16 + key + value): what stats()'s liveBytes says once it is
// refreshed (every 256 batches, and after each checkpoint). The bound checked is the README's ("Checkpoints
// and disk space"): (2 + liveRatio) x live (the current checkpoint and the one replacing it) plus, per shard, an
// allowance: the segment holding the previous checkpoint's point (segmentBytes), the log up to the threshold
// (logBytes; segmentBytes in compact-loop), the rest of the segment written (a whole one when it is a reused
// segment) and the next one prepared (a whole segment, or the zero-filled space ahead: together at most
// segmentBytes + min(1 MiB, segmentBytes)), the retired segment kept for reuse (segmentBytes), three
// completion segments (the same three roles), and twice the log written
// while the longest checkpoint seen ran (the run's peak puts/s per shard x record bytes x that duration; twice,
// for compact-loop, whose previous point is one checkpoint older). "allowance used" per sample is
// (disk - (2 + liveRatio) x live) / shards.
// At the end: close, reopen (the wall time of open(), and recovery per shard), and read back every key (at
// most 100,000 of them, at random past that): each must hold the last value acknowledged for it, else the run
// exits 1. In --rounds mode each run is a child process (this script with --json), the modes alternate
// order round by round, and the B/A ratios are taken round by round against the first mode.
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { open } from '@ringkv/engine'

/** open()'s segmentBytes when none is given (segmentBytesDefault in @ringkv/workers). */
const engineSegmentBytesDefault = 64 * 1024 * 1024
const modesKnown = ['auto', 'off', 'compact-loop']
const sliceMs = 100
const statsPollMs = 25
/** Keys read back after the reopen, at most. */
const checkKeysMax = 100_000
/** Bytes of a value that hold the number of the write that made it (a 48-bit integer). */
const counterBytes = 6
/**
 * How a shard lays out its logs (shard.ts, format/): the zero-fill step ahead, the retired segments kept for
 * reuse per log, a completion record, a record's header.
 */
const intentFillStepBytesMax = 1024 * 1024
const segmentsReusedMax = 1
const completionRecordBytes = 64
const recordHeaderBytes = 16

const { values: given } = parseArgs({
  allowNegative: true,
  options: {
    keys: { type: 'string', default: '10000' },
    'key-bytes': { type: 'string', default: '16' },
    'value-bytes': { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '256' },
    shards: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '60' },
    'sample-seconds': { type: 'string', default: '5' },
    checkpoints: { type: 'string', default: 'auto' },
    'segment-bytes': { type: 'string' },
    'log-bytes': { type: 'string' },
    'live-ratio': { type: 'string' },
    preload: { type: 'boolean', default: true },
    rounds: { type: 'string', default: '1' },
    modes: { type: 'string' },
    json: { type: 'boolean', default: false },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
})

function integer(name, minimum = 1) {
  const value = Number(given[name])
  if (!Number.isSafeInteger(value) || value < minimum) throw new RangeError(`--${name} takes an integer >= ${minimum}, got ${given[name]}`)
  return value
}
function positive(name) {
  const value = Number(given[name])
  if (!(Number.isFinite(value) && value > 0)) throw new RangeError(`--${name} takes a number > 0, got ${given[name]}`)
  return value
}
function mode(name) {
  if (!modesKnown.includes(name)) throw new RangeError(`unknown checkpoint mode ${name}: one of ${modesKnown.join(', ')}`)
  return name
}

const settings = {
  keys: integer('keys'),
  keyBytes: integer('key-bytes'),
  valueBytes: integer('value-bytes', counterBytes),
  concurrency: integer('concurrency'),
  shards: integer('shards'),
  seconds: positive('seconds'),
  sampleSeconds: positive('sample-seconds'),
  checkpoints: mode(given.checkpoints),
  segmentBytes: given['segment-bytes'] === undefined ? undefined : integer('segment-bytes'),
  logBytes: given['log-bytes'] === undefined ? undefined : integer('log-bytes'),
  liveRatio: given['live-ratio'] === undefined ? undefined : Number(given['live-ratio']),
  preload: given.preload,
  dir: path.resolve(given.dir ?? os.tmpdir()),
  keep: given.keep,
}
if (String(settings.keys - 1).length > settings.keyBytes) {
  throw new RangeError(`--key-bytes ${settings.keyBytes} cannot hold ${settings.keys} keys as zero-padded decimal`)
}
if (settings.liveRatio !== undefined && !(settings.liveRatio >= 0 && Number.isFinite(settings.liveRatio))) {
  throw new RangeError(`--live-ratio takes a number >= 0, got ${given['live-ratio']}`)
}
const rounds = integer('rounds')
const modes = given.modes === undefined ? undefined : given.modes.split(',').map(mode)
if (modes !== undefined && modes.length < 2) throw new RangeError('--modes takes at least two modes, comma-separated')

// ---------------------------------------------------------------------------------------------------------
// Latency histograms: 16 exact buckets for 0–15 µs, then 8 per power of two, up to 2^31 µs.

const bucketCount = 16 + 28 * 8

function bucketOf(microseconds) {
  const value = Math.min(0x7fffffff, Math.max(0, Math.round(microseconds)))
  if (value < 16) return value
  const exponent = 31 - Math.clz32(value)
  return 16 + (exponent - 4) * 8 + ((value >>> (exponent - 3)) & 7)
}

/** The middle of a bucket, in µs. */
function bucketMiddle(bucket) {
  if (bucket < 16) return bucket
  const exponent = 4 + ((bucket - 16) >> 3)
  const floor = (8 + ((bucket - 16) & 7)) * 2 ** (exponent - 3)
  return floor + 2 ** (exponent - 4)
}

class Histogram {
  constructor() {
    this.counts = new Float64Array(bucketCount)
    this.total = 0
    this.maxMicroseconds = 0
  }
  record(microseconds) {
    this.counts[bucketOf(microseconds)] += 1
    this.total += 1
    if (microseconds > this.maxMicroseconds) this.maxMicroseconds = microseconds
  }
  add(counts, total, maxMicroseconds) {
    for (let bucket = 0; bucket < bucketCount; bucket++) this.counts[bucket] += counts[bucket]
    this.total += total
    this.maxMicroseconds = Math.max(this.maxMicroseconds, maxMicroseconds)
  }
  percentile(fraction) {
    if (this.total === 0) return Number.NaN
    const rank = Math.ceil(this.total * fraction)
    let seen = 0
    for (let bucket = 0; bucket < bucketCount; bucket++) {
      seen += this.counts[bucket]
      if (seen >= rank) return Math.min(bucketMiddle(bucket), this.maxMicroseconds)
    }
    return this.maxMicroseconds
  }
  /** p50, p99 and max in milliseconds. */
  summary() {
    return {
      puts: this.total,
      p50Ms: this.percentile(0.5) / 1000,
      p99Ms: this.percentile(0.99) / 1000,
      maxMs: this.total === 0 ? Number.NaN : this.maxMicroseconds / 1000,
    }
  }
}

// ---------------------------------------------------------------------------------------------------------

function openOptions(run) {
  const options = { shards: run.shards }
  if (run.segmentBytes !== undefined) options.segmentBytes = run.segmentBytes
  if (run.checkpoints === 'auto') {
    const autoCheckpoint = {}
    if (run.logBytes !== undefined) autoCheckpoint.logBytes = run.logBytes
    if (run.liveRatio !== undefined) autoCheckpoint.liveRatio = run.liveRatio
    options.autoCheckpoint = autoCheckpoint
  } else {
    options.autoCheckpoint = false
  }
  return options
}

/** Bytes of every file under `directory` (files removed while it walks count as gone). */
function directoryBytes(directory) {
  let bytes = 0
  let entries
  try {
    entries = fs.readdirSync(directory, { withFileTypes: true })
  } catch (error) {
    if (error.code === 'ENOENT') return 0
    throw error
  }
  for (const entry of entries) {
    const name = path.join(directory, entry.name)
    if (entry.isDirectory()) {
      bytes += directoryBytes(name)
      continue
    }
    try {
      bytes += fs.statSync(name).size
    } catch (error) {
      if (error.code !== 'ENOENT') throw error
    }
  }
  return bytes
}

function sum(shards, field) {
  return shards.reduce((total, shard) => total + (shard[field] ?? 0), 0)
}

/** One soak run on a fresh directory under run.dir; resolves to everything it measured. */
async function soak(run) {
  fs.mkdirSync(run.dir, { recursive: true })
  const directory = fs.mkdtempSync(path.join(run.dir, `ringkv-soak-${run.checkpoints}-`))
  const options = openOptions(run)
  const segmentBytes = run.segmentBytes ?? engineSegmentBytesDefault
  const logBytes = run.checkpoints === 'auto' ? (run.logBytes ?? segmentBytes) : undefined
  const liveRatio = run.checkpoints === 'auto' ? (run.liveRatio ?? 0) : 0
  const recordBytes = recordHeaderBytes + run.keyBytes + run.valueBytes
  const completionSegmentBytes = Math.max(
    16 * completionRecordBytes,
    Math.floor(segmentBytes / 16 / completionRecordBytes) * completionRecordBytes,
  )
  /**
   * The allowance's fixed part, per shard (the README's "Checkpoints and disk space"): the checkpoint's segment, the log up
   * to the threshold, the rest of the segment written with the next one, the segment kept for reuse, and
   * the completion segments in the same roles. The log written during a checkpoint is added at the end.
   */
  const fixedAllowanceBytes =
    segmentBytes +
    (logBytes ?? segmentBytes) +
    segmentBytes +
    Math.min(intentFillStepBytesMax, segmentBytes) +
    segmentsReusedMax * segmentBytes +
    (2 + segmentsReusedMax) * completionSegmentBytes

  const openStarted = performance.now()
  const db = await open(directory, options)
  const firstOpenMs = performance.now() - openStarted
  const filler = crypto.randomBytes(run.valueBytes)
  /** The number of the highest write acknowledged per key (the last one: a shard keeps writes in order); 0: none. */
  const acknowledged = new Float64Array(run.keys)
  let writes = 0
  let keysWritten = 0

  const writeKey = (buffer, key) => buffer.write(String(key).padStart(run.keyBytes, '0'), 0, 'latin1')
  const newClient = () => ({ key: Buffer.alloc(run.keyBytes), value: Buffer.from(filler) })
  /** One put of a new value to `key`, through the client's own buffers (put() encodes them before it returns). */
  const put = (client, key) => {
    writeKey(client.key, key)
    const write = ++writes
    client.value.writeUIntLE(write, 0, counterBytes)
    return db.put(client.key, client.value).then(() => {
      if (acknowledged[key] === 0) keysWritten++
      if (acknowledged[key] < write) acknowledged[key] = write
    })
  }

  let preloadSeconds = 0
  if (run.preload) {
    const started = performance.now()
    let next = 0
    const preloader = async () => {
      const client = newClient()
      for (let key = next++; key < run.keys; key = next++) await put(client, key)
    }
    await Promise.all(Array.from({ length: Math.min(run.concurrency, run.keys) }, preloader))
    preloadSeconds = (performance.now() - started) / 1000
  }

  const sliceCount = Math.ceil((run.seconds * 1000) / sliceMs) + 1
  const sliceCounts = new Uint32Array(sliceCount * bucketCount).fill(0)
  const sliceTotals = new Float64Array(sliceCount).fill(0)
  const sliceMax = new Float64Array(sliceCount).fill(0)
  const overall = new Histogram()
  let interval = new Histogram()
  const samples = []
  const checkpointWindows = []
  const eventLoopDelay = monitorEventLoopDelay({ resolution: 10 })
  eventLoopDelay.enable()

  let stopping = false
  const started = performance.now()
  const elapsedMs = () => performance.now() - started
  const sampleTailMs = run.sampleSeconds * 100

  const client = async () => {
    const buffers = newClient()
    while (!stopping) {
      const key = Math.floor(Math.random() * run.keys)
      const before = performance.now()
      await put(buffers, key)
      const after = performance.now()
      const microseconds = (after - before) * 1000
      overall.record(microseconds)
      interval.record(microseconds)
      const slice = Math.min(sliceCount - 1, Math.floor((after - started) / sliceMs))
      sliceCounts[slice * bucketCount + bucketOf(microseconds)] += 1
      sliceTotals[slice] += 1
      if (microseconds > sliceMax[slice]) sliceMax[slice] = microseconds
    }
  }

  let compactions = 0
  const compactLoop = async () => {
    while (!stopping) {
      const from = elapsedMs()
      await db.compact()
      checkpointWindows.push([from, elapsedMs()])
      compactions++
    }
  }

  // Checkpoints seen completed: per shard, the count seen at the last poll, and the largest figures seen.
  const seen = db.stats().shards.map((shard) => shard.checkpoints)
  const checkpointMax = { durationMs: 0, bytes: 0, stepMsMax: 0, batchLatencyUsMax: 0 }
  let lastPollMs = 0
  const poll = () => {
    const now = elapsedMs()
    db.stats().shards.forEach((shard, index) => {
      const done = shard.checkpoints - seen[index]
      if (done > 0 && shard.lastCheckpoint !== undefined) {
        const last = shard.lastCheckpoint
        // More than one since the last poll: the earlier ones ran after it, or during the last one's length before it.
        const from = done > 1 ? lastPollMs - last.durationMs : now - last.durationMs
        if (run.checkpoints === 'auto') checkpointWindows.push([Math.max(0, from), now])
        for (const field of Object.keys(checkpointMax)) checkpointMax[field] = Math.max(checkpointMax[field], last[field])
      }
      seen[index] = shard.checkpoints
    })
    lastPollMs = now
  }
  const poller = setInterval(poll, statsPollMs)

  let sampleFromMs = 0
  let checkpointsAtSample = sum(db.stats().shards, 'checkpoints')
  const sample = () => {
    const now = elapsedMs()
    const shards = db.stats().shards
    const diskBytes = directoryBytes(directory)
    const liveBytes = keysWritten * recordBytes
    const checkpoints = sum(shards, 'checkpoints')
    const latency = interval.summary()
    samples.push({
      seconds: now / 1000,
      putsPerSecond: latency.puts / ((now - sampleFromMs) / 1000),
      p50Ms: latency.p50Ms,
      p99Ms: latency.p99Ms,
      maxMs: latency.maxMs,
      diskBytes,
      engineDiskBytes: sum(shards, 'logDiskBytes') + sum(shards, 'checkpointDiskBytes'),
      liveBytes,
      engineLiveBytes: sum(shards, 'liveBytes'),
      diskToLive: diskBytes / liveBytes,
      allowanceUsedBytes: (diskBytes - (2 + liveRatio) * liveBytes) / run.shards,
      rssBytes: process.memoryUsage().rss,
      checkpoints,
      checkpointsInSample: checkpoints - checkpointsAtSample,
      checkpointFailures: sum(shards, 'checkpointFailures'),
    })
    interval = new Histogram()
    sampleFromMs = now
    checkpointsAtSample = checkpoints
  }
  const sampler = setInterval(sample, run.sampleSeconds * 1000)

  const clients = Array.from({ length: run.concurrency }, client)
  const compacting = run.checkpoints === 'compact-loop' ? compactLoop() : undefined
  await new Promise((resolve) => setTimeout(resolve, run.seconds * 1000))
  stopping = true
  await Promise.all(clients)
  const seconds = elapsedMs() / 1000
  clearInterval(sampler)
  if (elapsedMs() - sampleFromMs >= sampleTailMs) sample()
  await compacting
  clearInterval(poller)
  poll()
  eventLoopDelay.disable()
  const finalStats = db.stats().shards
  await db.close()
  const closedDiskBytes = directoryBytes(directory)

  // Latency during checkpoints and without: by 100 ms slice, a slice being "during" if a window overlaps it.
  const during = new Histogram()
  const without = new Histogram()
  const lastSlice = Math.min(sliceCount - 1, Math.floor((seconds * 1000) / sliceMs))
  for (let slice = 0; slice <= lastSlice; slice++) {
    const from = slice * sliceMs
    const to = from + sliceMs
    const overlaps = checkpointWindows.some(([start, end]) => start < to && end >= from)
    const counts = sliceCounts.subarray(slice * bucketCount, (slice + 1) * bucketCount)
    ;(overlaps ? during : without).add(counts, sliceTotals[slice], sliceMax[slice])
  }

  const reopenStarted = performance.now()
  const reopened = await open(directory, options)
  const reopenMs = performance.now() - reopenStarted
  const recovery = reopened.recovery.map((report, shard) => ({
    shard,
    durationMs: report.durationMs,
    checkpointSequence: report.checkpointSequence,
    checkpointRecords: report.checkpointRecords,
    batchesReplayed: report.batchesReplayed,
    bytesReplayed: report.bytesReplayed,
  }))
  const check = await checkReadBack(reopened, run, acknowledged, filler)
  await reopened.close()
  if (!run.keep) fs.rmSync(directory, { recursive: true, force: true })

  const maxDisk = samples.reduce((worst, row) => (row.diskBytes > worst.diskBytes ? row : worst), samples[0])
  const peakPutsPerSecond = Math.max(0, ...samples.map((row) => row.putsPerSecond))
  const checkpointWritesBytes = Math.ceil(((peakPutsPerSecond / run.shards) * recordBytes * checkpointMax.durationMs) / 1000)
  const allowanceBytes = run.checkpoints === 'off' ? undefined : fixedAllowanceBytes + 2 * checkpointWritesBytes
  for (const row of samples) row.withinBound = allowanceBytes === undefined ? undefined : row.allowanceUsedBytes <= allowanceBytes
  return {
    settings: { ...run, segmentBytes, logBytes, liveRatio, directory: run.keep ? directory : undefined },
    firstOpenMs,
    preloadSeconds,
    seconds,
    puts: overall.total,
    putsPerSecond: overall.total / seconds,
    latency: overall.summary(),
    latencyDuringCheckpoints: during.summary(),
    latencyWithoutCheckpoints: without.summary(),
    checkpointWindows: checkpointWindows.length,
    compactions,
    checkpoints: sum(finalStats, 'checkpoints'),
    checkpointFailures: sum(finalStats, 'checkpointFailures'),
    /** Log segments made by reusing a retired one (0 from an engine that does not report it). */
    segmentsReused: sum(finalStats, 'segmentsReused'),
    checkpointMax,
    eventLoopDelayMs: { p99: eventLoopDelay.percentile(99) / 1e6, max: eventLoopDelay.max / 1e6 },
    samples,
    disk: {
      maxBytes: maxDisk?.diskBytes ?? 0,
      maxAtSeconds: maxDisk?.seconds ?? 0,
      maxDiskToLive: Math.max(...samples.map((row) => row.diskToLive)),
      maxAllowanceUsedBytes: Math.max(...samples.map((row) => row.allowanceUsedBytes)),
      allowanceBytes,
      fixedAllowanceBytes,
      checkpointWritesBytes,
      samplesOverBound: samples.filter((row) => row.withinBound === false).length,
      closedBytes: closedDiskBytes,
      liveBytes: keysWritten * recordBytes,
      engineLiveBytes: sum(finalStats, 'liveBytes'),
    },
    rss: {
      firstBytes: samples[0]?.rssBytes ?? 0,
      lastBytes: samples.at(-1)?.rssBytes ?? 0,
      maxBytes: Math.max(...samples.map((row) => row.rssBytes)),
    },
    reopenMs,
    recovery,
    check,
  }
}

/** Reads back every key (or checkKeysMax of them at random): each must hold the last value acknowledged for it. */
async function checkReadBack(db, run, acknowledged, filler) {
  let keys = Array.from({ length: run.keys }, (_, key) => key)
  if (keys.length > checkKeysMax) {
    for (let index = 0; index < checkKeysMax; index++) {
      const other = index + Math.floor(Math.random() * (keys.length - index))
      ;[keys[index], keys[other]] = [keys[other], keys[index]]
    }
    keys = keys.slice(0, checkKeysMax)
  }
  const expected = Buffer.from(filler)
  let mismatches = 0
  let firstMismatch
  for (let from = 0; from < keys.length; from += 4096) {
    const group = keys.slice(from, from + 4096)
    const values = await db.getMany(group.map((key) => String(key).padStart(run.keyBytes, '0')))
    group.forEach((key, index) => {
      const value = values[index]
      if (acknowledged[key] === 0) {
        if (value === undefined) return
      } else {
        expected.writeUIntLE(acknowledged[key], 0, counterBytes)
        if (value !== undefined && Buffer.compare(expected, value) === 0) return
      }
      mismatches++
      firstMismatch ??= {
        key,
        acknowledgedWrite: acknowledged[key],
        found: value === undefined ? 'nothing' : `write ${Buffer.from(value).readUIntLE(0, counterBytes)}, ${value.length} B`,
      }
    })
  }
  return { keysChecked: keys.length, mismatches, firstMismatch }
}

// ---------------------------------------------------------------------------------------------------------
// Printing

const count = (value, digits = 0) =>
  Number.isFinite(value) ? value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—'
const megabytes = (bytes) => count(bytes / 1e6, 1)
const milliseconds = (value) => count(value, value < 10 ? 2 : 1)

function describeWorkload(run) {
  return (
    `${count(run.keys)} keys of ${run.keyBytes} B / ${run.valueBytes} B, c=${run.concurrency}, ${run.shards} shard(s), ` +
    `${run.seconds} s, segmentBytes ${count(run.segmentBytes)}, preload ${run.preload ? 'on' : 'off'}`
  )
}

function describe(run) {
  const policy =
    run.checkpoints === 'auto'
      ? `auto (logBytes ${count(run.logBytes)}, liveRatio ${run.liveRatio})`
      : run.checkpoints === 'off'
        ? 'off (autoCheckpoint: false)'
        : 'compact-loop (autoCheckpoint: false, db.compact() back to back)'
  return `${describeWorkload(run)}, checkpoints ${policy}`
}

function printRun(result) {
  const run = result.settings
  console.log(describe(run))
  if (run.preload) console.log(`preload: every key written once in ${result.preloadSeconds.toFixed(2)} s`)
  console.log('')
  console.log(
    '| s | puts/s | p50 ms | p99 ms | max ms | disk MB | engine disk MB | live MB | disk/live | allowance used MB/shard | within bound | RSS MB | checkpoints (+ in sample) |',
  )
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|')
  for (const row of result.samples) {
    console.log(
      `| ${count(row.seconds, 1)} | ${count(row.putsPerSecond)} | ${milliseconds(row.p50Ms)} | ${milliseconds(row.p99Ms)} | ` +
        `${milliseconds(row.maxMs)} | ${megabytes(row.diskBytes)} | ${megabytes(row.engineDiskBytes)} | ${count(row.liveBytes / 1e6, 2)} | ` +
        `${count(row.diskToLive, 1)} | ${megabytes(row.allowanceUsedBytes)} | ${row.withinBound === undefined ? '—' : row.withinBound ? 'yes' : 'no'} | ` +
        `${megabytes(row.rssBytes)} | ` +
        `${count(row.checkpoints)} (+${count(row.checkpointsInSample)}) |`,
    )
  }
  const latency = (figures) =>
    `${count(figures.puts)} puts, p50 ${milliseconds(figures.p50Ms)} ms, p99 ${milliseconds(figures.p99Ms)} ms, max ${milliseconds(figures.maxMs)} ms`
  console.log('')
  console.log(`puts: ${count(result.puts)} in ${result.seconds.toFixed(1)} s = ${count(result.putsPerSecond)} durable puts/s`)
  console.log(`put latency, all:                    ${latency(result.latency)}`)
  console.log(`  in 100 ms slices during a checkpoint: ${latency(result.latencyDuringCheckpoints)}`)
  console.log(`  in slices without one:                ${latency(result.latencyWithoutCheckpoints)}`)
  const ratio = result.latencyDuringCheckpoints.p99Ms / result.latencyWithoutCheckpoints.p99Ms
  console.log(`  p99 during / p99 without: ${Number.isFinite(ratio) ? ratio.toFixed(2) : '—'}`)
  console.log(
    `main thread event-loop delay: p99 ${milliseconds(result.eventLoopDelayMs.p99)} ms, max ${milliseconds(result.eventLoopDelayMs.max)} ms`,
  )
  const most = result.checkpointMax
  console.log(
    `checkpoints: ${count(result.checkpoints)} (failures ${count(result.checkpointFailures)}` +
      `${run.checkpoints === 'compact-loop' ? `; ${count(result.compactions)} db.compact() calls` : ''}); ` +
      `${count(result.segmentsReused)} log segments reused; largest seen: duration ${milliseconds(most.durationMs)} ms, file ${megabytes(most.bytes)} MB, ` +
      `longest step on a shard's thread ${milliseconds(most.stepMsMax)} ms, slowest batch while one ran ${milliseconds(most.batchLatencyUsMax / 1000)} ms`,
  )
  if (run.checkpoints === 'auto' && result.checkpoints === 0) {
    console.log(`  (no automatic checkpoint: no shard's log reached logBytes; lower --log-bytes, or run longer)`)
  }
  const disk = result.disk
  console.log(
    `disk: max ${megabytes(disk.maxBytes)} MB at ${count(disk.maxAtSeconds, 1)} s, max disk/live ${count(disk.maxDiskToLive, 1)}; ` +
      `after close ${megabytes(disk.closedBytes)} MB for ${megabytes(disk.liveBytes)} MB live ` +
      `(stats() liveBytes at the end: ${megabytes(disk.engineLiveBytes)} MB)`,
  )
  console.log(
    disk.allowanceBytes === undefined
      ? `  no checkpoints, no bound; allowance used at most ${megabytes(disk.maxAllowanceUsedBytes)} MB per shard`
      : `  allowance used at most ${megabytes(disk.maxAllowanceUsedBytes)} MB per shard; estimated allowance ${megabytes(disk.allowanceBytes)} MB ` +
          `(${megabytes(disk.fixedAllowanceBytes)} MB fixed + 2 x ${megabytes(disk.checkpointWritesBytes)} MB written during the longest checkpoint): ` +
          `${disk.samplesOverBound === 0 ? 'every sample within' : `${disk.samplesOverBound} of ${result.samples.length} samples over`} ` +
          `(2 + ${run.liveRatio}) x live + that per shard`,
  )
  console.log(
    `RSS: first sample ${megabytes(result.rss.firstBytes)} MB, last ${megabytes(result.rss.lastBytes)} MB, max ${megabytes(result.rss.maxBytes)} MB`,
  )
  console.log(
    `reopen: open() took ${milliseconds(result.reopenMs)} ms (the first open, of an empty directory: ${milliseconds(result.firstOpenMs)} ms)`,
  )
  console.log('| shard | recovery ms | checkpoint sequence | checkpoint records | batches replayed | bytes replayed |')
  console.log('|---:|---:|---:|---:|---:|---:|')
  for (const shard of result.recovery) {
    console.log(
      `| ${shard.shard} | ${milliseconds(shard.durationMs)} | ${count(shard.checkpointSequence)} | ${count(shard.checkpointRecords)} | ` +
        `${count(shard.batchesReplayed)} | ${count(shard.bytesReplayed)} |`,
    )
  }
  const check = result.check
  console.log(
    check.mismatches === 0
      ? `read-back check: OK (${count(check.keysChecked)} keys hold their last acknowledged value)`
      : `read-back check: ${count(check.mismatches)} MISMATCHES of ${count(check.keysChecked)} keys; first: ${JSON.stringify(check.firstMismatch)}`,
  )
  if (run.directory !== undefined) console.log(`kept: ${run.directory}`)
}

// ---------------------------------------------------------------------------------------------------------
// Paired rounds: each run a child process on a fresh directory.

function childArguments(checkpoints) {
  const args = [
    fileURLToPath(import.meta.url),
    '--json',
    '--checkpoints',
    checkpoints,
    ...['keys', 'key-bytes', 'value-bytes', 'concurrency', 'shards', 'seconds', 'sample-seconds'].flatMap((name) => [
      `--${name}`,
      given[name],
    ]),
    '--dir',
    settings.dir,
  ]
  for (const name of ['segment-bytes', 'log-bytes', 'live-ratio']) if (given[name] !== undefined) args.push(`--${name}`, given[name])
  if (!settings.preload) args.push('--no-preload')
  if (settings.keep) args.push('--keep')
  return args
}

function paired(modeList) {
  const median = (values) => {
    const sorted = [...values].sort((left, right) => left - right)
    const middle = sorted.length >> 1
    return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
  }
  const results = new Map(modeList.map((name) => [name, []]))
  let failed = false
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? modeList : [...modeList].reverse()
    for (const name of order) {
      const child = spawnSync(process.execPath, childArguments(name), {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 64 * 1024 * 1024,
      })
      if (child.status !== 0 && child.stdout.trim() === '')
        throw new Error(`round ${round}, ${name}: the run failed (exit ${child.status})`)
      const result = JSON.parse(child.stdout.trim().split('\n').pop())
      if (result.check.mismatches !== 0) failed = true
      results.get(name).push(result)
      console.error(`round ${round}/${rounds} ${name}: ${count(result.putsPerSecond)} puts/s, p99 ${milliseconds(result.latency.p99Ms)} ms`)
    }
  }

  const first = results.get(modeList[0])
  if (given.json) {
    console.log(JSON.stringify({ modes: modeList, rounds, results: Object.fromEntries(results) }))
    return failed ? 1 : 0
  }
  console.log(describeWorkload(first[0].settings))
  const auto = results.get('auto')?.[0].settings
  if (auto !== undefined) console.log(`auto: logBytes ${count(auto.logBytes)}, liveRatio ${auto.liveRatio}`)
  console.log(`${rounds} round(s), modes ${modeList.join(', ')} (A = ${modeList[0]}), alternating order, each run a fresh directory\n`)
  console.log(
    '| round | mode | puts/s | p50 ms | p99 ms | max ms | p99 during / without ckpt | checkpoints | max disk MB | max disk/live | RSS first → last MB | reopen ms | check |',
  )
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|')
  for (let round = 0; round < rounds; round++) {
    for (const name of modeList) {
      const result = results.get(name)[round]
      const during = result.latencyDuringCheckpoints.p99Ms
      const without = result.latencyWithoutCheckpoints.p99Ms
      console.log(
        `| ${round + 1} | ${name} | ${count(result.putsPerSecond)} | ${milliseconds(result.latency.p50Ms)} | ${milliseconds(result.latency.p99Ms)} | ` +
          `${milliseconds(result.latency.maxMs)} | ${milliseconds(during)} / ${milliseconds(without)} | ${count(result.checkpoints)} | ` +
          `${megabytes(result.disk.maxBytes)} | ${count(result.disk.maxDiskToLive, 1)} | ` +
          `${megabytes(result.rss.firstBytes)} → ${megabytes(result.rss.lastBytes)} | ${milliseconds(result.reopenMs)} | ` +
          `${result.check.mismatches === 0 ? 'OK' : `${result.check.mismatches} mismatches`} |`,
      )
    }
  }
  const range = (values, digits) =>
    `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)} – ${Math.max(...values).toFixed(digits)})`
  console.log('')
  for (const name of modeList) {
    const runs = results.get(name)
    console.log(
      `${name}: median ${count(median(runs.map((result) => result.putsPerSecond)))} puts/s, ` +
        `p99 ${milliseconds(median(runs.map((result) => result.latency.p99Ms)))} ms, ` +
        `worst put ${milliseconds(Math.max(...runs.map((result) => result.latency.maxMs)))} ms, ` +
        `reopen ${milliseconds(median(runs.map((result) => result.reopenMs)))} ms`,
    )
  }
  const idle = [...results].filter(([name, runs]) => name !== 'off' && runs.some((result) => result.checkpoints === 0))
  for (const [name, runs] of idle) {
    const none = runs.filter((result) => result.checkpoints === 0).length
    console.log(
      `${name}: no checkpoint at all in ${none} of ${rounds} run(s) (no shard's log reached logBytes): those rounds compare no checkpoint cost`,
    )
  }
  for (const name of modeList.slice(1)) {
    const runs = results.get(name)
    const putsRatios = runs.map((result, round) => result.putsPerSecond / first[round].putsPerSecond)
    const p99Ratios = runs.map((result, round) => result.latency.p99Ms / first[round].latency.p99Ms)
    console.log(`${name}/${modeList[0]} per round: puts/s ${range(putsRatios, 3)}; p99 ${range(p99Ratios, 2)}`)
  }
  return failed ? 1 : 0
}

// Last, once every declaration above is initialized.
if (rounds > 1 || modes !== undefined) {
  process.exitCode = paired(modes ?? ['off', 'auto'])
} else {
  const result = await soak(settings)
  if (given.json) console.log(JSON.stringify(result))
  else printRun(result)
  process.exitCode = result.check.mismatches === 0 ? 0 : 1
}
