// Writing one checkpoint of a shard (format/checkpoint.ts): the table's entries as of a durable batch
// sequence S, so that recovery loads them and replays only the batches after S, and the log segments
// before S can be retired. It owns the checkpoint's file from creation until it is made current (or given
// up), and nothing else: the shard decides when, and retires the segments after it succeeds.
//
// The design, and why (the shape of Redis 7's multi-part AOF, for a table that lives in memory):
// - The log goes on while a checkpoint is written: new batches are appended and applied as usual, and no
//   write waits for the checkpoint. The checkpoint is written from the table, not from the log.
// - The table is walked in pieces (TableScan), one piece per step, each step written and made durable
//   before the next is taken: the shard's thread is held only for one piece at a time (a piece is about
//   `blockBytes` of entries). Between pieces, batches after S are applied to the table, so the walk is
//   fuzzy (WasmTable.scan says exactly how). That is enough: recovery loads the checkpoint and then
//   replays every batch after S, in order. A key no batch after S touches comes out of the walk exactly
//   once, with its value as of S; a key that a batch after S touches ends, after the replay, as its last
//   batch left it, whatever the walk wrote for it. Batches after S stay in the log until a later
//   checkpoint covers them. It is exact only if the replay finds every batch the walk may have seen: so
//   the header names A, the last batch durable once every block is written (all acknowledged before the
//   checkpoint is current), and recovery refuses a log that lacks or tears any batch up to A, instead of
//   dropping it as the in-flight one (the walk may hold half of it; a crash cannot tear a batch
//   acknowledged before the checkpoint it loads was made current).
// - The file is written as `checkpoint-S.tmp` through libuv (storage/uring.ts: never the shard's ring),
//   every block with its own fdatasync, so that no single cache flush carries the whole checkpoint and
//   the log's flushes interleave with them; then the header at offset 0, made durable; then the file is
//   renamed to `checkpoint-S.ckpt` and the directory fsynced: the checkpoint is current. Only then are
//   older checkpoints removed and the segments before S's end retired (by the shard). Each step's crash
//   case is a row of checkpointCases (log/recovery-cases.ts).
// - A failure of any of it (EIO, ENOSPC, EROFS) gives the checkpoint up: its file is removed if it can
//   be (else the next open discards it), the previous checkpoint and the whole log stay as they were, and
//   the failure is reported to whoever asked. Nothing was acknowledged by a checkpoint, so nothing is lost;
//   the log itself goes on, and fails on its own if the disk fails it too.

import path from 'node:path'
import { EngineError, type IoFailure } from '../errors.js'
import { checksum, checksumCombine } from '../format/checksum.js'
import { checkpointHeaderBytes, checkpointName, encodeCheckpointHeader } from '../format/checkpoint.js'
import { batchHeaderBytes, encodeBatchHeader } from '../format/record.js'
import type { DurablePoint } from '../log/log.js'
import { ioFailure, type Storage, type StorageFile } from '../storage/storage.js'
import type { TableScan } from '../table/table.js'
import type { CheckpointResult } from '../protocol.js'

/** The entries one step walks and writes: one block of the file, one fdatasync. */
export const blockBytes = 1024 * 1024

export type CheckpointCallback = (error: EngineError | null, result: CheckpointResult | undefined) => void

export interface CheckpointWriterOptions {
  storage: Storage
  directory: string
  shard: number
  /** Checked before each step: once the log has failed, the shard writes nothing more (fsyncgate). */
  failed: () => EngineError | undefined
}

export class CheckpointWriter {
  private readonly storage: Storage
  private readonly directory: string
  private readonly shard: number
  private readonly failed: () => EngineError | undefined
  private aborted = false

  constructor(options: CheckpointWriterOptions) {
    this.storage = options.storage
    this.directory = options.directory
    this.shard = options.shard
    this.failed = options.failed
  }

  /** Asks the checkpoint in progress to stop after its operation in flight: it then calls back ENGINE_CLOSED. */
  abort(): void {
    this.aborted = true
  }

