// One shard: its storage backend, its two logs, its table. It owns them for its whole life and promises
// that the table only ever holds durable data: a batch reaches the table only after both logs made it
// durable, so a read never sees an unacknowledged write; and a read issued after a write was acknowledged
// sees it, because the table takes every durable batch before the shard answers any read.
//
// A durable batch's writers are answered first, and the batch is applied to the table after: on the next
// turn of the worker's event loop, or earlier, at the next read or the next reserve, whichever comes first.
// So the acknowledgement travels to the main thread while the table applies the batch, instead of after.
// Measured with 256 clients on one shard: applying 256 puts took 67 µs (p50) between the batch's last
// completion and its acknowledgement, out of a round of about 860 µs.

import fs from 'node:fs'
import path from 'node:path'
import { completionRecordBytes } from './format/completion.js'
import { segmentName, segmentNumbers, type LogKind } from './format/segment-files.js'
import { EngineError } from './errors.js'
import { Log, type AppendCallback } from './log/log.js'
import type { BackendChoice } from './protocol.js'
import {
  latencyBucket,
  statsSlotBatches,
  statsSlotBytes,
  statsSlotCheckpointBatchLatencyMaxUs,
  statsSlotCheckpointBytes,
  statsSlotCheckpointDiskBytes,
  statsSlotSegmentsReused,
  statsSlotIteratorsOpen,
  statsSlotIteratorSnapshotBytes,
  statsSlotCheckpointDurationMs,
  statsSlotCheckpointFailures,
  statsSlotCheckpoints,
  statsSlotCheckpointSequence,
  statsSlotCheckpointStepMsMax,
  statsSlotCount,
  statsSlotLatencyFirst,
  statsSlotLatencyTotal,
  statsSlotLiveBytes,
  statsSlotLiveEntries,
  statsSlotLogDiskBytes,
  statsSlotRecords,
  viewSlotRoot,
  viewSlotSequence,
  viewStateBytes,
  type OrderedViewShare,
  type AutoCheckpoint,
  type BackupResult,
  type CheckpointResult,
} from './protocol.js'
import { CheckpointWriter, type CheckpointCallback } from './checkpoint/checkpoint-writer.js'
import { checkpointFiles, checkpointName } from './format/checkpoint.js'
import { copyBackup, type BackupPlan } from './checkpoint/backup.js'
import type { DurablePoint } from './log/log.js'
import { sectorSpan } from './format/sectors.js'
import { batchHeaderBytes } from './format/record.js'
import { recover, type LogResumption } from './log/recovery.js'
import { type RecoveryReport } from './protocol.js'
import { SegmentWriter } from './log/segment-writer.js'
import type { Storage } from './storage/storage.js'
import { createStorage } from './storage/uring.js'
import type { Table } from './table/table.js'
import { WasmTable } from './table/wasm-table.js'
import { rangeFrom, ShardIterators, type IteratorPage } from './iterators.js'
import { encodeRecord, recordBytes, recordKindDelete } from './format/record.js'
import { forEachPackedEntry, type IteratorOpen, type KeyRange } from './protocol.js'

/** Intent segment size by default. */
export const segmentBytesDefault = 64 * 1024 * 1024
/** Zero-filling runs at most this far ahead of the intent log's position. */
export const intentFillStepBytesMax = 1024 * 1024
export const completionFillStepBytesMax = 64 * 1024
/**
 * Retired segments each log keeps for reuse (log/segment-writer.ts). One is enough in the steady state: the
 * default policy checkpoints about once per segment of log, and each checkpoint retires about one segment,
 * before the log needs its next one. Each kept segment is on disk: it is in the README's bound.
 */
export const segmentsReusedMax = 1

/**
 * A completion segment holds one record per intent batch: 1/16 of the intent segment (4 MiB for 64 MiB:
 * 65,536 batches), 16 records at least. Not smaller: a checkpoint retires every completion segment its
 * intent segments cover, and batches of a few hundred bytes fill 64 bytes of completion log each.
 */
