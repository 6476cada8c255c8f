// One shard: its storage backend, its log, its table. It owns them for its whole life and promises that
// the table only ever holds durable data: a batch reaches the table after its fdatasync succeeded and
// before any of its writers is answered, so a read never sees an unacknowledged write, and a read issued
// after a write was acknowledged sees it.

import fs from 'node:fs'
import path from 'node:path'
import { EngineError } from './errors.js'
import { Log, type AppendCallback } from './log.js'
import type { BackendChoice } from './protocol.js'
import { latencyBucket, statsSlotBatches, statsSlotBytes, statsSlotCount, statsSlotLatencyFirst, statsSlotRecords } from './protocol.js'
import { recover, type RecoveryReport } from './recovery.js'
import type { Storage, StorageFile } from './storage.js'
import { createStorage } from './storage-uring.js'
import { MapTable, type Table } from './table.js'

/** The log's file name inside a shard's directory. */
export const logFileName = 'wal.log'

export interface ShardOptions {
  /** The shard's own directory; created if missing. */
  directory: string
  shard: number
  backend: BackendChoice
  batchBytesMax: number
  recovery: 'strict' | 'truncate'
  /** Stats slots (protocol.ts layout); a private array when not shared. */
  stats?: Float64Array
  /** Injected storage (the simulation); otherwise chosen by `backend`. */
  storage?: Storage
  /** Injected table; otherwise the reference MapTable. */
  table?: Table
}

export class Shard {
  readonly storage: Storage
  readonly recovery: RecoveryReport
  private readonly file: StorageFile
  private readonly table: Table
  private readonly log: Log
  private readonly stats: Float64Array

  private constructor(options: ShardOptions) {
    this.stats = options.stats ?? new Float64Array(statsSlotCount)
    if (this.stats.length < statsSlotCount) throw new RangeError('stats slots are too few')
    this.table = options.table ?? new MapTable()
    if (options.storage === undefined) fs.mkdirSync(options.directory, { recursive: true })
    this.storage = options.storage ?? createStorage(options.backend)
    const logPath = path.join(options.directory, logFileName)
    try {
      this.file = this.storage.open(logPath, 'intent')
      const contents = this.file.readAll()
      const result = recover(contents, { mode: options.recovery, shard: options.shard, file: logPath }, (body, count) =>
        this.table.applyBatch(body, count),
      )
      if (result.validLength < contents.length) this.file.truncate(result.validLength)
      this.recovery = result.report
      this.log = new Log({
        file: this.file,
        position: result.validLength,
        nextSequence: result.nextSequence,
        batchBytesMax: options.batchBytesMax,
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
    return this.table.getPacked(keys, count)
  }

  /** Waits for the commit in flight, then releases the file, the backend and the table. */
  close(callback: () => void): void {
    this.log.close(() => {
      this.file.close()
      this.storage.close()
      this.table.dispose()
      callback()
    })
  }

  get failed(): EngineError | undefined {
    return this.log.failed
  }

  private onDurable(body: Uint8Array, recordCount: number, latencyMicroseconds: number): void {
    this.table.applyBatch(body, recordCount)
    this.stats[statsSlotBatches]! += 1
    this.stats[statsSlotRecords]! += recordCount
    this.stats[statsSlotBytes]! += body.length
    this.stats[statsSlotLatencyFirst + latencyBucket(latencyMicroseconds)]! += 1
  }
}
