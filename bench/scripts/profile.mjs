// Where a durable put's time goes, per put, on each thread and on the disk: issue 16's report.
//   node bench/scripts/profile.mjs                                   c = 1, 256, 4096; both key orders
//   node bench/scripts/profile.mjs --concurrency 256 --orders hashed --puts 200000
//   node bench/scripts/profile.mjs --tree ../old-checkout              the engine built in another checkout
//   node bench/scripts/profile.mjs --keep /tmp/profiles                keeps each run's .cpuprofile files (one per
//                                                                      thread, 0 is the main thread) for Chrome DevTools
//   RINGKV_BENCH_QUICK=1 node bench/scripts/profile.mjs              a few seconds, to keep it from rotting
// Needs the bench built (`npx -y pnpm@10 --filter @ringkv/bench run build`, or any `run bench`): it takes its
// keys and values from the bench's workload (bench/dist/workload.js), so both measure the same puts.
//
// Each (order, c) runs in a child process under V8's CPU profiler (node --cpu-prof, which profiles the main
// thread and the shard worker each): ringkv with its default options on a fresh directory, a fixed number of
// durable puts by c closed-loop clients, each awaiting its own put. Around the puts the child reads
// process.cpuUsage(), stats() and the block device's counters (/sys/dev/block/M:m/stat). Per put it prints:
//   main µs       the main thread's sampled time, less its idle samples (the bench's client loop included);
//   worker µs     the shard worker's sampled time, less its idle samples and its batches' I/O time;
//   batch I/O µs  the worker's batches' write + fdatasync time, from commit to durable (stats()'s
//                 fsyncLatencyUsMean × batches: the worker blocks in io_uring_enter for most of it);
//   cpu µs        user + system CPU of the whole process (every thread, and the kernel's io_uring workers);
// and per batch: puts, device write requests and device cache flushes (from the disk's counters: zero-fills
// of new log space count too, so the figures are an upper bound for the batch's own I/O).
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { argument } from './arguments.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const workloadPath = path.join(here, '..', 'dist', 'workload.js')

if (process.argv[2] === '--child') await child(JSON.parse(process.argv[3]))
else main()

function main() {
  if (!fs.existsSync(workloadPath)) {
    console.error(`profile: ${workloadPath} is missing; build the bench first: npx -y pnpm@10 --filter @ringkv/bench run build`)
    process.exit(2)
  }
  const quick = process.env.RINGKV_BENCH_QUICK === '1'
  const orders = argument('orders', 'sequential,hashed').split(',')
  const concurrencies = argument('concurrency', '1,256,4096').split(',').map(Number)
  const putsFor = (concurrency) => Number(argument('puts', '0')) || (quick ? 2_000 : concurrency === 1 ? 5_000 : 400_000)
  for (const order of orders) if (order !== 'sequential' && order !== 'hashed') throw new RangeError(`--orders: unknown order ${order}`)
  for (const concurrency of concurrencies)
    if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new RangeError('--concurrency takes positive integers')

  const tree = argument('tree', undefined)
  const keep = argument('keep', undefined)
  const rows = []
  for (const order of orders) {
    for (const concurrency of concurrencies) {
      const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ringkv-profile-'))
      const profiles = keep === undefined ? scratch : path.join(keep, `${order}-c${concurrency}`)
      fs.mkdirSync(profiles, { recursive: true })
      const job = { order, concurrency, puts: putsFor(concurrency), directory: path.join(scratch, 'db'), tree }
      const run = spawnSync(
        process.execPath,
        ['--cpu-prof', `--cpu-prof-dir=${profiles}`, fileURLToPath(import.meta.url), '--child', JSON.stringify(job)],
        {
          encoding: 'utf8',
        },
      )
      if (run.status !== 0) throw new Error(`profile child failed (${order}, c=${concurrency}): ${run.stderr}`)
      const measured = JSON.parse(run.stdout.trim().split('\n').pop())
      // --cpu-prof names each thread's file CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile: 0 is the main thread.
      const files = fs.readdirSync(profiles).filter((name) => name.endsWith('.cpuprofile'))
      const threadOf = (name) => Number(name.split('.')[4])
      const mainFile = files.find((name) => threadOf(name) === 0)
      const workerFiles = files.filter((name) => threadOf(name) !== 0)
      if (mainFile === undefined || workerFiles.length !== 1)
        throw new Error(`expected 2 profiles (main, one shard worker), found ${files.join(', ')}`)
      const window = [measured.windowStartMicroseconds, measured.windowEndMicroseconds]
      const mainTimes = sampledTimes(path.join(profiles, mainFile), window)
      const workerTimes = sampledTimes(path.join(profiles, workerFiles[0]), window)
      fs.rmSync(scratch, { recursive: true, force: true })
      const perPut = (microseconds) => microseconds / measured.puts
      rows.push({
        order,
        concurrency,
        putsPerSecond: measured.puts / measured.seconds,
        main: perPut(mainTimes.busy),
        worker: perPut(Math.max(0, workerTimes.busy - (measured.batchIoMicroseconds ?? Number.NaN))),
        batchIo: perPut(measured.batchIoMicroseconds ?? Number.NaN),
        cpu: perPut(measured.cpuMicroseconds),
        putsPerBatch: measured.puts / measured.batches,
        writesPerBatch: measured.diskWrites / measured.batches,
        flushesPerBatch: measured.diskFlushes / measured.batches,
      })
      print(rows)
    }
  }
}

