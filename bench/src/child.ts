// One engine, one key order, one round, in a process of its own (so that one engine's heap, threads, page
// cache habits and peak RSS never leak into another's figures). The parent sends a `ChildTask` over IPC; the
// child runs its phases in fresh directories under the task's directory and answers one `ChildResult`.
//
// Phases, in order, every key in the task's order (workload.ts):
// 1. durable puts at each concurrency, each level on a fresh, empty database, fresh keys;
// and, when the task says `load`:
// 2. a load of `loadKeys` keys in batches of `loadBatch`, each batch awaited before the next;
// 3. random gets of the loaded keys, `getConcurrency` readers, every answer checked;
// 4. close, bytes on disk, then reopen and read one key back (time to first answer).

import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { type Engine, type EngineSpec, openEngine } from './engines.js'
import { type ClosedLoopResult, type KeyOrder, keyOf, randomIndexes, runClosedLoop, valueBytes, valueOf } from './workload.js'

export interface Settings {
  concurrencies: number[]
  warmupMs: number
  measureMs: number
  loadKeys: number
  loadBatch: number
  getConcurrency: number
  getMs: number
  seed: number
}

export interface ChildTask {
  spec: EngineSpec
  order: KeyOrder
  /** Whether this child also runs the load, gets and reopen phases (2–4). */
  load: boolean
  directory: string
  settings: Settings
}

/** What phases 2–4 measured. */
export interface LoadResult {
  load: { keys: number; seconds: number; keysPerSecond: number }
  gets: ClosedLoopResult & { misses: number; mismatches: number }
  reopenMs: number
  diskBytes: number
  /** The whole child's, over every phase it ran (the puts included). */
  peakRssBytes: number
}

export interface ChildResult {
  label: string
  order: KeyOrder
  puts: ClosedLoopResult[]
  /** Set when the task said `load`. */
  loaded?: LoadResult
  /** The configuration that really ran, as the engine reported it (`Engine.setup`). */
  setup: string
  engineReport: Record<string, unknown>
  error?: string
  /** Set when the machine lacks what this configuration needs (io_uring forced where it cannot be set up). */
  skipped?: string
}

/** Puts of phase `phase` use key numbers from here on, far above the loaded keys 0 … loadKeys − 1. */
function putKeyBase(phase: number): number {
  return 0x8000_0000 + phase * 0x0800_0000
}

/** Bytes the directory really occupies (allocated blocks), so sparse or preallocated files count as they are. */
async function allocatedBytes(directory: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name)
    if (entry.isDirectory()) total += await allocatedBytes(path)
    else if (entry.isFile()) total += (await stat(path)).blocks * 512
  }
  return total
}

/**
 * Puts at each concurrency, each on a fresh database. Key numbers are the phase's base plus the closed loop's
 * sequence, handed out as puts are issued: every put writes a new key, and in the sequential order each key
 * is larger than every key issued before it.
 */
async function putPhases(task: ChildTask, report: Record<string, unknown>): Promise<{ puts: ClosedLoopResult[]; setup: string }> {
  const puts: ClosedLoopResult[] = []
  let setup = ''
  for (const [phase, concurrency] of task.settings.concurrencies.entries()) {
    const directory = join(task.directory, `puts-${concurrency}`)
    const engine = await openEngine(task.spec, directory)
    const base = putKeyBase(phase)
    const result = await runClosedLoop(concurrency, task.settings.warmupMs, task.settings.measureMs, (sequence) =>
      engine.put(keyOf(task.order, base + sequence), valueOf(base + sequence)),
    )
    report[`puts${concurrency}`] = engine.describe()
    setup = engine.setup()
    await engine.close()
    await rm(directory, { recursive: true, force: true })
    puts.push(result)
  }
  return { puts, setup }
}

async function load(engine: Engine, order: KeyOrder, settings: Settings): Promise<LoadResult['load']> {
  const startMs = performance.now()
  for (let first = 0; first < settings.loadKeys; first += settings.loadBatch) {
    const operations = []
    const end = Math.min(settings.loadKeys, first + settings.loadBatch)
    for (let index = first; index < end; index++) operations.push({ key: keyOf(order, index), value: valueOf(index) })
    await engine.putMany(operations)
  }
  const seconds = (performance.now() - startMs) / 1000
  return { keys: settings.loadKeys, seconds, keysPerSecond: settings.loadKeys / seconds }
}

async function gets(engine: Engine, order: KeyOrder, settings: Settings): Promise<LoadResult['gets']> {
  const nextIndex = randomIndexes(settings.seed)
  let misses = 0
  let mismatches = 0
  const result = await runClosedLoop(settings.getConcurrency, settings.warmupMs, settings.getMs, async (sequence) => {
    const index = nextIndex(settings.loadKeys)
    const value = await engine.get(keyOf(order, index))
    if (value === undefined) misses += 1
    else if (value.length !== valueBytes) mismatches += 1
    // A full comparison on one get in 64 catches a wrong value without making the check the workload.
    else if ((sequence & 63) === 0 && Buffer.compare(value, valueOf(index)) !== 0) mismatches += 1
  })
  return { ...result, misses, mismatches }
}

/** Phases 2–4 on a fresh database: load, random gets, then close, measure the disk, reopen and read back. */
async function loadPhases(task: ChildTask, report: Record<string, unknown>): Promise<LoadResult> {
  const loadDirectory = join(task.directory, 'load')
  let engine = await openEngine(task.spec, loadDirectory)
  const loaded = await load(engine, task.order, task.settings)
  const read = await gets(engine, task.order, task.settings)
  report.load = engine.describe()
  await engine.close()
  const diskBytes = await allocatedBytes(loadDirectory)

  const lastIndex = task.settings.loadKeys - 1
  const reopenStartMs = performance.now()
  engine = await openEngine(task.spec, loadDirectory)
  const value = await engine.get(keyOf(task.order, lastIndex))
  const reopenMs = performance.now() - reopenStartMs
  if (value === undefined || Buffer.compare(value, valueOf(lastIndex)) !== 0) {
    throw new Error(`after reopen, key ${lastIndex} is ${value === undefined ? 'missing' : 'wrong'}`)
  }
  await engine.close()
  await rm(loadDirectory, { recursive: true, force: true })
  return { load: loaded, gets: read, reopenMs, diskBytes, peakRssBytes: process.resourceUsage().maxRSS * 1024 }
}

async function run(task: ChildTask): Promise<ChildResult> {
  const engineReport: Record<string, unknown> = {}
  const { puts, setup } = await putPhases(task, engineReport)
  const loaded = task.load ? await loadPhases(task, engineReport) : undefined
  return { label: task.spec.label, order: task.order, puts, loaded, setup, engineReport }
}

process.once('message', (message) => {
  const task = message as ChildTask
  run(task).then(
    (result) => process.send!(result, () => process.exit(0)),
    (error: unknown) => {
      if ((error as { code?: unknown }).code === 'BACKEND_UNAVAILABLE') {
        process.send!({ label: task.spec.label, order: task.order, skipped: (error as Error).message }, () => process.exit(0))
        return
      }
      const text = error instanceof Error ? (error.stack ?? error.message) : String(error)
      process.send!({ label: task.spec.label, order: task.order, error: text }, () => process.exit(1))
    },
  )
})
