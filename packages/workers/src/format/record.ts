// The write-ahead log's on-disk format: batches of records. This module owns the byte layout and the
// checksums, and nothing else: it never touches a file. Every offset below is little-endian.
//
// A log is a sequence of batches, each written by one group commit (one write + one fdatasync). In a
// segment file each batch lies in stamped 512-byte sectors (sectors.ts); its own bytes are these:
//
//   batch header (32 bytes)
//   | offset | size | field                                                                  |
//   |--------|------|------------------------------------------------------------------------|
//   | 0      | 4    | magic 0x42564B52 ("RKVB" as bytes on disk)                             |
//   | 4      | 4    | CRC32 of header bytes 8..31                                            |
//   | 8      | 8    | batch sequence: 1 for the first batch of a shard, +1 for each next one |
//   | 16     | 4    | body length in bytes (the records that follow)                         |
//   | 20     | 4    | record count                                                           |
//   | 24     | 4    | CRC32 of the body (all the batch's record bytes)                       |
//   | 28     | 4    | reserved, zero                                                         |
//
//   record (16-byte header, then the key, then the value; records are packed, no padding)
//   | offset | size | field                                                                  |
//   |--------|------|------------------------------------------------------------------------|
//   | 0      | 4    | CRC32 of record bytes 4..end (header rest, key, value)                 |
//   | 4      | 1    | kind: 1 = put, 2 = delete (a delete has valueLength 0)                 |
//   | 5      | 3    | reserved, zero                                                         |
//   | 8      | 4    | key length, 0..keyBytesMax (the empty key is a key)                    |
//   | 12     | 4    | value length, 0..valueBytesMax                                         |
//
// Why two levels of checksum: the body CRC lets recovery (and the completion log) check a whole batch in
// one pass; the record CRC makes a record verifiable on its own, out of its batch. Recovery checks the
// body CRC, which covers every byte of every record, and each record's structure, but not the record CRCs
// again: in one pass over a batch they find nothing the body CRC misses (both are computed from the same
// bytes on the shard's thread, one after the other), and checking them cost 130 ms of a 1.3 s reopen of a
// million keys. A zero-filled region never parses: magic 0 is not the batch magic, and a record kind of 0 is
// invalid. (What tells a sector written in this life of a segment from zeros or an older life's bytes is
// its stamp: sectors.ts.)
//
// The façade builds record bytes with both CRCs zero (the main thread is the bottleneck at high rates);
// the shard worker seals them (fills in the CRCs) before they are written.

import assert from 'node:assert/strict'
import { checksum } from './checksum.js'

export const batchMagic = 0x42564b52
export const batchHeaderBytes = 32
export const recordHeaderBytes = 16

export const recordKindPut = 1
export const recordKindDelete = 2

/** The largest key, in bytes (a string key is measured as UTF-8). */
export const keyBytesMax = 64 * 1024
/** The largest value, in bytes. */
export const valueBytesMax = 16 * 1024 * 1024
// Lengths are u32 on disk, and the table keeps a key's length in 24 bits (assembly/table.ts).
assert(keyBytesMax < 2 ** 24 && recordHeaderBytes + keyBytesMax + valueBytesMax < 2 ** 32, 'record lengths fit their fields')

export function recordBytes(keyLength: number, valueLength: number): number {
  return recordHeaderBytes + keyLength + valueLength
}

/** Writes one record with a zero CRC at `offset`; returns the offset after it. */
export function encodeRecord(
  target: Uint8Array,
  view: DataView,
  offset: number,
  kind: number,
  key: Uint8Array,
  value: Uint8Array | undefined,
): number {
  const valueLength = value === undefined ? 0 : value.length
  view.setUint32(offset, 0, true)
  view.setUint32(offset + 4, kind, true) // kind in byte 4, reserved bytes 5..7 zero
  view.setUint32(offset + 8, key.length, true)
  view.setUint32(offset + 12, valueLength, true)
  target.set(key, offset + recordHeaderBytes)
  if (value !== undefined) target.set(value, offset + recordHeaderBytes + key.length)
  return offset + recordHeaderBytes + key.length + valueLength
}

/** One record as read back: views into the batch, not copies. */
export interface RecordView {
  kind: number
  key: Uint8Array
  value: Uint8Array
}

export class RecordFormatError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message)
    this.name = 'RecordFormatError'
  }
}

