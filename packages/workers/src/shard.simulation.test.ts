// Seeded simulation of a shard on the simulated storage (testing/simulator.ts): many seeds per run, each a
// random workload, random completion order, crashes, faults, recoveries and an exact check of what
// survived. A failing seed is printed with the one command that replays it.
//
//   RINGKV_SEED=<n>        replay one seed (prints its run in full)
//   RINGKV_SEEDS=<count>   run more seeds than the CI default (800)
//   RINGKV_SEED_FIRST=<n>  start the seeds there (default 1), to explore new ones

import { describe, expect, it } from 'vitest'
import { replayCommand, simulate, type SimulationResult, type Violation } from './testing/simulator.js'

const seedsDefault = 800
const replaySeed = process.env.RINGKV_SEED === undefined ? undefined : Number(process.env.RINGKV_SEED)
const seedCount = Number(process.env.RINGKV_SEEDS ?? seedsDefault)
const seedFirst = Number(process.env.RINGKV_SEED_FIRST ?? 1)
const seeds = replaySeed !== undefined ? [replaySeed] : Array.from({ length: seedCount }, (_, index) => seedFirst + index)

function summarize(results: SimulationResult[], milliseconds: number): string {
  const count = (predicate: (result: SimulationResult) => boolean): number => results.filter(predicate).length
  const faults = new Map<string, number>()
  for (const result of results) for (const fault of result.faults) faults.set(fault.kind, (faults.get(fault.kind) ?? 0) + 1)
  return [
    `${results.length} seeds in ${(milliseconds / 1000).toFixed(1)} s: ` +
      `${results.reduce((sum, result) => sum + result.generations, 0)} crashes, ` +
      `${results.reduce((sum, result) => sum + result.requestsAcknowledged, 0)} requests acknowledged, ` +
      `${results.reduce((sum, result) => sum + result.requestsFailed, 0)} failed with IO_ERROR, ` +
      `${results.reduce((sum, result) => sum + result.storageSteps, 0)} storage completions`,
    `  checkpoints: ${results.reduce((sum, result) => sum + result.checkpointsAsked, 0)} asked for, ` +
      `${results.reduce((sum, result) => sum + result.checkpointsDone, 0)} of those made current, ` +
      `${results.reduce((sum, result) => sum + result.checkpointsFailed, 0)} failed; ` +
      `${results.reduce((sum, result) => sum + result.checkpointLoads, 0)} reopens loaded a checkpoint, ` +
      `${results.reduce((sum, result) => sum + result.segmentsReused, 0)} segments reused`,
    `  ${count((result) => result.faults.length === 0)} seeds without faults, ${count((result) => result.faults.length > 0)} with: ` +
      ([...faults].map(([kind, number]) => `${kind} ${number}`).join(', ') || 'none'),
    `  ${count((result) => result.ending === 'damage-reported')} opens refused with WAL_CORRUPT ` +
      `(${count((result) => result.ending === 'damage-reported' && result.faults.every((fault) => !damagesData(fault.kind)))} ` +
      `with only I/O errors injected, where no acknowledged byte was damaged), ` +
      `${results.reduce((sum, result) => sum + result.blindSpotRequests, 0)} acknowledged requests let go under the blind spot, ` +
      `${count((result) => result.ending === 'violation')} seeds with violations`,
  ].join('\n')
}

/** Faults that change bytes on disk behind the shard's back (the I/O errors only fail an operation). */
function damagesData(kind: string): boolean {
  return kind === 'bitFlip' || kind === 'lost' || kind === 'misdirected'
}

function describeFailure(result: SimulationResult): string {
  const lines = [`seed ${result.seed}: ${result.violations.length} violation(s); replay: ${replayCommand(result.seed)}`]
  for (const violation of result.violations.slice(0, 8))
    lines.push(`  [generation ${violation.generation}] ${violation.kind}: ${violation.message}`)
  const faults = result.faults.map(
    (fault) =>
      `${fault.kind} ${fault.log}#${fault.logWriteIndex} ${fault.path}@${fault.fileOffset}+${fault.length}${fault.landedAt === undefined ? '' : `->${fault.landedAt}`}`,
  )
  lines.push(`  faults: ${faults.join('; ') || 'none'}`)
  return lines.join('\n')
}

/**
 * Findings the simulation made that are reported to the lead and not fixed yet. A violation matching one
 * is printed as KNOWN, with its seed and replay command, and does not fail the run; every other violation
 * does. Remove an entry when its fix lands: from then on the simulation holds the shard to it.
 */
