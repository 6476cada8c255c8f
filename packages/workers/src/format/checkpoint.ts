// The checkpoint file's on-disk format: a shard's table as of a batch sequence, so that recovery loads it
// and replays only the batches after it. This module owns the byte layout, the file names and the checks;
// it never touches a file (checkpoint/checkpoint-writer.ts writes one, log/recovery.ts reads it back).
//
// Files, in the shard's directory beside its segments:
//   checkpoint-<sequence, 16 digits>.ckpt   a checkpoint made current (the newest valid one is used)
//   checkpoint-<sequence, 16 digits>.tmp    one being written: never current, removed when the shard opens
//
// file header (72 bytes, at offset 0; written last, after every block)
//   | offset | size | field                                                                         |
//   |--------|------|-------------------------------------------------------------------------------|
//   | 0      | 4    | magic 0x4B564B52 ("RKVK" as bytes on disk)                                     |
//   | 4      | 4    | CRC32 of header bytes 8..63                                                   |
//   | 8      | 4    | format version, 2                                                             |
//   | 12     | 4    | shard number                                                                  |
//   | 16     | 8    | sequence S: the checkpoint and the log's batches after S make up the shard    |
//   | 24     | 8    | records in the blocks                                                         |
//   | 32     | 8    | body bytes: every block, after the header                                     |
//   | 40     | 4    | block count                                                                   |
//   | 44     | 4    | CRC32 of the body (every block's bytes, in order): the checksum of the whole  |
//   | 48     | 4    | intent segment where batch S+1 goes (where batch S ended)                     |
//   | 52     | 4    | byte offset there                                                             |
//   | 56     | 4    | completion segment where batch S+1's completion record goes                   |
//   | 60     | 4    | byte offset there                                                             |
//   | 64     | 8    | acknowledged through A: the last batch durable when the blocks were all       |
//   |        |      | written. Every batch up to A was acknowledged before the checkpoint became    |
//   |        |      | current, and the walk may hold some of those after S (checkpoint-writer.ts):  |
//   |        |      | recovery must find each of them whole, or report damage (recovery.ts)         |
//
// blocks (from offset 64, packed): each is a batch exactly as in the intent log (record.ts: a 32-byte
// batch header, then a body of records), whose sequence is the block's number (1, 2, …) and whose records
// are all puts with their record CRC zero (the block's body CRC covers them). So a block is loaded into a
// table the way a batch is replayed. A key may appear in more than one block (checkpoint-writer.ts says
// why): the later one wins, and the log's batches after S win over both.

import { checksum, checksumCombine } from './checksum.js'
import { batchHeaderBytes, decodeBatchHeader, getSequence, recordHeaderBytes, recordKindPut, setSequence } from './record.js'

export const checkpointMagic = 0x4b564b52
export const checkpointVersion = 2
export const checkpointHeaderBytes = 72

const checkpointPattern = /^checkpoint-(\d{16})\.(ckpt|tmp)$/

export function checkpointName(sequence: number, state: 'current' | 'unfinished'): string {
  if (!Number.isSafeInteger(sequence) || sequence < 0) throw new RangeError(`bad checkpoint sequence ${sequence}`)
  return `checkpoint-${String(sequence).padStart(16, '0')}.${state === 'current' ? 'ckpt' : 'tmp'}`
}

/** Whether a file name is a checkpoint's (current or unfinished). */
export function isCheckpointName(name: string): boolean {
  return checkpointPattern.test(name)
}

/** The checkpoint files among a directory's names: made current, and unfinished; each by sequence, ascending. */
export function checkpointFiles(names: readonly string[]): { current: number[]; unfinished: number[] } {
  const current: number[] = []
  const unfinished: number[] = []
  for (const name of names) {
    const match = checkpointPattern.exec(name)
    if (match === null) continue
    ;(match[2] === 'ckpt' ? current : unfinished).push(Number(match[1]))
  }
  const ascending = (a: number, b: number): number => a - b
  return { current: current.sort(ascending), unfinished: unfinished.sort(ascending) }
}

export interface CheckpointHeader {
  shard: number
  sequence: number
  recordCount: number
  bodyBytes: number
  blockCount: number
  bodyChecksum: number
  /** Where the log goes on after batch `sequence`, in each log. */
  intent: { segment: number; offset: number }
  completion: { segment: number; offset: number }
  /** The last batch durable when the blocks were all written: every batch up to it was acknowledged. */
  acknowledgedThrough: number
}

