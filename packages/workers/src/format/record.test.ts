import crc32 from 'crc-32'
import { describe, expect, it } from 'vitest'
import {
  batchHeaderBytes,
  decodeBatchHeader,
  encodeBatchHeader,
  encodeRecord,
  forEachRecord,
  RecordFormatError,
  recordBytes,
  recordKindDelete,
  recordKindPut,
  type RecordView,
} from './record.js'
import { checksum, nativeChecksumBytesMin } from './checksum.js'

const text = new TextEncoder()

function records(entries: [number, string, string | undefined][]): Uint8Array {
  let bytes = 0
  for (const [, key, value] of entries) bytes += recordBytes(text.encode(key).length, value === undefined ? 0 : text.encode(value).length)
  const target = new Uint8Array(bytes)
  const view = new DataView(target.buffer)
  let offset = 0
  for (const [kind, key, value] of entries) {
    offset = encodeRecord(target, view, offset, kind, text.encode(key), value === undefined ? undefined : text.encode(value))
  }
  return target
}

describe('record format', () => {
  it('computes the same CRC32 (and the same continuation from a seed) on both sides of the native cut-over', () => {
    // Reference values from the crc-32 package, which the short side uses: "123456789" is CRC-32's check value.
    expect(checksum(text.encode('123456789'))).toBe(0xcbf43926)
    const long = new Uint8Array(nativeChecksumBytesMin * 3 + 5).map((_, index) => (index * 131 + 7) & 0xff)
    expect(checksum(long)).toBe(crc32.buf(long) >>> 0)
    // Continuing from a seed: short after long, long after short, and a long buffer in two long halves.
    const head = long.subarray(0, nativeChecksumBytesMin + 1)
    const tail = long.subarray(nativeChecksumBytesMin + 1)
    expect(checksum(tail, checksum(head))).toBe(checksum(long))
    const short = text.encode('a short record')
    expect(checksum(long, checksum(short))).toBe(crc32.buf(long, crc32.buf(short)) >>> 0)
    expect(checksum(short, checksum(long))).toBe(crc32.buf(short, crc32.buf(long)) >>> 0)
  })

  it('round-trips sealed records and checks them on the way back', () => {
    const body = records([
      [recordKindPut, 'alpha', 'one'],
      [recordKindDelete, 'beta', undefined],
      [recordKindPut, 'gamma', ''],
    ])
    forEachRecord(body, 3, 'seal', undefined)
    const seen: RecordView[] = []
    forEachRecord(body, 3, 'verify', (record) => seen.push({ ...record, key: record.key.slice(), value: record.value.slice() }))
    expect(seen.map((record) => [record.kind, Buffer.from(record.key).toString(), Buffer.from(record.value).toString()])).toEqual([
      [recordKindPut, 'alpha', 'one'],
      [recordKindDelete, 'beta', ''],
      [recordKindPut, 'gamma', ''],
    ])
  })

  it('detects every single flipped bit of a sealed record', () => {
    const body = records([[recordKindPut, 'key', 'value']])
    forEachRecord(body, 1, 'seal', undefined)
    for (let bit = 0; bit < body.length * 8; bit++) {
      const damaged = body.slice()
      damaged[bit >> 3]! ^= 1 << (bit & 7)
      expect(() => forEachRecord(damaged, 1, 'verify', undefined), `bit ${bit}`).toThrow(RecordFormatError)
    }
  })

  it('never parses zeros as a record or a batch', () => {
    expect(() => forEachRecord(new Uint8Array(64), 1, 'verify', undefined)).toThrow(RecordFormatError)
    expect(decodeBatchHeader(new Uint8Array(batchHeaderBytes))).toBeUndefined()
  })

  it('round-trips a batch header and rejects a damaged one', () => {
    const header = new Uint8Array(batchHeaderBytes)
    const fields = { sequence: 2 ** 40 + 7, bodyBytes: 1234, recordCount: 5, bodyChecksum: checksum(text.encode('x')) }
    encodeBatchHeader(header, fields)
    expect(decodeBatchHeader(header)).toEqual(fields)
    for (let byte = 0; byte < batchHeaderBytes; byte++) {
      const damaged = header.slice()
      damaged[byte]! ^= 0x10
      expect(decodeBatchHeader(damaged), `byte ${byte}`).toBeUndefined()
    }
  })
})
