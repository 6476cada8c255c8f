// Two builds of ringkv against each other in paired runs: the honest way to show a speed change on a noisy
// machine. Each pair runs the same fixed job once with each build, in turn (A then B, then B then A on the
// next pair, so neither always goes first), and the ratio is taken pair by pair.
//   node bench/scripts/paired.mjs --a ../old-checkout --b . --concurrency 4096 --puts 400000 --order hashed
//   node bench/scripts/paired.mjs --a ../old-checkout --b . --concurrency 1 --puts 3000 --pairs 10
//   RINGKV_BENCH_QUICK=1 node bench/scripts/paired.mjs --a . --b .    a few seconds, to keep it from rotting
// --a and --b are checkouts whose packages are built (`npx -y pnpm@10 run build`); this one's bench must be
// built too (profile.mjs says how). A job is profile.mjs's run without the profiler: ringkv with its default
// options on a fresh directory, PUTS durable puts by C closed-loop clients. Prints each pair's puts/s and
// B/A, then the medians and the min–max of B/A.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { argument, requiredArgument } from './arguments.mjs'

const profileScript = fileURLToPath(new URL('./profile.mjs', import.meta.url))

const quick = process.env.RINGKV_BENCH_QUICK === '1'
const trees = { A: path.resolve(requiredArgument('a')), B: path.resolve(requiredArgument('b')) }
const concurrency = Number(argument('concurrency', '256'))
const puts = Number(argument('puts', quick ? '2000' : '200000'))
const order = argument('order', 'hashed')
const pairs = Number(argument('pairs', quick ? '1' : '10'))
for (const count of [concurrency, puts, pairs]) {
  if (!Number.isInteger(count) || count < 1) throw new RangeError('--concurrency, --puts and --pairs take positive integers')
}
if (order !== 'sequential' && order !== 'hashed') throw new RangeError(`--order: unknown order ${order}`)

/** puts/s of one job with the build in `tree`. */
function run(tree) {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ringkv-paired-'))
  try {
    const job = { order, concurrency, puts, directory: path.join(scratch, 'db'), tree }
    const child = spawnSync(process.execPath, [profileScript, '--child', JSON.stringify(job)], { encoding: 'utf8' })
    if (child.status !== 0) throw new Error(`run with ${tree} failed: ${child.stderr}`)
    const measured = JSON.parse(child.stdout.trim().split('\n').pop())
    return measured.puts / measured.seconds
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
  }
}

const median = (values) => {
  const sorted = [...values].sort((left, right) => left - right)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
const rate = (value) => Math.round(value).toLocaleString('en-US')

console.log(`A = ${trees.A}\nB = ${trees.B}\n${order} keys, c=${concurrency}, ${puts} puts per run, ${pairs} pair(s)\n`)
console.log('| pair | A puts/s | B puts/s | B/A |\n|---:|---:|---:|---:|')
const results = { A: [], B: [], ratios: [] }
for (let pair = 1; pair <= pairs; pair++) {
  const first = pair % 2 === 1 ? 'A' : 'B'
  const second = first === 'A' ? 'B' : 'A'
  const rates = { [first]: run(trees[first]), [second]: run(trees[second]) }
  results.A.push(rates.A)
  results.B.push(rates.B)
  results.ratios.push(rates.B / rates.A)
  console.log(`| ${pair} | ${rate(rates.A)} | ${rate(rates.B)} | ${(rates.B / rates.A).toFixed(3)} |`)
}
const ratios = results.ratios
console.log(
  `\nmedian: A ${rate(median(results.A))} puts/s, B ${rate(median(results.B))} puts/s; ` +
    `B/A ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)} – ${Math.max(...ratios).toFixed(3)})`,
)
