// The shard's in-memory table: what the shard's durable log says, key -> value, and nothing else.
// Two implementations answer to this interface: `MapTable` (a JavaScript Map, the reference model) and
// the WebAssembly table. The shard only ever calls a table with data that is already durable, so a
// read of the table never sees an unacknowledged write.
//
// Both calls cross into the table once per batch, not once per key:
// - `applyBatch` takes a sealed batch body exactly as it sits in the log (see record.ts);
// - `getPacked` takes keys packed as repeated (u32 little-endian length, key bytes) and answers values
//   packed as repeated (u32 little-endian length, value bytes), where a length of 0xFFFFFFFF
//   (`absentLength`) means "no such key" and carries no bytes.

import { forEachRecord, recordKindPut } from './record.js'

export const absentLength = 0xffff_ffff

export interface Table {
  /**
   * Makes the room a batch could need, before it is written; throws an error with code 'SHARD_FULL' when
   * it cannot fit. After a successful reserve, applyBatch of the same batch cannot run out of room.
   */
  reserve(body: Uint8Array, recordCount: number): void
  /** Applies the records of one durable batch, in order: a put sets, a delete removes. */
  applyBatch(body: Uint8Array, recordCount: number): void
  /** Looks up `count` packed keys; returns the packed answers (a fresh buffer the caller owns). */
  getPacked(keys: Uint8Array, count: number): Uint8Array
  /** Live entries. */
  readonly size: number
  /** Releases what the table holds; the table is unusable after. */
  dispose(): void
}

/** Packs keys the way `getPacked` takes them: repeated (u32 little-endian length, key bytes). */
export function packKeys(keys: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let bytes = 0
  for (const key of keys) bytes += 4 + key.length
  const packed = new Uint8Array(bytes)
  const view = new DataView(packed.buffer)
  let offset = 0
  for (const key of keys) {
    view.setUint32(offset, key.length, true)
    packed.set(key, offset + 4)
    offset += 4 + key.length
  }
  return packed
}

/** Reads packed keys (u32 length, bytes) one by one; shared by every table and by the façade's tests. */
export function forEachPackedKey(keys: Uint8Array, count: number, visit: (key: Uint8Array) => void): void {
  const view = new DataView(keys.buffer, keys.byteOffset, keys.byteLength)
  let offset = 0
  for (let index = 0; index < count; index++) {
    const length = view.getUint32(offset, true)
    offset += 4
    if (offset + length > keys.length) throw new RangeError(`packed key ${index} runs past its buffer`)
    visit(keys.subarray(offset, offset + length))
    offset += length
  }
  if (offset !== keys.length) throw new RangeError('packed keys carry bytes after the last key')
}

/** Packs answers (undefined = absent) the way `getPacked` returns them. */
export function packAnswers(answers: readonly (Uint8Array | undefined)[]): Uint8Array {
  let bytes = 0
  for (const answer of answers) bytes += 4 + (answer === undefined ? 0 : answer.length)
  const packed = new Uint8Array(bytes)
  const view = new DataView(packed.buffer)
  let offset = 0
  for (const answer of answers) {
    if (answer === undefined) {
      view.setUint32(offset, absentLength, true)
      offset += 4
    } else {
      view.setUint32(offset, answer.length, true)
      packed.set(answer, offset + 4)
      offset += 4 + answer.length
    }
  }
  return packed
}

/**
 * Reads `count` packed answers as `getPacked` returns them, one by one: undefined for an absent key, else
 * a view into `answers` (not a copy).
 */
export function forEachPackedAnswer(answers: Uint8Array, count: number, visit: (value: Uint8Array | undefined) => void): void {
  const view = new DataView(answers.buffer, answers.byteOffset, answers.byteLength)
  let offset = 0
  for (let index = 0; index < count; index++) {
    const length = view.getUint32(offset, true)
    offset += 4
    if (length === absentLength) {
      visit(undefined)
    } else {
      visit(answers.subarray(offset, offset + length))
      offset += length
    }
  }
}

/**
 * The reference table: a JavaScript Map from the key's bytes (as a latin1 string, one char per byte,
 * so equal bytes make equal strings) to a copy of the value.
 */
export class MapTable implements Table {
  private readonly entries = new Map<string, Uint8Array>()

  /** A JavaScript Map has no limit of its own short of the heap: nothing to reserve. */
  reserve(): void {}

  applyBatch(body: Uint8Array, recordCount: number): void {
    forEachRecord(body, recordCount, 'trust', (record) => {
      const name = Buffer.from(record.key.buffer, record.key.byteOffset, record.key.length).toString('latin1')
      if (record.kind === recordKindPut) this.entries.set(name, record.value.slice())
      else this.entries.delete(name)
    })
  }

  getPacked(keys: Uint8Array, count: number): Uint8Array {
    const answers: (Uint8Array | undefined)[] = []
    forEachPackedKey(keys, count, (key) => {
      answers.push(this.entries.get(Buffer.from(key.buffer, key.byteOffset, key.length).toString('latin1')))
    })
    return packAnswers(answers)
  }

  get size(): number {
    return this.entries.size
  }

  dispose(): void {
    this.entries.clear()
  }
}
