// The crash tests' two halves that are not file systems: the writer child (start it, read its reports,
// kill it) and the model that turns its acknowledgements into the exact set of values each key may hold
// after a crash, then checks a reopened database against it.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, type TestContext } from 'vitest'
import { open, type EngineError } from '@ringkv/engine'
// @ts-expect-error model.mjs is plain JavaScript shared with the writer child; its types are below.
import * as modelModule from './model.mjs'
import { announceSkip } from './loopfs.js'
import { describeDirectory, directoryBytes } from './report.js'

export interface Workload {
  clients: number
  keysPerClient: number
  batchOperationsMax: number
  valueBytesMax: number
  largeValueOneIn: number
  largeValueBytesMax: number
}
interface Write {
  type: 'put' | 'delete'
  keyIndex: number
  valueLength: number
}
interface ModelModule {
  workloadDefaults: Workload
  operationAt(workload: Workload, seed: number, round: number, client: number, sequence: number): { type: string; writes: Write[] }
  valueOf(seed: number, round: number, client: number, sequence: number, writeIndex: number, length: number): Uint8Array
  effectsOf(workload: Workload, seed: number, round: number, client: number, sequence: number): Map<string, Uint8Array | undefined>
  keyOf(client: number, keyIndex: number): string
  describeValue(value: Uint8Array | undefined): string
  sameBytes(left: Uint8Array | undefined, right: Uint8Array | undefined): boolean
  random(seed: number): { next(): number; integer(maxExclusive: number): number }
  mix(...numbers: number[]): number
}
export const model = modelModule as unknown as ModelModule

export type Backend = 'io_uring' | 'fs'