export function completionSegmentBytes(segmentBytes: number): number {
  return Math.max(16 * completionRecordBytes, Math.floor(segmentBytes / 16 / completionRecordBytes) * completionRecordBytes)
}

export interface ShardOptions {
  /** The shard's own directory; created if missing. */
  directory: string
  shard: number
  backend: BackendChoice
  batchBytesMax: number
  recovery: 'strict' | 'truncate'
  /** Intent segment size in bytes (default 64 MiB). */
  segmentBytes?: number
  /** Stats slots (protocol.ts layout); a private array when not shared. */
  stats?: Float64Array
  /** Injected storage (the simulation); otherwise chosen by `backend`. */
  storage?: Storage
  /** Injected table; otherwise a WasmTable (table.wasm) of `tableBytesMax`. */
  table?: Table
  /** The WasmTable's memory limit (default: the wasm32 maximum, just under 4 GiB). */
  tableBytesMax?: number
  /** Benchmark switch: no completion log. Such a shard cannot be recovered strictly. */
  intentOnly?: boolean
  /** When the shard checkpoints by itself; default { logBytes: segmentBytes, liveRatio: 0 }; false: only when asked. */
  autoCheckpoint?: AutoCheckpoint | false
  /** Before-image bytes the shard's open iterators may hold together (iterators.ts); default 64 MiB. */
  snapshotBytesMax?: number
}

/** A clear deletes its range in batches of at most this many keys, and about this many bytes of keys. */
const clearKeysPerBatch = 4096
const clearBytesPerBatch = 1024 * 1024

/** Batches between two refreshes of the disk-bytes stats (a directory listing and a stat per file). */
const diskStatsEveryBatches = 256

export class Shard {
  readonly storage: Storage
  readonly recovery: RecoveryReport
  private readonly table: Table
  private readonly log: Log
  private readonly stats: Float64Array
  /** Durable batches, in order, whose writers may already be answered, not yet applied to the table. */
  private durable: { body: Uint8Array; recordCount: number }[] = []
  /**
   * The ordered view as the façade's thread reads it (table/ordered-reader.ts), when the table shares one:
   * the sequence word is odd while `durable` holds batches or they are being applied, even otherwise.
   */
  private readonly view: { share: OrderedViewShare; state: Int32Array; root: () => number } | undefined
  private readonly directory: string
  private readonly shardNumber: number
  private readonly autoCheckpoint: AutoCheckpoint | false
  private readonly checkpointWriter: CheckpointWriter
  /** Intent bytes of the durable batches after the current checkpoint: what a reopen would replay. */
  private logBytesSinceCheckpoint: number
  /** The checkpoint being written: what it will cover, and who waits for it. */
  private checkpointRun: { logBytes: number; waiters: CheckpointCallback[]; batchLatencyMaxUs: number } | undefined
  /** Who asked for a checkpoint while one was being written: they wait for the next one. */
  private checkpointWaiters: CheckpointCallback[] = []
  /** An automatic checkpoint failed: the next one waits until the log has grown by the threshold again. */
  private autoCheckpointAfterBytes = 0
  private batchesSinceDiskStats = 0
  private closing = false
  /** close() waits for the checkpoint in progress to stop: this closes the log then. */
  private closeAfterCheckpoint: (() => void) | undefined
  /** The current checkpoint's point (its sequence, where the logs go on after it), if there is one. */
  private checkpointPoint: DurablePoint | undefined
  /** Backups copying now: no checkpoint starts (nor retires a segment) while one does. */
  private backupsCopying = 0
  /** Open iterators and their snapshots (iterators.ts). */
  private readonly iterators: ShardIterators
  /** Write requests taken, and answered: a clear waits until those taken before it are answered. */
  private writesTaken = 0
  private writesAnswered = 0
  private clearsWaiting: { after: number; start: () => void }[] = []

