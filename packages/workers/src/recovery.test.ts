// One test per row of the recovery table in recovery.ts, on logs crafted byte by byte.
import { describe, expect, it } from 'vitest'
import { EngineError } from './errors.js'
import {
  batchHeaderBytes,
  checksum,
  encodeBatchHeader,
  encodeRecord,
  forEachRecord,
  recordBytes,
  recordKindPut,
} from './record.js'
import { recover } from './recovery.js'

const text = new TextEncoder()

/** A batch of puts key-i -> value-i, sealed, as it would be on disk. */
function batch(sequence: number, keys: string[]): Uint8Array {
  let bodyBytes = 0
  for (const key of keys) bodyBytes += recordBytes(key.length, key.length + 1)
  const buffer = new Uint8Array(batchHeaderBytes + bodyBytes)
  const body = buffer.subarray(batchHeaderBytes)
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  let offset = 0
  for (const key of keys) offset = encodeRecord(body, view, offset, recordKindPut, text.encode(key), text.encode(`${key}!`))
  forEachRecord(body, keys.length, 'seal', undefined)
  encodeBatchHeader(buffer, { sequence, bodyBytes, recordCount: keys.length, bodyChecksum: checksum(body) })
  return buffer
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

const options = { mode: 'strict' as const, shard: 3, file: '/db/shard-003/wal.log' }

function replay(contents: Uint8Array, mode: 'strict' | 'truncate' = 'strict') {
  const batches: number[] = []
  const result = recover(contents, { ...options, mode }, (_body, count) => batches.push(count))
  return { ...result, batches }
}

const one = batch(1, ['a', 'b'])
const two = batch(2, ['c'])
const three = batch(3, ['d', 'e', 'f'])
const clean = concat(one, two, three)

describe('recovery decision table', () => {
  it('end of file exactly: replays every batch, drops nothing', () => {
    const result = replay(clean)
    expect(result.batches).toEqual([2, 1, 3])
    expect(result.validLength).toBe(clean.length)
    expect(result.nextSequence).toBe(4)
    expect(result.report).toMatchObject({ batchesReplayed: 3, recordsReplayed: 6, tailBytesDropped: 0, repaired: undefined })
  })

  it('a partial batch header at the end: dropped as a torn tail', () => {
    const contents = concat(one, two, three.subarray(0, batchHeaderBytes - 5))
    const result = replay(contents)
    expect(result.batches).toEqual([2, 1])
    expect(result.validLength).toBe(one.length + two.length)
    expect(result.report.tailBytesDropped).toBe(batchHeaderBytes - 5)
    expect(result.report.tailReason).toMatch(/partial batch header/)
  })

  it('a valid header whose body runs past the end: dropped as a torn tail', () => {
    const contents = concat(one, two, three.subarray(0, three.length - 1))
    const result = replay(contents)
    expect(result.batches).toEqual([2, 1])
    expect(result.report.tailReason).toMatch(/runs past the end/)
    expect(result.nextSequence).toBe(3)
  })

  it('a last batch that fails its checksum, nothing intact after: dropped as a torn tail', () => {
    const damaged = clean.slice()
    damaged[clean.length - 2]! ^= 0xff
    const result = replay(damaged)
    expect(result.batches).toEqual([2, 1])
    expect(result.report.tailBytesDropped).toBe(three.length)
    expect(result.report.tailReason).toMatch(/checksum/)
  })

  it('zeros after the last batch (an extended, never written tail): dropped', () => {
    const result = replay(concat(clean, new Uint8Array(4096)))
    expect(result.batches).toEqual([2, 1, 3])
    expect(result.validLength).toBe(clean.length)
    expect(result.report.tailBytesDropped).toBe(4096)
  })

  it('an intact batch with a stale sequence at the end: dropped, never replayed', () => {
    const result = replay(concat(one, two, batch(1, ['old'])))
    expect(result.batches).toEqual([2, 1])
    expect(result.report.tailReason).toMatch(/sequence 1 where 3 was next/)
  })

  it('damage followed by an intact batch: refuses with WAL_CORRUPT naming shard, file, batch and bytes', () => {
    const damaged = clean.slice()
    damaged[one.length + batchHeaderBytes + 3]! ^= 0x01 // inside batch 2's body
    let caught: unknown
    try {
      replay(damaged)
    } catch (error) {
      caught = error
    }
    expect(caught).toBeInstanceOf(EngineError)
    const error = caught as EngineError
    expect(error.code).toBe('WAL_CORRUPT')
    expect(error.details).toMatchObject({
      shard: 3,
      file: options.file,
      batchSequence: 2,
      byteRange: [one.length, one.length + two.length],
    })
  })

  it('damage to a batch header followed by an intact batch: refuses too', () => {
    const damaged = clean.slice()
    damaged[5]! ^= 0x80 // batch 1's header CRC
    expect(() => replay(damaged)).toThrow(expect.objectContaining({ code: 'WAL_CORRUPT' }))
  })

  it("with recovery 'truncate', keeps the intact prefix and reports exactly what it dropped", () => {
    const damaged = clean.slice()
    damaged[one.length + batchHeaderBytes + 3]! ^= 0x01
    const result = replay(damaged, 'truncate')
    expect(result.batches).toEqual([2])
    expect(result.validLength).toBe(one.length)
    expect(result.report.repaired).toEqual({
      fromOffset: one.length,
      bytesDropped: two.length + three.length,
      firstBatchDropped: 2,
      reason: 'batch 2 body fails its checksum',
    })
    expect(result.nextSequence).toBe(2)
  })
})