  /** Writes the checkpoint of `point` from `scan` and makes it current; calls back once, either way. */
  write(point: DurablePoint, scan: TableScan, durableSequence: () => number, callback: CheckpointCallback): void {
    const started = performance.now()
    const temporary = path.join(this.directory, checkpointName(point.sequence, 'unfinished'))
    const current = path.join(this.directory, checkpointName(point.sequence, 'current'))
    let file: StorageFile
    try {
      if (this.storage.list(this.directory).includes(path.basename(temporary))) this.storage.remove(temporary)
      file = this.storage.open(temporary, 'checkpoint')
    } catch (error) {
      return callback(this.ioError(ioFailure('open', error as NodeJS.ErrnoException, temporary)), undefined)
    }
    let offset = checkpointHeaderBytes
    let blocks = 0
    let records = 0
    let bodyChecksum = 0
    let stepMsMax = 0

    let closed = false
    const close = (): void => {
      if (closed) return
      closed = true
      try {
        file.close()
      } catch {
        // a checkpoint given up, or every byte of it durable: a failed close loses nothing
      }
    }
    const giveUp = (error: EngineError): void => {
      close()
      try {
        // Removed now (a failure is rare): a checkpoint of the same sequence may be asked for next.
        this.storage.remove(temporary)
      } catch {
        // the next open discards it (checkpoint_unfinished)
      }
      callback(error, undefined)
    }
    const written = (next: () => void) => (failure: IoFailure | null) => {
      if (failure !== null) return giveUp(this.ioError(failure))
      if (this.aborted) return giveUp(new EngineError('ENGINE_CLOSED', 'the shard closed while it wrote a checkpoint'))
      const failed = this.failed()
      if (failed !== undefined) return giveUp(failed)
      next()
    }
    const step = (): void => {
      const stepStarted = performance.now()
      let piece: ReturnType<TableScan['next']>
      try {
        piece = scan.next(blockBytes)
      } catch (error) {
        if ((error as { code?: unknown }).code !== 'SHARD_FULL') throw error
        return giveUp(new EngineError('SHARD_FULL', `shard ${this.shard}: checkpoint: ${(error as Error).message}`, { cause: error }))
      }
      if (piece === undefined) return finish()
      const block = new Uint8Array(batchHeaderBytes + piece.body.length)
      block.set(piece.body, batchHeaderBytes)
      blocks++
      const pieceChecksum = checksum(piece.body)
      encodeBatchHeader(block, {
        sequence: blocks,
        bodyBytes: piece.body.length,
        recordCount: piece.recordCount,
        bodyChecksum: pieceChecksum,
      })
      // The whole's CRC goes on from the block's header and its body's CRC, without reading the body again.
      bodyChecksum = checksumCombine(checksum(block.subarray(0, batchHeaderBytes), bodyChecksum), pieceChecksum, piece.body.length)
      records += piece.recordCount
      const at = offset
      offset += block.length
      stepMsMax = Math.max(stepMsMax, performance.now() - stepStarted)
      file.writeDurable(block, at, written(step))
    }
    const finish = (): void => {
      const header = encodeCheckpointHeader({
        shard: this.shard,
        sequence: point.sequence,
        recordCount: records,
        bodyBytes: offset - checkpointHeaderBytes,
        blockCount: blocks,
        bodyChecksum,
        intent: point.intent,
        completion: point.completion,
        // Batches applied during the walk may be in it: from here on, each must be found whole.
        acknowledgedThrough: durableSequence(),
      })
      file.writeDurable(
        header,
        0,
        written(() => {
          close()
          this.storage.renameDurable(
            temporary,
            current,
            written(() => {
              // Current now: older checkpoints hold nothing needed (checkpoint_superseded); the caller
              // discards them with the segments the checkpoint retires.
              callback(null, {
                sequence: point.sequence,
                records,
                bytes: offset,
                durationMs: performance.now() - started,
                stepMsMax,
              })
            }),
          )
        }),
      )
    }
    step()
  }

  private ioError(failure: IoFailure): EngineError {
    return new EngineError(
      'IO_ERROR',
      `shard ${this.shard}: checkpoint: ${failure.operation} of ${failure.path ?? 'the checkpoint'} failed with ${failure.code}; ` +
        'the previous checkpoint and the log are as they were, and nothing acknowledged is lost',
      { cause: failure },
    )
  }
}
