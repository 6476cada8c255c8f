// The write-ahead log of one shard — the intent log and the completion log — with group commit. It owns
// the batch sequence and the queue of requests waiting for a commit; each log's segments belong to its
// SegmentWriter. It promises:
// - a request's callback gets null only after the batch holding it was written in full to the intent log
//   AND its completion record to the completion log, each followed by an fdatasync that succeeded (all
//   four completions seen with success);
// - the two logs are written in parallel, each on its own ring on io_uring, so a batch
//   costs one fdatasync of latency, not two; why, and what recovery can and cannot tell because of it, is
//   in recovery-cases.ts;
// - one batch is in flight at a time: requests arriving meanwhile form the next batch, so at a crash only
//   the last batch can be partly on disk (recovery-cases.ts relies on this);
// - a clean close appends a close record to the completion log, so that after a clean shutdown nothing is
//   ambiguous at the tail;
// - a failed write or fdatasync fails its batch and everything queued, and the log accepts nothing after
//   (fsyncgate: a failed fdatasync may have dropped dirty pages, so a retry could acknowledge lost data).

import assert from 'node:assert/strict'
import {
  completionRecordBytes,
  completionStatusClosed,
  completionStatusWritten,
  decodeCompletion,
  encodeCompletion,
  type CompletionRecord,
} from '../format/completion.js'
import { EngineError, type IoFailure } from '../errors.js'
import { batchHeaderBytes, decodeBatchHeader, encodeBatchHeader, forEachRecord, type BatchHeader } from '../format/record.js'
import { checksum } from '../format/checksum.js'
import { layOutSectors, sectorSpan } from '../format/sectors.js'
import { followsOn, type SegmentLocation, type SegmentWriter } from './segment-writer.js'

export type AppendCallback = (error: EngineError | null) => void

/** A durable batch's sequence and where it ended in each log. */
export interface DurablePoint {
  sequence: number
  intent: SegmentLocation
  completion: SegmentLocation
}

interface PendingRequest {
  records: Uint8Array
  recordCount: number
  callback: AppendCallback
}

export interface LogOptions {
  intent: SegmentWriter
  completion: SegmentWriter
  nextSequence: number
  /** Benchmark switch: write the intent log only (no completion records). Not a durability mode. */
  intentOnly?: boolean
  /** A batch gathers requests up to this many record bytes (one larger request is a batch of its own). */
  batchBytesMax: number
  /** Called before a batch is written: throws an error with code 'SHARD_FULL' when the table cannot take it. */
  reserve: (body: Uint8Array, recordCount: number) => void
  /** Called with each durable batch, in order, just before its callbacks: the shard hands it to its table. */
  onDurable: (body: Uint8Array, recordCount: number, latencyMicroseconds: number) => void
}

export class Log {
  private readonly intent: SegmentWriter
  private readonly completion: SegmentWriter
  private readonly intentOnly: boolean
  private nextSequence: number
  private readonly batchBytesMax: number
  private readonly onDurable: LogOptions['onDurable']
  private readonly reserve: LogOptions['reserve']
  private pending: PendingRequest[] = []
  private commitInFlight = false
  private failure: EngineError | undefined
  private closeCallback: (() => void) | undefined
  /** Where the last batch written to the intent log ended: the next one starts there, or at 0 of a later segment. */
  private intentEnd: SegmentLocation
  /** The last durable batch, and where it ended in each log: what a checkpoint records. */
  private durableEnd: DurablePoint

  constructor(options: LogOptions) {
    if (!(options.batchBytesMax > 0)) throw new RangeError('batchBytesMax must be positive')
    this.intent = options.intent
    this.completion = options.completion
    this.intentOnly = options.intentOnly ?? false
    this.nextSequence = options.nextSequence
    this.batchBytesMax = options.batchBytesMax
    this.onDurable = options.onDurable
    this.reserve = options.reserve
    this.intentEnd = options.intent.location
    this.durableEnd = { sequence: this.nextSequence - 1, intent: options.intent.location, completion: options.completion.location }
  }

  /** The last durable batch and where it ended in each log (the next batch goes there, or to a later segment). */
  get durable(): DurablePoint {
    return this.durableEnd
  }

  /** Closes both logs' segments before the given ones (a checkpoint covers them); returns their paths, to discard. */
  retireBefore(point: DurablePoint): string[] {
    return [...this.intent.retireBefore(point.intent.segment), ...this.completion.retireBefore(point.completion.segment)]
  }

  /** Segments made by reusing a retired one, in both logs (segment-writer.ts). */
  get segmentsReused(): number {
    return this.intent.reusedCount + this.completion.reusedCount
  }

  /** The first I/O failure, after which the log refuses writes. */
  get failed(): EngineError | undefined {
    return this.failure
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
    if (!this.commitInFlight) this.commit()
  }

  /**
   * Refuses appends from now on; once nothing is in flight, appends the close record (unless the log has
   * failed), closes both logs' files, and calls back.
   */
  close(callback: () => void): void {
    this.closeCallback = () => this.writeCloseRecord(callback)
    if (!this.commitInFlight) this.closeCallback()
  }

  private writeCloseRecord(callback: () => void): void {
    const closeFiles = (): void => this.intent.close(() => this.completion.close(callback))
    if (this.failure !== undefined || this.intentOnly) return closeFiles()
    // A failed close record loses nothing: every batch before it is acknowledged and complete.
    this.completion.append(
      completionRecordBytes,
      (ownSegment) => sealCompletion(this.nextSequence - 1, { segment: 0, offset: 0 }, 0, 0, 0, completionStatusClosed, ownSegment),
      () => {},
      () => closeFiles(),
    )
  }

