// What the completion log costs, and how long recovery takes (issue: the dual log).
//   node bench/scripts/dual-log.mjs            full: 3 rounds, 1,000,000 records for recovery
//   RINGKV_BENCH_QUICK=1 node bench/scripts/…  a few seconds, to keep it from rotting
// Durable puts/s and p50/p99 at concurrency 1, 16 and 256 (16-byte keys, 100-byte values), one shard, for
// the dual log as built and for the same engine writing the intent log only (RINGKV_BENCH_INTENT_ONLY, a
// benchmark switch read by the shard worker, not a user mode). Rounds alternate the two modes and the
// median is printed. Then: recovery time of a shard log of 1,000,000 records.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { open } from '@ringkv/engine'

const quick = process.env.RINGKV_BENCH_QUICK === '1'
const rounds = quick ? 1 : 3
const secondsPerRun = quick ? 0.5 : 3
const recoveryRecords = quick ? 20_000 : 1_000_000
const concurrencies = [1, 16, 256]
const backend = process.env.RINGKV_BENCH_BACKEND ?? 'io_uring'
const scratch = fs.mkdtempSync(path.join(process.env.RINGKV_BENCH_DIR ?? os.tmpdir(), 'ringkv-dual-'))

const key = (index) => {
  const bytes = Buffer.alloc(16)
  bytes.writeUInt32BE(index >>> 0, 12)
  bytes.writeUInt32BE(0x52494e47, 0)
  return bytes
}
const values = Array.from({ length: 1024 }, () => crypto.randomBytes(100))

async function putsRun(intentOnly, concurrency) {
  if (intentOnly) process.env.RINGKV_BENCH_INTENT_ONLY = '1'
  else delete process.env.RINGKV_BENCH_INTENT_ONLY
  const directory = fs.mkdtempSync(path.join(scratch, 'run-'))
  const db = await open(directory, { shards: 1, backend })
  const latencies = []
  let next = 0
  const deadline = performance.now() + secondsPerRun * 1000
  const started = performance.now()
  async function client() {
    while (performance.now() < deadline) {
      const index = next++
      const began = performance.now()
      await db.put(key(index), values[index & 1023])
      latencies.push(performance.now() - began)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, client))
  const seconds = (performance.now() - started) / 1000
  await db.close()
  fs.rmSync(directory, { recursive: true, force: true })
  latencies.sort((a, b) => a - b)
  return {
    putsPerSecond: latencies.length / seconds,
    p50: latencies[Math.floor(latencies.length * 0.5)] * 1000,
    p99: latencies[Math.floor(latencies.length * 0.99)] * 1000,
  }
}

const median = (numbers) => [...numbers].sort((a, b) => a - b)[Math.floor(numbers.length / 2)]
const rows = []
for (const concurrency of concurrencies) {
  const samples = { dual: [], intentOnly: [] }
  for (let round = 0; round < rounds; round++) {
    samples.dual.push(await putsRun(false, concurrency))
    samples.intentOnly.push(await putsRun(true, concurrency))
  }
  for (const [mode, list] of Object.entries(samples)) {
    rows.push({
      mode,
      concurrency,
      putsPerSecond: median(list.map((sample) => sample.putsPerSecond)),
      p50: median(list.map((sample) => sample.p50)),
      p99: median(list.map((sample) => sample.p99)),
    })
  }
  process.stderr.write(`concurrency ${concurrency} done\n`)
}
delete process.env.RINGKV_BENCH_INTENT_ONLY

console.log(`\nDurable puts, 1 shard, ${backend}, ${os.cpus().length} cores, median of ${rounds} round(s) of ${secondsPerRun} s\n`)
console.log('| log | concurrency | puts/s | p50 µs | p99 µs |')
console.log('|---|---:|---:|---:|---:|')
for (const row of rows) {
  console.log(
    `| ${row.mode === 'dual' ? 'intent + completion' : 'intent only'} | ${row.concurrency} | ${Math.round(row.putsPerSecond).toLocaleString('en')} | ${Math.round(row.p50)} | ${Math.round(row.p99)} |`,
  )
}

// Recovery: load the records in batches of 1,000, close, and time the reopen.
const directory = fs.mkdtempSync(path.join(scratch, 'recovery-'))
let db = await open(directory, { shards: 1, backend })
for (let start = 0; start < recoveryRecords; start += 1000) {
  const operations = []
  for (let index = start; index < Math.min(start + 1000, recoveryRecords); index++) {
    operations.push({ type: 'put', key: key(index), value: values[index & 1023] })
  }
  await db.batch(operations)
}
await db.close()
const opened = performance.now()
db = await open(directory, { backend })
const openMs = performance.now() - opened
const report = db.recovery[0]
const sample = await db.get(key(recoveryRecords - 1))
if (sample === undefined || Buffer.compare(Buffer.from(sample), values[(recoveryRecords - 1) & 1023]) !== 0) {
  throw new Error('recovery lost the last record')
}
await db.close()
console.log(
  `\nRecovery of ${report.recordsReplayed.toLocaleString('en')} records (${report.batchesReplayed} batches, ` +
    `${(report.bytesReplayed / 1e6).toFixed(1)} MB of intent log): replay ${Math.round(report.durationMs)} ms, ` +
    `whole open ${Math.round(openMs)} ms`,
)
fs.rmSync(scratch, { recursive: true, force: true })