  private constructor(options: ShardOptions) {
    this.stats = options.stats ?? new Float64Array(statsSlotCount)
    if (this.stats.length < statsSlotCount) throw new RangeError('stats slots are too few')
    const segmentBytes = options.segmentBytes ?? segmentBytesDefault
    if (!Number.isInteger(segmentBytes) || segmentBytes < 4096) throw new RangeError('segmentBytes must be an integer of at least 4096')
    this.table = options.table ?? WasmTable.create(options.tableBytesMax === undefined ? {} : { memoryBytesMax: options.tableBytesMax })
    this.iterators = new ShardIterators(this.table, options.shard, options.snapshotBytesMax)
    if (options.storage === undefined) fs.mkdirSync(options.directory, { recursive: true })
    this.storage = options.storage ?? createStorage(options.backend)
    this.directory = options.directory
    this.shardNumber = options.shard
    this.autoCheckpoint = options.autoCheckpoint ?? { logBytes: segmentBytes, liveRatio: 0 }
    if (this.autoCheckpoint !== false) {
      const { logBytes, liveRatio } = this.autoCheckpoint
      if (!(Number.isSafeInteger(logBytes) && logBytes > 0)) throw new RangeError('autoCheckpoint.logBytes must be a positive integer')
      if (!(liveRatio >= 0 && Number.isFinite(liveRatio))) throw new RangeError('autoCheckpoint.liveRatio must be a finite number >= 0')
    }
    this.checkpointWriter = new CheckpointWriter({
      storage: this.storage,
      directory: options.directory,
      shard: options.shard,
      failed: () => this.log.failed,
    })
    try {
      const result = recover(
        this.storage,
        { mode: options.recovery, shard: options.shard, directory: options.directory },
        {
          apply: (body, count) => {
            try {
              this.table.applyBatch(body, count)
            } catch (error) {
              if ((error as { code?: unknown }).code !== 'SHARD_FULL') throw error
              throw new EngineError(
                'SHARD_FULL',
                `shard ${options.shard}: the log holds more than the table can: ${(error as Error).message}`,
                { cause: error },
              )
            }
          },
          expect: (entries, bytes) => this.table.expect(entries, bytes),
        },
      )
      this.recovery = result.report
      this.checkpointPoint = result.checkpoint === undefined ? undefined : { ...result.checkpoint }
      this.logBytesSinceCheckpoint = result.report.bytesReplayed
      // What recovery found unneeded: checkpoints superseded or unfinished. (Segments a checkpoint covers
      // go to the writers, which keep some for reuse; the others are removed below.)
      for (const file of result.discardFiles) this.storage.remove(file)
      // Cut the completion log first: then no completion record ever points at intent bytes already cut.
      const completion = this.resume(
        'completion',
        result.completion,
        completionSegmentBytes(segmentBytes),
        completionFillStepBytesMax,
        options.directory,
        result.retired.completion,
      )
      const intent = this.resume('intent', result.intent, segmentBytes, intentFillStepBytesMax, options.directory, result.retired.intent)
      for (const file of [...completion.takeUnused(), ...intent.takeUnused()]) this.storage.remove(file)
      this.log = new Log({
        intent,
        completion,
        nextSequence: result.nextSequence,
        batchBytesMax: options.batchBytesMax,
        intentOnly: options.intentOnly ?? false,
        // Reserving counts what the table holds: every durable batch first, so that none is left out.
        reserve: (body, recordCount) => {
          this.applyDurable()
          this.table.reserve(body, recordCount)
        },
        onDurable: (body, recordCount, latencyMicroseconds) => this.onDurable(body, recordCount, latencyMicroseconds),
      })
    } catch (error) {
      this.table.dispose()
      this.storage.close()
      throw error
    }
    this.stats[statsSlotCheckpointSequence] = this.recovery.checkpointSequence
    this.refreshStats()
    const shared = this.table.sharedOrderedView?.()
    if (shared !== undefined) {
      const state = new SharedArrayBuffer(viewStateBytes)
      this.view = { share: { memory: shared.memory, state }, state: new Int32Array(state), root: shared.root }
      Atomics.store(this.view.state, viewSlotRoot, shared.root())
    }
  }

  /** The table's ordered view, for a reader on another thread (undefined: the table shares none). */
  get orderedView(): OrderedViewShare | undefined {
    return this.view?.share
  }

