// The completion log's on-disk format: one 64-byte completion record per intent batch (the segment files
// that hold them are named in segment-files.ts). Owns the byte layout; never touches a file. Ahead of the
// write position a segment holds zeros (a fresh segment, zero-filled: log/segment-writer.ts) or the records
// of an earlier life (a reused segment): each record names the completion segment it was written in, so a
// slot holding zeros, or a record of another segment, is a slot not written in this life ('unwritten'), as
// the intent log's sector stamps tell its sectors apart (sectors.ts says why segments are reused).
//
// completion record (64 bytes, 64-byte aligned, so it never straddles a 512-byte sector: a crash leaves it
// either old (zeros) or new, never torn)
//   | offset | size | field                                                                        |
//   |--------|------|------------------------------------------------------------------------------|
//   | 0      | 4    | magic 0x43564B52 ("RKVC" as bytes on disk)                                   |
//   | 4      | 4    | CRC32 of bytes 8..63                                                         |
//   | 8      | 8    | batch sequence                                                               |
//   | 16     | 4    | intent segment number holding the batch                                      |
//   | 20     | 4    | byte offset of the batch in that segment                                     |
//   | 24     | 4    | length of the batch in bytes (header + body)                                 |
//   | 28     | 4    | record count                                                                 |
//   | 32     | 4    | CRC32 of the batch's intent bytes (header + body, as written)                |
//   | 36     | 4    | status: 1 = batch written, 2 = clean close (no batch; sequence = last batch) |
//   | 40     | 4    | the completion segment number this record was written in                     |
//   | 44     | 20   | reserved, zero                                                               |
//
// The batch's offset is a sector boundary, and its length the batch's own bytes (header + body): in the
// segment it takes sectorSpan(length) bytes (sectors.ts).

import assert from 'node:assert/strict'
import { checksum } from './checksum.js'
import { getSequence, setSequence } from './record.js'
import { sectorBytes } from './sectors.js'

export const completionMagic = 0x43564b52
export const completionRecordBytes = 64
// A completion record must never straddle a sector, or a crash could tear it: recovery relies on this.
assert.equal(sectorBytes % completionRecordBytes, 0, 'completion records tile a sector')
export const completionStatusWritten = 1
export const completionStatusClosed = 2

export interface CompletionRecord {
  sequence: number
  segment: number
  offset: number
  length: number
  recordCount: number
  intentChecksum: number
  status: number
  /** The completion segment the record is written in. */
  ownSegment: number
}

export function encodeCompletion(target: Uint8Array, record: CompletionRecord): void {
  if (target.length !== completionRecordBytes) throw new RangeError('a completion record is 64 bytes')
  if (!Number.isSafeInteger(record.sequence) || record.sequence < 0) throw new RangeError(`bad sequence ${record.sequence}`)
  const view = new DataView(target.buffer, target.byteOffset, completionRecordBytes)
  target.fill(0)
  view.setUint32(0, completionMagic, true)
  setSequence(view, 8, record.sequence)
  view.setUint32(16, record.segment, true)
  view.setUint32(20, record.offset, true)
  view.setUint32(24, record.length, true)
  view.setUint32(28, record.recordCount, true)
  view.setUint32(32, record.intentChecksum, true)
  view.setUint32(36, record.status, true)
  view.setUint32(40, record.ownSegment, true)
  view.setUint32(4, checksum(target.subarray(8)), true)
}

/**
 * The record in a slot of completion segment `segment`: 'unwritten' for a slot not written in this life
 * (zeros, or a whole record of another segment: stale, in a reused segment); 'damaged' for anything else
 * that does not hold.
 */
export function decodeCompletion(source: Uint8Array, segment: number): CompletionRecord | 'unwritten' | 'damaged' {
  if (source.length < completionRecordBytes) return source.every((byte) => byte === 0) ? 'unwritten' : 'damaged'
  const slot = source.subarray(0, completionRecordBytes)
  if (slot.every((byte) => byte === 0)) return 'unwritten'
  const view = new DataView(slot.buffer, slot.byteOffset, completionRecordBytes)
  if (view.getUint32(0, true) !== completionMagic) return 'damaged'
  if (view.getUint32(4, true) !== checksum(slot.subarray(8))) return 'damaged'
  const status = view.getUint32(36, true)
  if (status !== completionStatusWritten && status !== completionStatusClosed) return 'damaged'
  for (let offset = 44; offset < completionRecordBytes; offset++) if (slot[offset] !== 0) return 'damaged'
  const ownSegment = view.getUint32(40, true)
  if (ownSegment !== segment) return 'unwritten'
  return {
    sequence: getSequence(view, 8),
    segment: view.getUint32(16, true),
    offset: view.getUint32(20, true),
    length: view.getUint32(24, true),
    recordCount: view.getUint32(28, true),
    intentChecksum: view.getUint32(32, true),
    status,
    ownSegment,
  }
}