function print(rows) {
  const number = (value, digits = 1) =>
    Number.isFinite(value) ? value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—'
  console.log(
    '\n| keys | c | puts/s | main µs/put | worker µs/put | batch I/O µs/put | cpu µs/put | puts/batch | writes/batch | flushes/batch |',
  )
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const row of rows) {
    console.log(
      `| ${row.order} | ${row.concurrency} | ${number(row.putsPerSecond, 0)} | ${number(row.main, 2)} | ${number(row.worker, 2)} | ` +
        `${number(row.batchIo, 2)} | ${number(row.cpu, 2)} | ${number(row.putsPerBatch, 0)} | ${number(row.writesPerBatch, 2)} | ${number(row.flushesPerBatch, 2)} |`,
    )
  }
}

/**
 * A .cpuprofile's sampled time in µs within `window` (CLOCK_MONOTONIC µs, the clock of V8's sample timestamps
 * and of process.hrtime): all but idle samples. (A wait in io_uring_enter is not idle to V8: it is a call.)
 */
function sampledTimes(file, [from, to]) {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8'))
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  let busy = 0
  let timestamp = profile.startTime
  for (let index = 0; index < profile.samples.length; index++) {
    const delta = profile.timeDeltas[index] ?? 0
    timestamp += delta
    if (timestamp < from || timestamp > to) continue
    if (nodes.get(profile.samples[index]).callFrame.functionName === '(idle)') continue
    busy += delta
  }
  return { busy }
}

/** The block device holding `directory`: its counters file (a partition's, which has the same fields). */
function deviceStatPath(directory) {
  const dev = fs.statSync(directory).dev
  const major = Math.floor(dev / 256) & 0xfff
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00)
  return `/sys/dev/block/${major}:${minor}/stat`
}

/** Write requests and flush requests completed so far (fields 5 and 16 of the block layer's stat). */
function deviceCounters(statPath) {
  const fields = fs.readFileSync(statPath, 'utf8').trim().split(/\s+/).map(Number)
  return { writes: fields[4], flushes: fields[15] ?? 0 }
}

/**
 * One run (this file with --child, also run by paired.mjs): `job.puts` durable puts by `job.concurrency`
 * closed-loop clients on `job.directory`, with the engine of `job.tree` (a checkout, built) or this one's.
 * Prints one JSON line: what it measured.
 */
async function child(job) {
  const engine = job.tree === undefined ? '@ringkv/engine' : pathToFileURL(path.resolve(job.tree, 'packages/engine/dist/index.js')).href
  const { open } = await import(engine)
  const { keyOf, valueOf } = await import(workloadPath)
  fs.mkdirSync(job.directory, { recursive: true })
  const database = await open(job.directory)
  const statPath = deviceStatPath(job.directory)
  let next = 0
  const client = async () => {
    for (let index = next++; index < job.puts; index = next++) await database.put(keyOf(job.order, index), valueOf(index))
  }
  const microsecondsNow = () => Number(process.hrtime.bigint() / 1000n)
  const diskBefore = deviceCounters(statPath)
  const cpuBefore = process.cpuUsage()
  const windowStartMicroseconds = microsecondsNow()
  await Promise.all(Array.from({ length: job.concurrency }, client))
  const windowEndMicroseconds = microsecondsNow()
  const seconds = (windowEndMicroseconds - windowStartMicroseconds) / 1e6
  const cpu = process.cpuUsage(cpuBefore)
  const diskAfter = deviceCounters(statPath)
  const shards = database.stats().shards
  const batches = shards.reduce((sum, shard) => sum + shard.batches, 0)
  // NaN (null in JSON, printed as —) for a build older than stats()'s fsyncLatencyUsMean.
  const batchIoMicroseconds = shards.reduce((sum, shard) => sum + (shard.fsyncLatencyUsMean ?? Number.NaN) * shard.batches, 0)
  await database.close()
  console.log(
    JSON.stringify({
      puts: job.puts,
      seconds,
      windowStartMicroseconds,
      windowEndMicroseconds,
      batches,
      batchIoMicroseconds,
      cpuMicroseconds: cpu.user + cpu.system,
      diskWrites: diskAfter.writes - diskBefore.writes,
      diskFlushes: diskAfter.flushes - diskBefore.flushes,
    }),
  )
}
