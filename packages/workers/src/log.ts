// The write-ahead log of one shard, with group commit. It owns the log file's append position, the batch
// sequence, and the queue of requests waiting for a commit. It promises:
// - a request's callback gets null only after the batch holding it was written in full and an
//   fdatasync covering it succeeded (both completions seen with success);
// - one batch is in flight at a time: requests arriving meanwhile form the next batch, so the log
//   holds at most one partly written batch at a crash (recovery.ts relies on this);
// - a failed write or fdatasync fails its batch and everything queued, and the log accepts nothing after
//   (fsyncgate: a failed fdatasync may have dropped dirty pages, so a retry could acknowledge lost data).

import { EngineError, type IoFailure } from './errors.js'
import { batchHeaderBytes, checksum, encodeBatchHeader, forEachRecord } from './record.js'
import type { StorageFile } from './storage.js'

export type AppendCallback = (error: EngineError | null) => void

interface PendingRequest {
  records: Uint8Array
  recordCount: number
  callback: AppendCallback
}

export interface LogOptions {
  file: StorageFile
  /** Where the next batch goes: the end of the intact log. */
  position: number
  nextSequence: number
  /** A batch gathers requests up to this many record bytes (one larger request is a batch of its own). */
  batchBytesMax: number
  /** Called with each durable batch, before any of its callbacks: the shard applies it to its table. */
  onDurable: (body: Uint8Array, recordCount: number, latencyMicroseconds: number) => void
}

export class Log {
  private readonly file: StorageFile
  private position: number
  private nextSequence: number
  private readonly batchBytesMax: number
  private readonly onDurable: LogOptions['onDurable']
  private pending: PendingRequest[] = []
  private pendingBytes = 0
  private commitInFlight = false
  private failure: EngineError | undefined
  private closeCallback: (() => void) | undefined

  constructor(options: LogOptions) {
    if (!(options.batchBytesMax > 0)) throw new RangeError('batchBytesMax must be positive')
    this.file = options.file
    this.position = options.position
    this.nextSequence = options.nextSequence
    this.batchBytesMax = options.batchBytesMax
    this.onDurable = options.onDurable
  }

  /** The first I/O failure, after which the log refuses writes. */
  get failed(): EngineError | undefined {
    return this.failure
  }

  get idle(): boolean {
    return !this.commitInFlight && this.pending.length === 0
  }

  /**
   * Queues records (record.ts format, CRCs not yet filled in) for the next commit. They are sealed here,
   * at once, so a malformed request fails alone instead of poisoning a batch.
   */
  append(records: Uint8Array, recordCount: number, callback: AppendCallback): void {
    if (this.failure !== undefined) return callback(this.failure)
    if (this.closeCallback !== undefined) return callback(new EngineError('ENGINE_CLOSED', 'the shard is closing'))
    if (recordCount < 1) throw new RangeError('a write request carries at least one record')
    forEachRecord(records, recordCount, 'seal', undefined)
    this.pending.push({ records, recordCount, callback })
    this.pendingBytes += records.length
    if (!this.commitInFlight) this.commit()
  }

  /** Calls back once nothing is in flight; refuses appends from now on. */
  close(callback: () => void): void {
    this.closeCallback = callback
    if (!this.commitInFlight) callback()
  }

  private commit(): void {
    if (this.commitInFlight) throw new Error('assertion: one commit in flight at a time')
    if (this.pending.length === 0) throw new Error('assertion: a commit needs requests')
    // Take requests in order up to batchBytesMax; the first one always goes, whatever its size.
    let take = 0
    let bodyBytes = 0
    while (take < this.pending.length) {
      const next = this.pending[take]!.records.length
      if (take > 0 && bodyBytes + next > this.batchBytesMax) break
      bodyBytes += next
      take++
    }
    const requests = this.pending.splice(0, take)
    this.pendingBytes -= bodyBytes

    const buffer = new Uint8Array(batchHeaderBytes + bodyBytes)
    let recordCount = 0
    let offset = batchHeaderBytes
    for (const request of requests) {
      buffer.set(request.records, offset)
      offset += request.records.length
      recordCount += request.recordCount
    }
    const body = buffer.subarray(batchHeaderBytes)
    const sequence = this.nextSequence
    encodeBatchHeader(buffer, { sequence, bodyBytes, recordCount, bodyChecksum: checksum(body) })

    this.commitInFlight = true
    const started = performance.now()
    const position = this.position
    this.file.writeDurable(buffer, position, (failure) => {
      this.commitCallback(failure, requests, body, recordCount, position + buffer.length, started)
    })
  }

  private commitCallback(
    failure: IoFailure | null,
    requests: PendingRequest[],
    body: Uint8Array,
    recordCount: number,
    end: number,
    started: number,
  ): void {
    this.commitInFlight = false
    if (failure !== null) {
      this.failure = new EngineError(
        'IO_ERROR',
        `${failure.operation} of ${failure.path ?? 'the log'} failed with ${failure.code}: ` +
          'the shard accepts no more writes until it is reopened',
        { cause: failure },
      )
      const failed = requests.concat(this.pending)
      this.pending = []
      this.pendingBytes = 0
      for (const request of failed) request.callback(this.failure)
    } else {
      this.position = end
      this.nextSequence++
      this.onDurable(body, recordCount, (performance.now() - started) * 1000)
      for (const request of requests) request.callback(null)
    }
    if (this.pending.length > 0) this.commit()
    else if (this.closeCallback !== undefined) this.closeCallback()
  }
}