/**
 * Walks the records of a batch body, checking each one's structure and, when `verify` is set, its CRC.
 * Throws RecordFormatError at the first record that does not hold. `seal` fills in record CRCs instead
 * of checking them (the worker, before writing).
 */
export function forEachRecord(
  body: Uint8Array,
  recordCount: number,
  mode: 'verify' | 'seal' | 'trust',
  visit: ((record: RecordView) => void) | undefined,
): void {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  let offset = 0
  for (let index = 0; index < recordCount; index++) {
    if (offset + recordHeaderBytes > body.length) {
      throw new RecordFormatError(`record ${index} header runs past the batch body`, offset)
    }
    const kind = body[offset + 4]!
    const keyLength = view.getUint32(offset + 8, true)
    const valueLength = view.getUint32(offset + 12, true)
    if (kind !== recordKindPut && kind !== recordKindDelete) {
      throw new RecordFormatError(`record ${index} has unknown kind ${kind}`, offset)
    }
    if (keyLength > keyBytesMax || valueLength > valueBytesMax) {
      throw new RecordFormatError(`record ${index} has impossible lengths ${keyLength}/${valueLength}`, offset)
    }
    if (kind === recordKindDelete && valueLength !== 0) {
      throw new RecordFormatError(`delete record ${index} carries a value`, offset)
    }
    const end = offset + recordHeaderBytes + keyLength + valueLength
    if (end > body.length) throw new RecordFormatError(`record ${index} runs past the batch body`, offset)
    if (mode !== 'trust') {
      const crc = checksum(body.subarray(offset + 4, end))
      if (mode === 'seal') {
        view.setUint32(offset, crc, true)
      } else if (view.getUint32(offset, true) !== crc) {
        throw new RecordFormatError(`record ${index} fails its checksum`, offset)
      }
    }
    if (visit !== undefined) {
      const keyStart = offset + recordHeaderBytes
      visit({
        kind,
        key: body.subarray(keyStart, keyStart + keyLength),
        value: body.subarray(keyStart + keyLength, end),
      })
    }
    offset = end
  }
  if (offset !== body.length) {
    throw new RecordFormatError(`batch body has ${body.length - offset} bytes after its last record`, offset)
  }
}

export interface BatchHeader {
  sequence: number
  bodyBytes: number
  recordCount: number
  bodyChecksum: number
}

/** A sequence number on disk: a u64 little-endian, written and read as two u32s (JS numbers stay exact to 2^53). */
export function setSequence(view: DataView, offset: number, sequence: number): void {
  view.setUint32(offset, sequence % 0x1_0000_0000, true)
  view.setUint32(offset + 4, Math.floor(sequence / 0x1_0000_0000), true)
}

export function getSequence(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000
}

/** Writes a sealed batch header (its own CRC filled in) at the start of `target`. */
export function encodeBatchHeader(target: Uint8Array, header: BatchHeader): void {
  if (!Number.isSafeInteger(header.sequence) || header.sequence < 1) {
    throw new RangeError(`batch sequence ${header.sequence} is not a positive safe integer`)
  }
  const view = new DataView(target.buffer, target.byteOffset, batchHeaderBytes)
  view.setUint32(0, batchMagic, true)
  setSequence(view, 8, header.sequence)
  view.setUint32(16, header.bodyBytes, true)
  view.setUint32(20, header.recordCount, true)
  view.setUint32(24, header.bodyChecksum, true)
  view.setUint32(28, 0, true)
  view.setUint32(4, checksum(target.subarray(8, batchHeaderBytes)), true)
}

/** Reads a batch header; undefined when the magic or the header CRC does not hold. */
export function decodeBatchHeader(source: Uint8Array): BatchHeader | undefined {
  if (source.length < batchHeaderBytes) return undefined
  const view = new DataView(source.buffer, source.byteOffset, batchHeaderBytes)
  if (view.getUint32(0, true) !== batchMagic) return undefined
  if (view.getUint32(4, true) !== checksum(source.subarray(8, batchHeaderBytes))) return undefined
  if (view.getUint32(28, true) !== 0) return undefined
  return {
    sequence: getSequence(view, 8),
    bodyBytes: view.getUint32(16, true),
    recordCount: view.getUint32(20, true),
    bodyChecksum: view.getUint32(24, true),
  }
}
