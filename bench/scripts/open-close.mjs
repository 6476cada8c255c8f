// What a handle costs: open + put + close of one directory, many times in one process.
//   node --expose-gc bench/scripts/open-close.mjs                  100 cycles of a 2-shard directory
//   node --expose-gc bench/scripts/open-close.mjs --cycles 300 --shards 4
//   RINGKV_BENCH_QUICK=1 node --expose-gc bench/scripts/open-close.mjs   a few cycles, to keep it from rotting
// The first cycle creates the directory (and starts what stays for the process: libuv's threadpool, the
// modules); it is reported apart. Each later cycle opens the directory (its shards' recovery included),
// puts one key durably and closes. Prints the open, put and close times (median, p90, max), and the
// process's RSS, file descriptors and threads after the first cycle and after the last, each after a full
// garbage collection (run node with --expose-gc, or RSS is reported without one).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { open, threadLingerMs } from '@ringkv/engine'
import { argument } from './arguments.mjs'

const quick = process.env.RINGKV_BENCH_QUICK === '1'
const cycles = Number(argument('cycles', quick ? '5' : '100'))
const shards = Number(argument('shards', '2'))
for (const count of [cycles, shards]) {
  if (!Number.isInteger(count) || count < 1) throw new RangeError('--cycles and --shards take positive integers')
}

function processState() {
  globalThis.gc?.()
  const threads = Number(/^Threads:\s+(\d+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1])
  return { rssMB: process.memoryUsage().rss / 2 ** 20, fds: fs.readdirSync('/proc/self/fd').length, threads }
}

async function cycle(directory, index) {
  const started = performance.now()
  const db = await open(directory, { shards })
  const opened = performance.now()
  await db.put(`cycle-${index}`, 'x')
  const put = performance.now()
  await db.close()
  const closed = performance.now()
  return {
    openMs: opened - started,
    putMs: put - opened,
    closeMs: closed - put,
    recoveryMs: Math.max(...db.recovery.map((report) => report.durationMs)),
  }
}

function summary(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (fraction) => sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]
  return `median ${at(0.5).toFixed(1)}, p90 ${at(0.9).toFixed(1)}, max ${sorted.at(-1).toFixed(1)}`
}

const scratch = fs.mkdtempSync(path.join(process.env.RINGKV_BENCH_DIR ?? os.tmpdir(), 'ringkv-open-close-'))
try {
  const directory = path.join(scratch, 'db')
  const first = await cycle(directory, 0)
  await new Promise((resolve) => setTimeout(resolve, 100))
  const before = processState()
  const runs = []
  for (let index = 1; index <= cycles; index++) runs.push(await cycle(directory, index))
  await new Promise((resolve) => setTimeout(resolve, 100))
  const after = processState()
  // The shards' threads wait threadLingerMs for another open, then end.
  await new Promise((resolve) => setTimeout(resolve, threadLingerMs + 500))
  const ended = processState()
  const check = await open(directory)
  const found = (await check.get(`cycle-${cycles}`)) !== undefined
  await check.close()
  if (!found) throw new Error('the last cycle’s put was not found')

  console.log(`${shards} shards, ${cycles} cycles of open + put + close (${os.availableParallelism()} cores, Node.js ${process.version}):`)
  console.log(`first cycle (creates the directory): open ${first.openMs.toFixed(1)} ms`)
  console.log(`open ms:     ${summary(runs.map((run) => run.openMs))}`)
  console.log(`  recovery:  ${summary(runs.map((run) => run.recoveryMs))} (the slowest shard's, inside open)`)
  console.log(`put ms:      ${summary(runs.map((run) => run.putMs))}`)
  console.log(`close ms:    ${summary(runs.map((run) => run.closeMs))}`)
  const gc = globalThis.gc === undefined ? ' (no gc: run node with --expose-gc)' : ''
  const rss = (state) => `${state.rssMB.toFixed(1)} (${state.rssMB >= before.rssMB ? '+' : ''}${(state.rssMB - before.rssMB).toFixed(1)})`
  console.log(`after the first cycle -> after the last -> once the threads ended (${threadLingerMs} ms later):`)
  console.log(`RSS MB:      ${before.rssMB.toFixed(1)} -> ${rss(after)} -> ${rss(ended)}${gc}`)
  console.log(`fds:         ${before.fds} -> ${after.fds} -> ${ended.fds}`)
  console.log(`threads:     ${before.threads} -> ${after.threads} -> ${ended.threads}`)
} finally {
  fs.rmSync(scratch, { recursive: true, force: true })
}