  static open(options: ShardOptions): Shard {
    return new Shard(options)
  }

  /**
   * Checkpoints the shard (checkpoint/checkpoint-writer.ts) as of every batch durable now, and retires the
   * log segments it covers; calls back once that checkpoint is current, or with why it is not. A call
   * while a checkpoint is being written waits for the next one, which starts when that one ends.
   */
  checkpoint(callback: CheckpointCallback): void {
    if (this.closing) return callback(new EngineError('ENGINE_CLOSED', 'the shard is closing'), undefined)
    if (this.log.failed !== undefined) return callback(this.log.failed, undefined)
    this.checkpointWaiters.push(callback)
    this.startWaitingCheckpoint()
  }

  /**
   * Backs the shard up into `target` (checkpoint/backup.ts): a checkpoint of everything durable now, then
   * a copy of it and of the log after it, with checkpoints held still meanwhile. Calls back once.
   */
  backup(target: string, callback: (error: EngineError | null, result: BackupResult | undefined) => void): void {
    this.checkpoint((error) => {
      if (error !== null) return callback(error, undefined)
      if (this.closing) return callback(new EngineError('ENGINE_CLOSED', 'the shard is closing'), undefined)
      this.backupsCopying++
      const names = this.listOrNothing()
      const plan: BackupPlan = {
        source: this.directory,
        target,
        checkpoint: this.checkpointPoint,
        end: this.log.durable,
        segments: { intent: segmentNumbers(names, 'intent'), completion: segmentNumbers(names, 'completion') },
      }
      copyBackup(plan, (copyError, result) => {
        this.backupsCopying--
        if (!this.closing) this.startWaitingCheckpoint()
        if (copyError === null) return callback(null, result)
        callback(
          new EngineError(
            'IO_ERROR',
            `shard ${this.shardNumber}: backup into ${target} failed with ${copyError.code ?? copyError.message}`,
            {
              cause: copyError,
            },
          ),
          undefined,
        )
      })
    })
  }

  write(records: Uint8Array, recordCount: number, callback: AppendCallback): void {
    this.writesTaken++
    this.log.append(records, recordCount, (error) => {
      this.writesAnswered++
      callback(error)
      if (this.clearsWaiting.length > 0) this.startWaitingClears()
    })
  }

  read(keys: Uint8Array, count: number): Uint8Array {
    this.applyDurable()
    return this.table.getPacked(keys, count)
  }

  /** The next page of an iterator (iterators.ts): every durable batch is in the table first. */
  iterate(
    id: number,
    open: IteratorOpen | undefined,
    seek: { target: Uint8Array; remaining: number } | undefined,
    entries: number,
    bytes: number,
  ): IteratorPage {
    if (this.closing) throw new EngineError('ENGINE_CLOSED', 'the shard is closing')
    this.applyDurable()
    try {
      return this.iterators.read(id, open, seek, entries, bytes)
    } finally {
      this.refreshIteratorStats()
    }
  }

  closeIterator(id: number): void {
    this.iterators.close(id)
    this.refreshIteratorStats()
  }

  private refreshIteratorStats(): void {
    this.stats[statsSlotIteratorsOpen] = this.iterators.size
    this.stats[statsSlotIteratorSnapshotBytes] = this.iterators.snapshotBytes
  }

  /** Open iterators, and the before-image bytes their snapshots hold. */
  get iteratorStats(): { open: number; snapshotBytes: number } {
    return { open: this.iterators.size, snapshotBytes: this.iterators.snapshotBytes }
  }

  /**
   * Deletes every key in `range` durably, in batches of delete records through the log, each from where the
   * one before ended; calls back once the last is durable, or with the first failure. It starts once every
   * write taken before it is answered, so it deletes what they put; a write taken after it may land before
   * or after its batches, and survives only if after (or outside what is left of the range).
   */
  clear(range: KeyRange, callback: (error: EngineError | null) => void): void {
    const start = (): void => this.clearFrom(range, undefined, callback)
    if (this.writesAnswered >= this.writesTaken) return start()
    this.clearsWaiting.push({ after: this.writesTaken, start })
  }