export function encodeCheckpointHeader(header: CheckpointHeader): Uint8Array {
  const bytes = new Uint8Array(checkpointHeaderBytes)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, checkpointMagic, true)
  view.setUint32(8, checkpointVersion, true)
  view.setUint32(12, header.shard, true)
  setSequence(view, 16, header.sequence)
  setSequence(view, 24, header.recordCount)
  setSequence(view, 32, header.bodyBytes)
  view.setUint32(40, header.blockCount, true)
  view.setUint32(44, header.bodyChecksum, true)
  view.setUint32(48, header.intent.segment, true)
  view.setUint32(52, header.intent.offset, true)
  view.setUint32(56, header.completion.segment, true)
  view.setUint32(60, header.completion.offset, true)
  setSequence(view, 64, header.acknowledgedThrough)
  view.setUint32(4, checksum(bytes.subarray(8)), true)
  return bytes
}

export function decodeCheckpointHeader(bytes: Uint8Array): CheckpointHeader | undefined {
  if (bytes.length < checkpointHeaderBytes) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, checkpointHeaderBytes)
  if (view.getUint32(0, true) !== checkpointMagic) return undefined
  if (view.getUint32(4, true) !== checksum(bytes.subarray(8, checkpointHeaderBytes))) return undefined
  if (view.getUint32(8, true) !== checkpointVersion) return undefined
  return {
    shard: view.getUint32(12, true),
    sequence: getSequence(view, 16),
    recordCount: getSequence(view, 24),
    bodyBytes: getSequence(view, 32),
    blockCount: view.getUint32(40, true),
    bodyChecksum: view.getUint32(44, true),
    intent: { segment: view.getUint32(48, true), offset: view.getUint32(52, true) },
    completion: { segment: view.getUint32(56, true), offset: view.getUint32(60, true) },
    acknowledgedThrough: getSequence(view, 64),
  }
}

/** Where a checkpoint file is read from: its length, and reads at an offset (recovery's storage). */
export interface CheckpointSource {
  readonly size: number
  /** Reads up to `target.length` bytes at `offset` into `target`; returns how many (fewer only at the end). */
  readAt(offset: number, target: Uint8Array): number
}

/** A checkpoint is read this much at a time, into one buffer: 132 MB are not allocated (and faulted in) at once. */
export const checkpointReadBytes = 4 * 1024 * 1024

/** What reading a checkpoint's blocks back found. */
export type CheckpointReading =
  | { state: 'intact'; blocksRead: number; recordsRead: number }
  | {
      state: 'damaged'
      /** The blocks that held, and their records: each was handed over. */
      blocksRead: number
      recordsRead: number
      reason: string
      byteRange: [number, number]
    }

/** The header of a checkpoint file, or undefined when it does not hold (short, magic, CRC or version). */
export function readCheckpointHeader(source: CheckpointSource): CheckpointHeader | undefined {
  const bytes = new Uint8Array(checkpointHeaderBytes)
  return decodeCheckpointHeader(bytes.subarray(0, source.readAt(0, bytes)))
}

/**
 * Reads a checkpoint's blocks after its `header` and checks everything: each block's header and body CRC,
 * that blocks are numbered 1, 2, … and tile the body exactly, that each record is a put that fits its
 * block, the counts, and the whole body's CRC. Each block that holds goes to `take` as it is read (its
 * bytes are valid during the call only: they are read a few MiB at a time into one buffer), including
 * the blocks after a problem, which a `truncate` open loads. The first problem is reported. A block larger
 * than `readBytes` gets a buffer of its own size.
 */
