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

import { checksum } from './checksum.js'
import { batchHeaderBytes, decodeBatchHeader, getSequence, recordHeaderBytes, recordKindPut, setSequence } from './record.js'

export const checkpointMagic = 0x4b564b52
export const checkpointVersion = 2
export const checkpointHeaderBytes = 72

const checkpointPattern = /^checkpoint-(\d{16})\.(ckpt|tmp)$/

export function checkpointName(sequence: number, state: 'current' | 'unfinished'): string {
  if (!Number.isSafeInteger(sequence) || sequence < 0) throw new RangeError(`bad checkpoint sequence ${sequence}`)
  return `checkpoint-${String(sequence).padStart(16, '0')}.${state === 'current' ? 'ckpt' : 'tmp'}`
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

/** A block of the checkpoint: its records, as a batch body. */
export interface CheckpointBlock {
  body: Uint8Array
  recordCount: number
}

/** What reading a checkpoint file back found. */
export type CheckpointReading =
  | { state: 'intact'; header: CheckpointHeader; blocks: CheckpointBlock[] }
  | {
      state: 'damaged'
      /** The header, when it holds (the blocks then say what is lost); undefined when it does not. */
      header: CheckpointHeader | undefined
      /** The blocks that hold, in order. */
      blocks: CheckpointBlock[]
      reason: string
      byteRange: [number, number]
    }

/**
 * Reads a checkpoint file's contents and checks everything: the header's CRC, each block's header and body
 * CRC, that blocks are numbered 1, 2, … and tile the body exactly, that each record is a put that fits its
 * block, and the whole body's CRC. The first problem is reported; the blocks before and after it that
 * hold are returned with it (a `truncate` open loads them and reports the rest).
 */
export function readCheckpoint(contents: Uint8Array): CheckpointReading {
  const header = decodeCheckpointHeader(contents)
  if (header === undefined) {
    return {
      state: 'damaged',
      header: undefined,
      blocks: [],
      reason: 'the checkpoint header fails its checksum',
      byteRange: [0, checkpointHeaderBytes],
    }
  }
  const end = checkpointHeaderBytes + header.bodyBytes
  const blocks: CheckpointBlock[] = []
  let problem: { reason: string; byteRange: [number, number] } | undefined
  const note = (reason: string, byteRange: [number, number]): void => {
    problem ??= { reason, byteRange }
  }
  if (contents.length !== end)
    note(`the file is ${contents.length} bytes, its header says ${end}`, [Math.min(contents.length, end), Math.max(contents.length, end)])
  let offset = checkpointHeaderBytes
  let number = 0
  let records = 0
  while (offset + batchHeaderBytes <= Math.min(end, contents.length)) {
    const block = decodeBatchHeader(contents.subarray(offset))
    const blockEnd = block === undefined ? end : offset + batchHeaderBytes + block.bodyBytes
    if (block === undefined || blockEnd > Math.min(end, contents.length)) {
      note('a block header fails its checksum or runs past the body', [offset, offset + batchHeaderBytes])
      break // the blocks after it cannot be found without its length
    }
    number++
    const body = contents.subarray(offset + batchHeaderBytes, blockEnd)
    const bad =
      block.sequence !== number
        ? `block ${number} is numbered ${block.sequence}`
        : checksum(body) !== block.bodyChecksum
          ? `block ${number} fails its checksum`
          : putsProblem(body, block.recordCount)
    if (bad === undefined) {
      blocks.push({ body, recordCount: block.recordCount })
      records += block.recordCount
    } else {
      note(bad, [offset, blockEnd])
    }
    offset = blockEnd
  }
  if (problem === undefined) {
    if (offset !== end || number !== header.blockCount)
      note(`the body holds ${number} blocks where the header says ${header.blockCount}`, [offset, end])
    else if (records !== header.recordCount)
      note(`the blocks hold ${records} records where the header says ${header.recordCount}`, [checkpointHeaderBytes, end])
    else if (checksum(contents.subarray(checkpointHeaderBytes, end)) !== header.bodyChecksum) {
      note("the body fails the header's checksum of the whole", [checkpointHeaderBytes, end])
    }
  }
  if (problem !== undefined) return { state: 'damaged', header, blocks, ...problem }
  return { state: 'intact', header, blocks }
}

/** Why a block body is not a run of well-formed put records, or undefined (record CRCs are zero here). */
function putsProblem(body: Uint8Array, recordCount: number): string | undefined {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  let offset = 0
  for (let index = 0; index < recordCount; index++) {
    if (offset + recordHeaderBytes > body.length) return `record ${index} runs past its block`
    if (body[offset + 4] !== recordKindPut) return `record ${index} is not a put`
    const keyLength = view.getUint32(offset + 8, true)
    if (keyLength === 0) return `record ${index} has an empty key`
    offset += recordHeaderBytes + keyLength + view.getUint32(offset + 12, true)
  }
  return offset === body.length ? undefined : `the block has ${body.length - offset} bytes after its last record`
}