  private startWaitingClears(): void {
    const ready = this.clearsWaiting.filter((waiting) => this.writesAnswered >= waiting.after)
    if (ready.length === 0) return
    this.clearsWaiting = this.clearsWaiting.filter((waiting) => this.writesAnswered < waiting.after)
    for (const waiting of ready) waiting.start()
  }

  private clearFrom(range: KeyRange, after: Uint8Array | undefined, callback: (error: EngineError | null) => void): void {
    if (this.closing) return callback(new EngineError('ENGINE_CLOSED', 'the shard is closing'))
    if (this.log.failed !== undefined) return callback(this.log.failed)
    this.applyDurable()
    const page = this.table.readRange(rangeFrom(range, false, after, false), false, clearKeysPerBatch, clearBytesPerBatch, false)
    if (page.count === 0) return callback(null)
    const keys: Uint8Array[] = []
    let bytes = 0
    forEachPackedEntry(page.packed, page.count, false, (key) => {
      keys.push(key)
      bytes += recordBytes(key.length, 0)
    })
    const records = new Uint8Array(bytes)
    const view = new DataView(records.buffer)
    let offset = 0
    for (const key of keys) offset = encodeRecord(records, view, offset, recordKindDelete, key, undefined)
    const last = new Uint8Array(keys[keys.length - 1]!)
    this.log.append(records, keys.length, (error) => {
      if (error !== null) return callback(error)
      if (!page.more) return callback(null)
      this.clearFrom(range, last, callback)
    })
  }

  /**
   * Stops a checkpoint in progress (it is given up; its waiters get ENGINE_CLOSED), waits for the commit
   * in flight, writes the close record, then releases the files, backend and table.
   */
  close(callback: () => void): void {
    this.closing = true
    this.iterators.closeAll()
    const clears = this.clearsWaiting
    this.clearsWaiting = []
    for (const waiting of clears) waiting.start() // each finds the shard closing: ENGINE_CLOSED
    const waiting = this.checkpointWaiters
    this.checkpointWaiters = []
    for (const waiter of waiting) waiter(new EngineError('ENGINE_CLOSED', 'the shard is closing'), undefined)
    const closeLog = (): void =>
      this.log.close(() => {
        this.durable = []
        this.storage.close()
        this.table.dispose()
        callback()
      })
    if (this.checkpointRun === undefined) return closeLog()
    this.closeAfterCheckpoint = closeLog
    this.checkpointWriter.abort()
  }

  private startCheckpoint(): void {
    const waiters = this.checkpointWaiters
    this.checkpointWaiters = []
    this.applyDurable()
    const point = this.log.durable
    if (point.sequence === (this.checkpointPoint?.sequence ?? 0)) {
      // Nothing new since the current checkpoint: it is the checkpoint asked for.
      for (const waiter of waiters) waiter(null, undefined)
      return
    }
    const run = { logBytes: this.logBytesSinceCheckpoint, waiters, batchLatencyMaxUs: 0 }
    this.checkpointRun = run
    this.checkpointWriter.write(
      point,
      this.table.scan(),
      () => this.log.durable.sequence,
      (error, result) => {
        if (error === null && !this.closing) {
          // Current now: retire the segments it covers and the older checkpoints, off this thread; the
          // checkpoint is done once they are gone (compact() promises that).
          const retireStarted = performance.now()
          const older = checkpointFiles(this.listOrNothing()).current.filter((sequence) => sequence < point.sequence)
          const retired = [
            ...this.log.retireBefore(point),
            ...older.map((sequence) => path.join(this.directory, checkpointName(sequence, 'current'))),
          ]
          // This thread closes the retired files and lists the directory: part of the checkpoint's stall.
          result!.stepMsMax = Math.max(result!.stepMsMax, performance.now() - retireStarted)
          this.storage.discard(retired, () => this.checkpointDone(point, run, null, result))
          return
        }
        this.checkpointDone(point, run, error, result)
      },
    )
  }

