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
import { segmentName, type LogKind } from './format/segment-files.js'
import { EngineError } from './errors.js'
import { Log, type AppendCallback } from './log/log.js'
import type { BackendChoice } from './protocol.js'
import {
  latencyBucket,
  statsSlotBatches,
  statsSlotBytes,
  statsSlotCount,
  statsSlotLatencyFirst,
  statsSlotLatencyTotal,
  statsSlotRecords,
} from './protocol.js'
import { recover, type LogResumption } from './log/recovery.js'
import { type RecoveryReport } from './protocol.js'
import { SegmentWriter } from './log/segment-writer.js'
import type { Storage } from './storage/storage.js'
import { createStorage } from './storage/uring.js'
import type { Table } from './table/table.js'
import { WasmTable } from './table/wasm-table.js'

/** Intent segment size by default. */
export const segmentBytesDefault = 64 * 1024 * 1024
/** Zero-filling runs at most this far ahead of the intent log's position. */
export const intentFillStepBytesMax = 1024 * 1024
export const completionFillStepBytesMax = 64 * 1024

/** A completion segment holds one record per intent batch: 1/4096 of the intent segment, 16 records at least. */
export function completionSegmentBytes(segmentBytes: number): number {
  return Math.max(16 * completionRecordBytes, Math.floor(segmentBytes / 4096 / completionRecordBytes) * completionRecordBytes)
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
}

export class Shard {
  readonly storage: Storage
  readonly recovery: RecoveryReport
  private readonly table: Table
  private readonly log: Log
  private readonly stats: Float64Array
  /** Durable batches, in order, whose writers may already be answered, not yet applied to the table. */
  private durable: { body: Uint8Array; recordCount: number }[] = []

  private constructor(options: ShardOptions) {
    this.stats = options.stats ?? new Float64Array(statsSlotCount)
    if (this.stats.length < statsSlotCount) throw new RangeError('stats slots are too few')
    const segmentBytes = options.segmentBytes ?? segmentBytesDefault
    if (!Number.isInteger(segmentBytes) || segmentBytes < 4096) throw new RangeError('segmentBytes must be an integer of at least 4096')
    this.table = options.table ?? WasmTable.create(options.tableBytesMax === undefined ? {} : { memoryBytesMax: options.tableBytesMax })
    if (options.storage === undefined) fs.mkdirSync(options.directory, { recursive: true })
    this.storage = options.storage ?? createStorage(options.backend)
    try {
      const result = recover(
        this.storage,
        { mode: options.recovery, shard: options.shard, directory: options.directory },
        (body, count) => {
          try {
            this.table.applyBatch(body, count)
          } catch (error) {
            if ((error as { code?: unknown }).code !== 'SHARD_FULL') throw error
            throw new EngineError(
              'SHARD_FULL',
              `shard ${options.shard}: the log holds more than the table can: ${(error as Error).message}`,
              {
                cause: error,
              },
            )
          }
        },
      )
      this.recovery = result.report
      // Cut the completion log first: then no completion record ever points at intent bytes already cut.
      const completion = this.resume(
        'completion',
        result.completion,
        completionSegmentBytes(segmentBytes),
        completionFillStepBytesMax,
        options.directory,
      )
      const intent = this.resume('intent', result.intent, segmentBytes, intentFillStepBytesMax, options.directory)
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
  }

  static open(options: ShardOptions): Shard {
    return new Shard(options)
  }

  write(records: Uint8Array, recordCount: number, callback: AppendCallback): void {
    this.log.append(records, recordCount, callback)
  }

  read(keys: Uint8Array, count: number): Uint8Array {
    this.applyDurable()
    return this.table.getPacked(keys, count)
  }

  /** Waits for the commit in flight, writes the close record, then releases the files, backend and table. */
  close(callback: () => void): void {
    this.log.close(() => {
      this.durable = []
      this.storage.close()
      this.table.dispose()
      callback()
    })
  }

  get failed(): EngineError | undefined {
    return this.log.failed
  }

  /** Applies recovery's cut to one log and opens its writer where the log goes on. */
  private resume(kind: LogKind, resumption: LogResumption, segmentBytes: number, fillStepMax: number, directory: string): SegmentWriter {
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
    })
  }

  /** Applies the durable batches not applied yet, in order. */
  private readonly applyDurable = (): void => {
    const durable = this.durable
    if (durable.length === 0) return
    this.durable = []
    for (const batch of durable) this.table.applyBatch(batch.body, batch.recordCount)
  }

  private onDurable(body: Uint8Array, recordCount: number, latencyMicroseconds: number): void {
    // The first batch into an empty queue schedules the apply. setImmediate, not a microtask: the writers'
    // answers are posted from microtasks, and go first. (A read may empty the queue before it runs; then it
    // finds the queue empty, or applies batches that came after: both fine.)
    if (this.durable.push({ body, recordCount }) === 1) setImmediate(this.applyDurable)
    this.stats[statsSlotBatches]! += 1
    this.stats[statsSlotRecords]! += recordCount
    this.stats[statsSlotBytes]! += body.length
    this.stats[statsSlotLatencyFirst + latencyBucket(latencyMicroseconds)]! += 1
    this.stats[statsSlotLatencyTotal]! += latencyMicroseconds
  }
}