  private commit(): void {
    assert(!this.commitInFlight, 'one commit in flight at a time')
    assert(this.pending.length > 0, 'a commit needs requests')
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

    const buffer = new Uint8Array(batchHeaderBytes + bodyBytes)
    let recordCount = 0
    let offset = batchHeaderBytes
    for (const request of requests) {
      buffer.set(request.records, offset)
      offset += request.records.length
      recordCount += request.recordCount
    }
    const body = buffer.subarray(batchHeaderBytes)
    try {
      this.reserve(body, recordCount)
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'SHARD_FULL') throw error
      // Nothing was written: this batch's writers learn the shard is full; the shard goes on.
      const full = new EngineError('SHARD_FULL', (error as Error).message, { cause: error })
      for (const request of requests) request.callback(full)
      if (this.pending.length > 0) this.commit()
      else if (this.closeCallback !== undefined) this.closeCallback()
      return
    }
    const sequence = this.nextSequence
    const bodyChecksum = checksum(body)
    const header = buffer.subarray(0, batchHeaderBytes)
    const batchHeader: BatchHeader = { sequence, bodyBytes, recordCount, bodyChecksum }
    encodeBatchHeader(header, batchHeader)
    // Paired with recovery, which reads it back the same way: a header that would not decode is a bug here.
    assert.deepEqual(decodeBatchHeader(header), batchHeader, 'the batch header reads back as written')
    // The completion record's checksum of the intent bytes: CRC32 over body then header, continued from
    // the body's CRC so the body is not read a second time.
    const intentChecksum = checksum(header, bodyChecksum)

    this.commitInFlight = true
    const started = performance.now()
    let outstanding = 1
    let firstFailure: IoFailure | null = null
    const end: DurablePoint = { sequence, intent: this.intentEnd, completion: this.durableEnd.completion }
    const done = (failure: IoFailure | null): void => {
      firstFailure ??= failure
      if (--outstanding === 0) this.commitCallback(firstFailure, requests, body, recordCount, started, end)
    }
    // In the segment, the batch lies in stamped sectors (format/sectors.ts): laid out once its segment is known.
    const span = sectorSpan(buffer.length)
    this.intent.append(
      span,
      (segment) => layOutSectors(buffer, segment),
      (location) => {
        // Recovery refuses a batch that is not where the previous one ended ('misplaced'). Asserted here,
        // before its completion record exists: the intent write is already submitted, but without a
        // completion record recovery drops it as the in-flight batch, and the failed assertion stops the
        // worker (worker.ts), so the batch is never acknowledged nor applied.
        if (!followsOn(this.intentEnd, location)) {
          assert.fail(
            `batch ${sequence} placed at ${location.segment}:${location.offset}, the previous batch ended at ${this.intentEnd.segment}:${this.intentEnd.offset}`,
          )
        }
        this.intentEnd = { segment: location.segment, offset: location.offset + span }
        end.intent = this.intentEnd
        if (this.intentOnly) return
        outstanding++
        this.completion.append(
          completionRecordBytes,
          (ownSegment) =>
            sealCompletion(sequence, location, buffer.length, recordCount, intentChecksum, completionStatusWritten, ownSegment),
          (placed) => {
            end.completion = { segment: placed.segment, offset: placed.offset + completionRecordBytes }
          },
          done,
        )
      },
      done,
    )
  }

  private commitCallback(
    failure: IoFailure | null,
    requests: PendingRequest[],
    body: Uint8Array,
    recordCount: number,
    started: number,
    end: DurablePoint,
  ): void {
    this.commitInFlight = false
    if (failure !== null) {
      this.failure = new EngineError(
        'IO_ERROR',
        `${failure.operation} of ${failure.path ?? 'the log'} failed with ${failure.code}: ` +
          'the shard accepts no more writes until it is reopened',
        { cause: failure },
      )
      // Both logs stop: no more fills or new segments on either log once the shard refuses writes.
      this.intent.halt(failure)
      this.completion.halt(failure)
      const failed = requests.concat(this.pending)
      this.pending = []
      for (const request of failed) request.callback(this.failure)
    } else {
      this.nextSequence++
      this.durableEnd = end
      this.onDurable(body, recordCount, (performance.now() - started) * 1000)
      for (const request of requests) request.callback(null)
    }
    if (this.pending.length > 0) this.commit()
    else if (this.closeCallback !== undefined) this.closeCallback()
  }
}

/**
 * A completion record, encoded and read back: recovery decodes it the same way, so a record that would not
 * read back as written (a layout bug) fails here, before it is written, not at the next open.
 */
function sealCompletion(
  sequence: number,
  location: SegmentLocation,
  length: number,
  recordCount: number,
  intentChecksum: number,
  status: number,
  ownSegment: number,
): Uint8Array {
  const fields: CompletionRecord = {
    sequence,
    segment: location.segment,
    offset: location.offset,
    length,
    recordCount,
    intentChecksum,
    status,
    ownSegment,
  }
  const record = new Uint8Array(completionRecordBytes)
  encodeCompletion(record, fields)
  assert.deepEqual(decodeCompletion(record, ownSegment), fields, 'the completion record reads back as written')
  return record
}