const knownIssues: { name: string; matches: (result: SimulationResult, violation: Violation) => boolean }[] = []

function unknownViolations(result: SimulationResult): Violation[] {
  return result.violations.filter((violation) => !knownIssues.some((issue) => issue.matches(result, violation)))
}

/** The seeds run inside the first test; many seeds (RINGKV_SEEDS) need more than the default timeout. */
const runTimeoutMs = Math.max(120_000, seeds.length * 200)

// Every seed runs once; the two invariant tests below judge the seeds that ran without faults and the
// seeds that ran with them.
let results: SimulationResult[] | undefined
async function runSeeds(): Promise<SimulationResult[]> {
  if (results !== undefined) return results
  const started = performance.now()
  results = []
  for (const seed of seeds) results.push(await simulate({ seed }))
  console.log(summarize(results, performance.now() - started))
  if (replaySeed !== undefined) console.log(JSON.stringify(results[0], (key, value) => (key === 'bytes' ? undefined : value), 2))
  return results
}

function judge(chosen: SimulationResult[]): void {
  for (const issue of knownIssues) {
    const seen = chosen.filter((result) => result.violations.some((violation) => issue.matches(result, violation)))
    if (seen.length > 0) {
      console.warn(
        `KNOWN ISSUE (reported, not fixed): ${issue.name}: ${seen.length} seed(s): ${seen.map((result) => result.seed).join(', ')}; ` +
          `replay: ${replayCommand(seen[0]!.seed)}`,
      )
    }
  }
  const failures = chosen.filter((result) => unknownViolations(result).length > 0)
  for (const failure of failures) console.error(describeFailure(failure))
  expect(failures.map((failure) => `seed ${failure.seed}: ${replayCommand(failure.seed)}`)).toEqual([])
}

describe('shard simulation on simulated storage', () => {
  it(
    `crashes only (the fault-free half of ${seeds.length} seeds): every open succeeds, every acknowledged write survives`,
    async () => {
      const all = await runSeeds()
      judge(all.filter((result) => result.faults.length === 0 && Object.values(result.faultRates).every((rate) => rate === 0)))
    },
    runTimeoutMs,
  )

  it(
    'with faults (the other half): damage to acknowledged data is reported (WAL_CORRUPT), never hidden',
    async (context) => {
      const all = await runSeeds()
      const faulty = all.filter((result) => !(result.faults.length === 0 && Object.values(result.faultRates).every((rate) => rate === 0)))
      if (!all.some((result) => result.dualLog)) {
        // The v0 single log cannot tell damage to its last batch from a torn tail (recovery-cases.ts says so): a bit
        // flip there, or a lost write followed by a failed one, is dropped silently. The completion log of
        // the dual log closes that gap; until a shard writes one, this test reports what it saw and skips.
        const failures = faulty.filter((result) => unknownViolations(result).length > 0)
        console.warn(
          `SKIPPED: the shard writes no completion log (v0), which cannot detect damage to its last batch; ` +
            `${failures.length} of ${faulty.length} fault seeds show that gap: ${failures.map((failure) => failure.seed).join(', ')}`,
        )
        context.skip()
        return
      }
      judge(faulty)
    },
    runTimeoutMs,
  )

  it('the runs above cover checkpoints and reused segments, with crashes around them', async (context) => {
    if (seeds.length < 100) return context.skip() // a replay of a few seeds need not reach them
    const all = await runSeeds()
    expect(all.reduce((sum, result) => sum + result.checkpointLoads, 0)).toBeGreaterThan(0)
    expect(all.filter((result) => result.segmentsReused > 0).length).toBeGreaterThan(10)
  })

  it('is deterministic: the same seed gives the same run', async () => {
    for (const seed of seeds.slice(0, 5)) {
      const first = await simulate({ seed })
      const second = await simulate({ seed })
      expect(second.traceDigest).toBe(first.traceDigest)
      expect(second).toEqual(first)
    }
  })

  it('catches the broken variant that acknowledges before the fdatasync (what the Poro design did)', async () => {
    const broken: SimulationResult[] = []
    for (let seed = 1; seed <= 60; seed++) broken.push(await simulate({ seed, faults: 'none', acknowledgeBeforeSync: true }))
    const lost = broken.filter((result) => result.violations.some((violation) => violation.kind === 'acknowledged-write-lost'))
    console.log(
      `acknowledge-before-sync: ${lost.length} of ${broken.length} seeds lost an acknowledged write, e.g. ` +
        (lost[0] === undefined ? 'none' : describeFailure(lost[0])),
    )
    expect(lost.length).toBeGreaterThan(0)
  })
})
