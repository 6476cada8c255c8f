// Shard counts against each other, in paired rounds: what the default shard count (shardsDefault) rests on.
//   node bench/scripts/shards.mjs                      5 rounds; shards 1 and 2; concurrency 1, 16, 256, 4096
//   node bench/scripts/shards.mjs --shards 1,2,4 --rounds 7 --concurrency 256
//   RINGKV_BENCH_QUICK=1 node bench/scripts/shards.mjs a few seconds, to keep it from rotting
// Each measurement opens a fresh directory with that shard count (io_uring where available), runs a closed
// loop of durable puts (16-byte hashed keys, 100-byte values) for a warm-up and then a measured window, and
// closes. Within a round, the shard counts run one after the other for each concurrency, so the machine's
// drift falls on all of them; a round's ratio is puts/s of each count over the first count's. Prints the
// median puts/s, the min–max over rounds, and the median ratio with its range.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { open, shardsDefault } from '@ringkv/engine'
import { argument } from './arguments.mjs'

const quick = process.env.RINGKV_BENCH_QUICK === '1'
const shardCounts = argument('shards', '1,2').split(',').map(Number)
const concurrencies = argument('concurrency', '1,16,256,4096').split(',').map(Number)
const rounds = Number(argument('rounds', quick ? '1' : '5'))
const warmupMs = quick ? 100 : 300
const measureMs = quick ? 300 : 1500
for (const count of [...shardCounts, ...concurrencies, rounds]) {
  if (!Number.isInteger(count) || count < 1) throw new RangeError('--shards, --concurrency and --rounds take positive integers')
}

const scratch = fs.mkdtempSync(path.join(process.env.RINGKV_BENCH_DIR ?? os.tmpdir(), 'ringkv-shards-'))
const values = Array.from({ length: 1024 }, () => crypto.randomBytes(100))
let nextKey = 0

function keyOf(index) {
  const key = Buffer.alloc(16)
  key.writeUInt32BE(Math.imul(index, 0x9e3779b1) >>> 0, 0)
  key.writeUInt32BE(index >>> 0, 12)
  return key
}

/** Durable puts/s of `concurrency` closed-loop clients on a new directory of `shards` shards. */
async function measure(shards, concurrency) {
  const directory = fs.mkdtempSync(path.join(scratch, `x${shards}-c${concurrency}-`))
  const db = await open(directory, { shards })
  let counting = false
  let stop = false
  let done = 0
  const client = async () => {
    while (!stop) {
      const index = nextKey++
      await db.put(keyOf(index), values[index & 1023])
      if (counting) done++
    }
  }
  const clients = Array.from({ length: concurrency }, client)
  await new Promise((resolve) => setTimeout(resolve, warmupMs))
  counting = true
  const started = performance.now()
  await new Promise((resolve) => setTimeout(resolve, measureMs))
  const seconds = (performance.now() - started) / 1000
  counting = false
  stop = true
  await Promise.all(clients)
  await db.close()
  fs.rmSync(directory, { recursive: true, force: true })
  return done / seconds
}

const median = (numbers) => {
  const sorted = [...numbers].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })
const ratio = (value) => value.toFixed(2)

/** results[concurrency][shards] = puts/s per round */
const results = new Map(concurrencies.map((concurrency) => [concurrency, new Map(shardCounts.map((shards) => [shards, []]))]))
try {
  for (let round = 1; round <= rounds; round++) {
    for (const concurrency of concurrencies) {
      for (const shards of shardCounts) {
        const putsPerSecond = await measure(shards, concurrency)
        results.get(concurrency).get(shards).push(putsPerSecond)
        console.error(`round ${round}/${rounds} c=${concurrency} shards=${shards}: ${integer.format(putsPerSecond)} puts/s`)
      }
    }
  }
} finally {
  fs.rmSync(scratch, { recursive: true, force: true })
}

console.log(
  `${os.availableParallelism()} cores; shardsDefault() = ${shardsDefault()}; ${rounds} round(s) of ${measureMs / 1000} s per point`,
)
console.log('')
console.log(
  `| clients | shards | durable puts/s (median) | min – max | against ${shardCounts[0]} shard(s), per round: median (min – max) |`,
)
console.log('|---:|---:|---:|---:|---:|')
for (const concurrency of concurrencies) {
  const base = results.get(concurrency).get(shardCounts[0])
  for (const shards of shardCounts) {
    const runs = results.get(concurrency).get(shards)
    const ratios = runs.map((value, index) => value / base[index])
    console.log(
      `| ${concurrency} | ${shards} | ${integer.format(median(runs))} | ${integer.format(Math.min(...runs))} – ${integer.format(Math.max(...runs))} | ` +
        `${ratio(median(ratios))} (${ratio(Math.min(...ratios))} – ${ratio(Math.max(...ratios))}) |`,
    )
  }
}