export function readCheckpointBlocks(
  source: CheckpointSource,
  header: CheckpointHeader,
  take: (body: Uint8Array, recordCount: number) => void,
  readBytes = checkpointReadBytes,
): CheckpointReading {
  const end = checkpointHeaderBytes + header.bodyBytes
  const limit = Math.min(end, source.size)
  let problem: { reason: string; byteRange: [number, number] } | undefined
  const note = (reason: string, byteRange: [number, number]): void => {
    problem ??= { reason, byteRange }
  }
  if (source.size !== end) {
    note(`the file is ${source.size} bytes, its header says ${end}`, [Math.min(source.size, end), Math.max(source.size, end)])
  }
  // The bytes read so far and not yet passed: file offsets [windowStart, windowEnd) at window[0..].
  let window = new Uint8Array(readBytes)
  let windowStart = checkpointHeaderBytes
  let windowEnd = checkpointHeaderBytes
  /** The file's bytes [offset, offset + length) (offset never goes back), or undefined past `limit`. */
  const bytesAt = (offset: number, length: number): Uint8Array | undefined => {
    if (offset + length > limit) return undefined
    if (offset + length > windowEnd) {
      const kept = window.subarray(offset - windowStart, windowEnd - windowStart)
      if (length > window.length) {
        const larger = new Uint8Array(length)
        larger.set(kept)
        window = larger
      } else {
        window.copyWithin(0, offset - windowStart, windowEnd - windowStart)
      }
      windowStart = offset
      windowEnd = offset + kept.length
      while (windowEnd < offset + length) {
        const read = source.readAt(windowEnd, window.subarray(windowEnd - windowStart))
        if (read === 0) return undefined
        windowEnd += read
      }
    }
    return window.subarray(offset - windowStart, offset - windowStart + length)
  }

  let offset = checkpointHeaderBytes
  let number = 0
  let blocksRead = 0
  let recordsRead = 0
  /** The CRC of the blocks so far, header and body: of the whole body once the last is read. */
  let whole = 0
  while (offset + batchHeaderBytes <= limit) {
    const headerBytes = bytesAt(offset, batchHeaderBytes) // undefined only if the file shrank while read
    const block = headerBytes === undefined ? undefined : decodeBatchHeader(headerBytes)
    const blockEnd = block === undefined ? end : offset + batchHeaderBytes + block.bodyBytes
    const bytes = block === undefined || blockEnd > limit ? undefined : bytesAt(offset, blockEnd - offset)
    if (block === undefined || bytes === undefined) {
      note('a block header fails its checksum or runs past the body', [offset, offset + batchHeaderBytes])
      break // the blocks after it cannot be found without its length
    }
    number++
    const body = bytes.subarray(batchHeaderBytes)
    const bodyChecksum = checksum(body)
    // The whole's CRC, from the block's header and its body's CRC: the body is read once, not twice.
    whole = checksumCombine(checksum(bytes.subarray(0, batchHeaderBytes), whole), bodyChecksum, body.length)
    const bad =
      block.sequence !== number
        ? `block ${number} is numbered ${block.sequence}`
        : bodyChecksum !== block.bodyChecksum
          ? `block ${number} fails its checksum`
          : putsProblem(body, block.recordCount)
    if (bad === undefined) {
      take(body, block.recordCount)
      blocksRead++
      recordsRead += block.recordCount
    } else {
      note(bad, [offset, blockEnd])
    }
    offset = blockEnd
  }
  if (problem === undefined) {
    if (offset !== end || number !== header.blockCount)
      note(`the body holds ${number} blocks where the header says ${header.blockCount}`, [offset, end])
    else if (recordsRead !== header.recordCount)
      note(`the blocks hold ${recordsRead} records where the header says ${header.recordCount}`, [checkpointHeaderBytes, end])
    else if (whole !== header.bodyChecksum) {
      note("the body fails the header's checksum of the whole", [checkpointHeaderBytes, end])
    }
  }
  if (problem !== undefined) return { state: 'damaged', blocksRead, recordsRead, ...problem }
  return { state: 'intact', blocksRead, recordsRead }
}

/** Why a block body is not a run of well-formed put records, or undefined (record CRCs are zero here). */
function putsProblem(body: Uint8Array, recordCount: number): string | undefined {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  let offset = 0
  for (let index = 0; index < recordCount; index++) {
    if (offset + recordHeaderBytes > body.length) return `record ${index} runs past its block`
    if (body[offset + 4] !== recordKindPut) return `record ${index} is not a put`
    offset += recordHeaderBytes + view.getUint32(offset + 8, true) + view.getUint32(offset + 12, true)
  }
  return offset === body.length ? undefined : `the block has ${body.length - offset} bytes after its last record`
}
