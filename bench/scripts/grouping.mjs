// Where the bench's group commit runs, measured: the two `Grouping`s of bench/src/engines.ts against each
// other, for better-sqlite3 and the node:fs log, in paired rounds. `groupingDefault` rests on this.
//   node bench/scripts/grouping.mjs                          (after `tsc -b bench`) 5 rounds, c=256, sequential keys
//   node bench/scripts/grouping.mjs --rounds 9 --concurrency 16 --order hashed
//   RINGKV_BENCH_QUICK=1 node bench/scripts/grouping.mjs     a few seconds, to keep it from rotting
// Each measurement opens a fresh directory, runs the bench's own closed loop of durable puts (its keys, its
// values) for a warm-up and a measured window, and closes. Within a round both groupings run, in an order
// that alternates from round to round (A B, B A, …), so the machine's drift falls on both; a round's ratio
// is microtask-drain's puts/s over event-loop-turn's. Prints medians and the ratio's range.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { openEngine } from '../dist/engines.js'
import { keyOf, keyOrders, runClosedLoop, valueOf } from '../dist/workload.js'
import { argument } from './arguments.mjs'

const quick = process.env.RINGKV_BENCH_QUICK === '1'
const rounds = Number(argument('rounds', quick ? '1' : '5'))
const concurrency = Number(argument('concurrency', '256'))
const order = argument('order', 'sequential')
const warmupMs = quick ? 100 : 500
const measureMs = quick ? 300 : 2000
for (const count of [rounds, concurrency]) {
  if (!Number.isInteger(count) || count < 1) throw new RangeError('--rounds and --concurrency take positive integers')
}
if (!keyOrders.includes(order)) throw new RangeError(`--order must be one of ${keyOrders.join(', ')}`)

const groupings = ['microtask-drain', 'event-loop-turn']
const engines = [
  { label: 'better-sqlite3', engine: 'better-sqlite3' },
  { label: 'node:fs log', engine: 'fs-log' },
]
const scratch = fs.mkdtempSync(path.join(process.env.RINGKV_BENCH_DIR ?? os.tmpdir(), 'ringkv-grouping-'))

/** Durable puts/s, p50 and mean group size of one grouping on a fresh directory. */
async function measure(spec, grouping) {
  const directory = fs.mkdtempSync(path.join(scratch, `${spec.engine}-${grouping}-`))
  const engine = await openEngine({ ...spec, grouping }, directory)
  const result = await runClosedLoop(concurrency, warmupMs, measureMs, (sequence) => engine.put(keyOf(order, sequence), valueOf(sequence)))
  const { groups, operations } = engine.describe()
  await engine.close()
  fs.rmSync(directory, { recursive: true, force: true })
  return { ...result, groupSize: operations / groups }
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })
try {
  console.log(`c=${concurrency}, ${order} keys; ${rounds} round(s) of ${warmupMs} + ${measureMs} ms per point`)
  console.log(
    '\n| engine | grouping | durable puts/s | min – max | p50 ms | puts per group | drain against turn, per round: median (min – max) |',
  )
  console.log('|---|---|---:|---:|---:|---:|---:|')
  for (const spec of engines) {
    const results = Object.fromEntries(groupings.map((grouping) => [grouping, []]))
    for (let round = 0; round < rounds; round++) {
      const inOrder = round % 2 === 0 ? groupings : [...groupings].reverse()
      for (const grouping of inOrder) results[grouping].push(await measure(spec, grouping))
    }
    const ratios = results['microtask-drain'].map((result, round) => result.opsPerSecond / results['event-loop-turn'][round].opsPerSecond)
    for (const grouping of groupings) {
      const putsPerSecond = results[grouping].map((result) => result.opsPerSecond)
      const ratio =
        grouping === 'microtask-drain'
          ? `${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)} – ${Math.max(...ratios).toFixed(2)})`
          : ''
      console.log(
        `| ${spec.label} | ${grouping} | ${integer.format(median(putsPerSecond))} | ` +
          `${integer.format(Math.min(...putsPerSecond))} – ${integer.format(Math.max(...putsPerSecond))} | ` +
          `${(median(results[grouping].map((result) => result.latencyUsP50)) / 1000).toFixed(3)} | ` +
          `${median(results[grouping].map((result) => result.groupSize)).toFixed(1)} | ${ratio} |`,
      )
    }
  }
} finally {
  fs.rmSync(scratch, { recursive: true, force: true })
}