  private checkpointDone(
    point: DurablePoint,
    run: NonNullable<Shard['checkpointRun']>,
    error: EngineError | null,
    result: CheckpointResult | undefined,
  ): void {
    this.checkpointRun = undefined
    const closeLog = this.closeAfterCheckpoint
    this.closeAfterCheckpoint = undefined
    if (closeLog !== undefined) {
      for (const waiter of run.waiters) waiter(error ?? new EngineError('ENGINE_CLOSED', 'the shard is closing'), undefined)
      return closeLog()
    }
    if (error === null) {
      this.checkpointPoint = point
      this.logBytesSinceCheckpoint -= run.logBytes
      this.autoCheckpointAfterBytes = 0
      this.stats[statsSlotCheckpoints]! += 1
      this.stats[statsSlotCheckpointSequence] = point.sequence
      this.stats[statsSlotCheckpointDurationMs] = result!.durationMs
      this.stats[statsSlotCheckpointBytes] = result!.bytes
      this.stats[statsSlotCheckpointStepMsMax] = result!.stepMsMax
      this.stats[statsSlotCheckpointBatchLatencyMaxUs] = run.batchLatencyMaxUs
    } else {
      this.stats[statsSlotCheckpointFailures]! += 1
      // An automatic checkpoint that failed is tried again only after as much log again.
      this.autoCheckpointAfterBytes = this.logBytesSinceCheckpoint
    }
    if (!this.closing) this.refreshStats()
    for (const waiter of run.waiters) waiter(error, result)
    this.startWaitingCheckpoint()
  }

  /** Starts the checkpoint that callers wait for, if any, unless a backup holds checkpoints still. */
  private startWaitingCheckpoint(): void {
    if (this.checkpointWaiters.length > 0 && !this.closing && this.backupsCopying === 0 && this.checkpointRun === undefined) {
      if (this.log.failed !== undefined) {
        const waiting = this.checkpointWaiters
        this.checkpointWaiters = []
        for (const waiter of waiting) waiter(this.log.failed, undefined)
      } else {
        this.startCheckpoint()
      }
    }
  }

  /**
   * The shard directory's names, or none when it cannot be read (EIO once the disk has failed): what uses
   * it only tidies up (retiring, stats), which the next open does again. A backup then copies no segment,
   * and the copy of the checkpoint or the fsyncs fail it.
   */
  private listOrNothing(): string[] {
    try {
      return this.storage.list(this.directory)
    } catch {
      return []
    }
  }

  /** Whether the automatic policy asks for a checkpoint now. */
  private checkpointDue(): boolean {
    if (this.autoCheckpoint === false || this.checkpointRun !== undefined || this.closing || this.log.failed !== undefined) return false
    if (this.backupsCopying > 0) return false
    // The fixed threshold first: it settles most batches without asking the table for its live bytes.
    const logBytes = this.logBytesSinceCheckpoint - this.autoCheckpointAfterBytes
    if (logBytes < this.autoCheckpoint.logBytes) return false
    return logBytes >= this.autoCheckpoint.liveRatio * this.table.liveBytes
  }

  /** Live entries and bytes, and the bytes of the shard's files on disk. */
  private refreshStats(): void {
    this.stats[statsSlotLiveEntries] = this.table.size
    this.stats[statsSlotLiveBytes] = this.table.liveBytes
    let logBytes = 0
    let checkpointBytes = 0
    let names: string[]
    try {
      names = this.storage.list(this.directory)
    } catch {
      return // the disk failed (EIO after a power cut): the stats stay as they were; the log reports the failure
    }
    for (const name of names) {
      const bytes = this.storage.size(path.join(this.directory, name))
      if (name.startsWith('checkpoint-')) checkpointBytes += bytes
      else logBytes += bytes
    }
    this.stats[statsSlotLogDiskBytes] = logBytes
    this.stats[statsSlotCheckpointDiskBytes] = checkpointBytes
    this.stats[statsSlotSegmentsReused] = this.log.segmentsReused
    this.batchesSinceDiskStats = 0
  }