/** A number from the environment, or the default. Lets the README raise rounds without editing tests. */
export function environmentNumber(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name}=${raw} is not a non-negative number`)
  return value
}

/** Shards of the writer's database in the crash tests that run one (RINGKV_CRASH_SHARDS). */
export const crashShards = environmentNumber('RINGKV_CRASH_SHARDS', 2)

/** A database that lives across rounds is replaced past this size (RINGKV_CRASH_DB_BYTES_MAX). */
const roundDatabaseBytesMax = environmentNumber('RINGKV_CRASH_DB_BYTES_MAX', 96 * 1024 * 1024)

/** The base seed of a run: RINGKV_CRASH_SEED replays one; otherwise a fresh one, printed by each test. */
export const baseSeed = environmentNumber('RINGKV_CRASH_SEED', (Date.now() ^ (process.pid << 16)) >>> 0)

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

// ---------------------------------------------------------------------------------------------------------
// The writer child

const writerPath = fileURLToPath(new URL('./writer.mjs', import.meta.url))

export interface WriterConfig {
  mode: 'write' | 'open'
  dir: string
  backend: Backend
  shards: number
  seed: number
  round: number
  workload: Workload
  operationsPerClient?: number
  /**
   * Checkpoints forced often, so that cuts land inside them, their renames and the segments' retirement:
   * small segments, an automatic checkpoint every `logBytes` of log, and on some rounds a loop calling
   * db.compact() back to back. Off with RINGKV_CRASH_COMPACTION=off.
   */
  compaction?: { segmentBytes: number; logBytes: number; compactLoop: boolean }
}

/** Whether the writers force checkpoints (RINGKV_CRASH_COMPACTION, default on). */
export const compactionForced = (process.env.RINGKV_CRASH_COMPACTION ?? 'on') !== 'off'

export interface WriterError {
  client: number
  sequence: number
  code: string
  causeCode: string
  message: string
}

/**
 * A crash test's child process: `node script '<config as JSON>'`, reporting one line at a time on stdout
 * (child-report.mjs). Calls `line` with each whole line (a last unterminated one too, once the child is
 * gone), then `closed`; keeps the first 20 kB of stderr for the test's report.
 */
export class ReportingChild {
  readonly child: ChildProcess
  stderr = ''
  private partial = ''

  constructor(
    scriptPath: string,
    config: unknown,
    line: (line: string) => void,
    closed: (code: number | null, signal: NodeJS.Signals | null) => void,
  ) {
    this.child = spawn(process.execPath, [scriptPath, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] })
    const receive = (chunk: string): void => {
      const lines = (this.partial + chunk).split('\n')
      this.partial = lines.pop()!
      for (const whole of lines) if (whole !== '') line(whole)
    }
    this.child.stdout!.setEncoding('utf8')
    this.child.stdout!.on('data', receive)
    this.child.stderr!.setEncoding('utf8')
    this.child.stderr!.on('data', (chunk: string) => {
      if (this.stderr.length < 20_000) this.stderr += chunk
    })
    this.child.once('close', (code, signal) => {
      receive('\n')
      closed(code, signal)
    })
  }

  /** SIGKILL, unless it has exited already. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
  }
}

export class Writer {
  private readonly process: ReportingChild
  /** client -> its last acknowledged sequence in this round (0: none). */
  readonly acknowledged: number[]
  readonly errors: WriterError[] = []
  readonly lines: string[] = []
  acknowledgementCount = 0
  /** The child got as far as calling open: a kill from here to READY lands in recovery. */
  opening = false
  readyLine: string | undefined
  openFailure: string | undefined
  readLine: string | undefined
  /** db.compact() calls that completed (the rounds with a compact loop). */
  compactions = 0
  closedLine: string | undefined
  fatal: string | undefined
  protocolProblems: string[] = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly ready: Promise<void>
  /** Resolves when the child is about to call open (or has exited). */
  readonly openingStarted: Promise<void>
  private openingResolve!: () => void
  private readyResolve!: () => void
  private acknowledgementWaiters: { count: number; resolve: () => void }[] = []

  constructor(readonly config: WriterConfig) {
    this.acknowledged = new Array(config.workload.clients).fill(0)
    this.ready = new Promise((resolve) => (this.readyResolve = resolve))
    this.openingStarted = new Promise((resolve) => (this.openingResolve = resolve))
    let exited!: (outcome: { code: number | null; signal: NodeJS.Signals | null }) => void
    this.exited = new Promise((resolve) => (exited = resolve))
    this.process = new ReportingChild(
      writerPath,
      config,
      (line) => this.handle(line),
      (code, signal) => {
        this.readyResolve() // also when it never got ready: waiters look at readyLine/openFailure
        this.openingResolve()
        for (const waiter of this.acknowledgementWaiters) waiter.resolve()
        exited({ code, signal })
      },
    )
  }

  get child(): ChildProcess {
    return this.process.child
  }

  get stderr(): string {
    return this.process.stderr
  }

  private handle(line: string): void {
    const [kind, ...fields] = line.split(' ')
    if (kind === 'A') {
      // Recorded only now: the child writes this line after the engine's promise resolved.
      const client = Number(fields[0])
      const sequence = Number(fields[1])
      if (sequence !== this.acknowledged[client]! + 1) {
        this.protocolProblems.push(`client ${client} acknowledged ${sequence} after ${this.acknowledged[client]}`)
      }
      this.acknowledged[client] = sequence
      this.acknowledgementCount++
      this.acknowledgementWaiters = this.acknowledgementWaiters.filter((waiter) => {
        if (this.acknowledgementCount < waiter.count) return true
        waiter.resolve()
        return false
      })
      return
    }
    if (kind === 'K') {
      this.compactions = Number(fields[0])
      return
    }
    if (this.lines.length < 200) this.lines.push(line)
    if (kind === 'E') {
      const [client, sequence, code, causeCode, ...message] = fields
      this.errors.push({
        client: Number(client),
        sequence: Number(sequence),
        code: code!,
        causeCode: causeCode!,
        message: message.join(' '),
      })
    } else if (kind === 'OPENING') {
      this.opening = true
      this.openingResolve()
    } else if (kind === 'READY') {
      this.readyLine = fields.join(' ')
      this.readyResolve()
    } else if (kind === 'OPENFAIL') {
      this.openFailure = fields.join(' ')
      this.readyResolve()
    } else if (kind === 'READ') {
      this.readLine = fields.join(' ')
    } else if (kind === 'CLOSED') {
      this.closedLine = fields.join(' ')
    } else if (kind === 'FATAL') {
      this.fatal = fields.join(' ')
    }
  }

  /** Resolves once `count` acknowledgements have arrived in total, or the child has exited. */
  acknowledgements(count: number): Promise<void> {
    if (this.acknowledgementCount >= count || this.child.exitCode !== null) return Promise.resolve()
    return new Promise((resolve) => this.acknowledgementWaiters.push({ count, resolve }))
  }

  async kill(): Promise<void> {
    this.process.kill()
    await this.exited
  }

  /** Open time the child reported, in ms. */
  get openMs(): number | undefined {
    return this.readyLine === undefined ? undefined : Number(this.readyLine.split(' ')[0])
  }

  describe(): string {
    return [
      `writer ${JSON.stringify({ ...this.config, workload: undefined })}`,
      `acks=${this.acknowledgementCount} errors=${this.errors.length}`,
      ...this.lines.slice(0, 20).map((line) => `  | ${line.slice(0, 300)}`),
      this.stderr ? `  stderr: ${this.stderr.slice(0, 2000)}` : '',
    ].join('\n')
  }
}

// ---------------------------------------------------------------------------------------------------------
// The model

export type Observed = Map<string, Uint8Array | undefined>

export interface CheckResult {
  problems: string[]
  observed: Observed
  /** Keys that hold the value of an operation that was in flight (not acknowledged) at the crash. */
  unacknowledgedSurvivors: number
  recovery: unknown
  openMs: number
}

/**
 * What every key may hold. `baseline` is what the database held, as checked, before the current round; a
 * round's acknowledgements and its in-flight operations come on top of it.
 */
export class CrashModel {
  baseline: Observed = new Map()
  round = 1

  constructor(
    readonly workload: Workload,
    readonly seed: number,
  ) {
    for (let client = 0; client < workload.clients; client++) {
      for (let keyIndex = 0; keyIndex < workload.keysPerClient; keyIndex++) {
        this.baseline.set(model.keyOf(client, keyIndex), undefined)
      }
    }
  }

  writerConfig(dir: string, backend: Backend, shards: number, mode: 'write' | 'open' = 'write'): WriterConfig {
    const compaction = compactionForced ? { segmentBytes: 64 * 1024, logBytes: 64 * 1024, compactLoop: this.round % 2 === 1 } : undefined
    return { mode, dir, backend, shards, seed: this.seed, round: this.round, workload: this.workload, compaction }
  }

  /**
   * For each key: the values it may hold, given each client's last acknowledged sequence this round.
   * The first is what the last acknowledged write left; the second, if any, what the client's next
   * operation (possibly in flight at the crash) writes.
   */
  allowedValues(
    acknowledged: number[],
  ): Map<string, { acknowledged: Uint8Array | undefined; inFlight?: Uint8Array | undefined; source: string }> {
    const allowed = new Map<string, { acknowledged: Uint8Array | undefined; inFlight?: Uint8Array | undefined; source: string }>()
    for (const [key, value] of this.baseline) allowed.set(key, { acknowledged: value, source: `before round ${this.round}` })
    for (let client = 0; client < this.workload.clients; client++) {
      const last = acknowledged[client] ?? 0
      // Walk back from the last acknowledged operation: the latest write to each key wins.
      const settled = new Set<string>()
      for (let sequence = last; sequence >= 1 && settled.size < this.workload.keysPerClient; sequence--) {
        const operation = model.operationAt(this.workload, this.seed, this.round, client, sequence)
        operation.writes.forEach((write, writeIndex) => {
          const key = model.keyOf(client, write.keyIndex)
          if (settled.has(key)) return
          settled.add(key)
          allowed.set(key, {
            acknowledged:
              write.type === 'put' ? model.valueOf(this.seed, this.round, client, sequence, writeIndex, write.valueLength) : undefined,
            source: `round ${this.round} client ${client} sequence ${sequence} (acknowledged)`,
          })
        })
      }
      for (const [key, value] of model.effectsOf(this.workload, this.seed, this.round, client, last + 1)) {
        allowed.get(key)!.inFlight = value
      }
    }
    return allowed
  }

  /**
   * Opens `dir` in this process and checks every key against `allowedValues(acknowledged)`. With
   * `recoveryMode` 'truncate' (a diagnosis after a strict open was refused: it cuts the log), the open
   * keeps the intact prefix, and the problems count the acknowledged writes that recovery could not keep.
   */
  async check(
    dir: string,
    backend: Backend,
    shards: number,
    acknowledged: number[],
    recoveryMode: 'strict' | 'truncate' = 'strict',
  ): Promise<CheckResult> {
    const allowed = this.allowedValues(acknowledged)
    const started = performance.now()
    let db
    try {
      db = await open(dir, { shards, backend, recovery: recoveryMode })
    } catch (error) {
      const engineError = error as EngineError & { cause?: { code?: string } }
      return {
        problems: [`reopen failed: ${engineError.code ?? ''} ${engineError.cause?.code ?? ''} ${engineError.message}`],
        observed: new Map(),
        unacknowledgedSurvivors: 0,
        recovery: undefined,
        openMs: performance.now() - started,
      }
    }
    const openMs = performance.now() - started
    const problems: string[] = []
    const observed: Observed = new Map()
    let unacknowledgedSurvivors = 0
    const database = db as unknown as { recovery?: unknown; recoveryReport?: unknown }
    const recovery = database.recovery ?? database.recoveryReport
    try {
      for (const [key, expectation] of allowed) {
        const raw = await db.get(key)
        const value = raw === undefined ? undefined : new Uint8Array(raw)
        observed.set(key, value)
        if (model.sameBytes(value, expectation.acknowledged)) continue
        if ('inFlight' in expectation && model.sameBytes(value, expectation.inFlight)) {
          if (!model.sameBytes(expectation.inFlight, expectation.acknowledged)) unacknowledgedSurvivors++
          continue
        }
        problems.push(
          `${key}: holds ${model.describeValue(value)}; allowed: ${model.describeValue(expectation.acknowledged)} ` +
            `from ${expectation.source}` +
            ('inFlight' in expectation ? `, or the in-flight ${model.describeValue(expectation.inFlight)}` : ''),
        )
      }
    } finally {
      await db.close()
    }
    return { problems, observed, unacknowledgedSurvivors, recovery, openMs }
  }

  /** The checked state becomes the baseline of the next round. */
  nextRound(observed: Observed): void {
    this.baseline = observed
    this.round++
  }
}

/** What every crash test checks after a recovery: each key holds what the model allows, and nothing was repaired. */
export function expectRecovered(result: CheckResult, dir: string, writer: Writer, where: string): void {
  expect(
    result.problems,
    `${where}: after recovery\n${writer.describe()}\nrecovery ${JSON.stringify(result.recovery)}\n${describeDirectory(dir)}`,
  ).toEqual([])
  const reports = (result.recovery ?? []) as { repaired?: unknown }[]
  expect(
    reports.filter((report) => report.repaired !== undefined),
    `${where}: recovery repaired damage`,
  ).toEqual([])
}

/**
 * One database that lives across crash rounds under `root` (each round recovers the last one's log and
 * appends to it), started afresh, in a new directory with a new model, once it grows past `bytesMax`
 * (RINGKV_CRASH_DB_BYTES_MAX unless given).
 */
export class RoundDatabase {
  dir: string
  crashModel: CrashModel
  /** Databases used so far. */
  count = 1

  constructor(
    private readonly root: string,
    private readonly seed: number,
    private readonly bytesMax: number = roundDatabaseBytesMax,
  ) {
    this.dir = join(root, 'db-0')
    this.crashModel = new CrashModel(model.workloadDefaults, seed)
  }

  /** After a round's check: what it observed is the next round's baseline, unless the database starts afresh. */
  nextRound(observed: Observed): void {
    this.crashModel.nextRound(observed)
    if (directoryBytes(this.dir) <= this.bytesMax) return
    rmSync(this.dir, { recursive: true, force: true })
    this.dir = join(this.root, `db-${this.count}`)
    this.crashModel = new CrashModel(model.workloadDefaults, model.mix(this.seed, this.count))
    this.count++
  }
}

/** Which backends to run: both, unless RINGKV_CRASH_BACKENDS narrows them (e.g. 'fs'). */
export function crashBackends(): Backend[] {
  const raw = process.env.RINGKV_CRASH_BACKENDS
  if (!raw) return ['io_uring', 'fs']
  return raw.split(',').map((name) => {
    if (name !== 'io_uring' && name !== 'fs') throw new RangeError(`RINGKV_CRASH_BACKENDS: unknown backend ${name}`)
    return name
  })
}

/**
 * Why `backend` cannot run here (io_uring disabled by sysctl or seccomp), or undefined. Asks the engine:
 * a forced io_uring open that fails to set up a ring is the engine's own verdict.
 */
export async function backendSkipReason(backend: Backend, dir: string): Promise<string | undefined> {
  try {
    const db = await open(dir, { shards: 1, backend })
    await db.close()
    return undefined
  } catch (error) {
    const engineError = error as EngineError
    return `backend ${backend} cannot be opened here: ${engineError.code ?? ''} ${engineError.message}`
  }
}

/**
 * Skips the running test, and says why, when `backend` cannot run here. The probe opens a database in a
 * scratch directory under `parent` (so on the file system under test), removed after.
 */
export async function skipWithoutBackend(context: TestContext, what: string, backend: Backend, parent: string): Promise<void> {
  const probe = mkdtempSync(join(parent, 'probe-'))
  const reason = await backendSkipReason(backend, probe).finally(() => rmSync(probe, { recursive: true, force: true }))
  if (reason === undefined) return
  announceSkip(what, reason)
  context.skip(reason)
}