  /** Log segments made since open by reusing a retired one (log/segment-writer.ts). */
  get segmentsReused(): number {
    return this.log.segmentsReused
  }

  get failed(): EngineError | undefined {
    return this.log.failed
  }

  /** Applies recovery's cut to one log and opens its writer where the log goes on. */
  private resume(
    kind: LogKind,
    resumption: LogResumption,
    segmentBytes: number,
    fillStepMax: number,
    directory: string,
    retired: readonly number[],
  ): SegmentWriter {
    for (const segment of resumption.removeSegments) this.storage.remove(path.join(directory, segmentName(kind, segment)))
    const file = this.storage.open(path.join(directory, segmentName(kind, resumption.segment)), kind)
    let filledTo = resumption.fileLength
    if (resumption.dirtyPastPosition) {
      file.truncate(resumption.position)
      filledTo = resumption.position
    }
    return new SegmentWriter({
      storage: this.storage,
      directory,
      kind,
      segmentBytes: Math.max(segmentBytes, resumption.position),
      fillStepBytes: Math.min(fillStepMax, segmentBytes),
      segment: resumption.segment,
      file,
      position: resumption.position,
      filledTo,
      reuseMax: segmentsReusedMax,
      retired,
    })
  }

  private readonly refreshStatsIfOpen = (): void => {
    if (!this.closing && this.batchesSinceDiskStats >= diskStatsEveryBatches) this.refreshStats()
  }

  private readonly startAutoCheckpoint = (): void => {
    if (this.checkpointDue()) this.startCheckpoint()
  }

  /** Applies the durable batches not applied yet, in order. */
  private readonly applyDurable = (): void => {
    const durable = this.durable
    if (durable.length === 0) return
    this.durable = []
    for (const batch of durable) {
      this.iterators.capture(batch.body, batch.recordCount)
      this.table.applyBatch(batch.body, batch.recordCount)
    }
    if (this.view !== undefined) {
      // Every durable batch is in the table: the view is current again (odd since onDurable).
      Atomics.store(this.view.state, viewSlotRoot, this.view.root())
      if ((Atomics.load(this.view.state, viewSlotSequence) & 1) !== 0) Atomics.add(this.view.state, viewSlotSequence, 1)
    }
    if (this.iterators.size > 0) this.refreshIteratorStats()
  }

  private onDurable(body: Uint8Array, recordCount: number, latencyMicroseconds: number): void {
    // The first batch into an empty queue schedules the apply. setImmediate, not a microtask: the writers'
    // answers are posted from microtasks, and go first. (A read may empty the queue before it runs; then it
    // finds the queue empty, or applies batches that came after: both fine.)
    if (this.durable.push({ body, recordCount }) === 1) {
      // Before this batch's writers are answered: from now until it is applied, the view is behind them.
      if (this.view !== undefined && (Atomics.load(this.view.state, viewSlotSequence) & 1) === 0) {
        Atomics.add(this.view.state, viewSlotSequence, 1)
      }
      setImmediate(this.applyDurable)
    }
    this.logBytesSinceCheckpoint += sectorSpan(batchHeaderBytes + body.length) // what it takes in its segment
    if (this.checkpointRun !== undefined) {
      this.checkpointRun.batchLatencyMaxUs = Math.max(this.checkpointRun.batchLatencyMaxUs, latencyMicroseconds)
    }
    if (++this.batchesSinceDiskStats >= diskStatsEveryBatches) setImmediate(this.refreshStatsIfOpen)
    // Started on the next turn, after this batch's writers are answered.
    if (this.checkpointDue()) setImmediate(this.startAutoCheckpoint)
    this.stats[statsSlotBatches]! += 1
    this.stats[statsSlotRecords]! += recordCount
    this.stats[statsSlotBytes]! += body.length
    this.stats[statsSlotLatencyFirst + latencyBucket(latencyMicroseconds)]! += 1
    this.stats[statsSlotLatencyTotal]! += latencyMicroseconds
  }
}
