// The shard's in-memory table: what the shard's durable log says, key -> value, and nothing else.
// Two implementations answer to this interface: `MapTable` (a JavaScript Map, the reference model) and
// the WebAssembly table. The shard only ever calls a table with data that is already durable, so a
// read of the table never sees an unacknowledged write.
//
// Both calls cross into the table once per batch, not once per key:
// - `applyBatch` takes a sealed batch body exactly as it sits in the log (format/record.ts);
// - `getPacked` takes keys and answers values packed as a read request carries them (protocol.ts), so a
//   read goes from the message into the table and back without being unpacked in JavaScript.

import { encodeRecord, forEachRecord, recordBytes, recordKindPut } from '../format/record.js'
import { forEachPackedKey, packAnswers, packEntries, type KeyRange } from '../protocol.js'
import type { WasmMemory } from './layout.js'

export type { KeyRange }

/** What a range read answers: `count` entries packed as protocol.ts says, and whether the range holds more after them. */
export interface RangeRead {
  packed: Uint8Array
  count: number
  more: boolean
}

export interface Table {
  /**
   * Makes the room a batch could need, before it is written; throws an error with code 'SHARD_FULL' when
   * it cannot fit. After a successful reserve, applyBatch of the same batch cannot run out of room.
   */
  reserve(body: Uint8Array, recordCount: number): void
  /**
   * A hint before a bulk load (a checkpoint): about `entries` more keys are coming, in records of `bytes` in
   * all. The table may make room for them at once; it never throws (each batch still reserves its own room).
   */
  expect(entries: number, bytes: number): void
  /** Applies the records of one durable batch, in order: a put sets, a delete removes. */
  applyBatch(body: Uint8Array, recordCount: number): void
  /** Looks up `count` packed keys; returns the packed answers (a fresh buffer the caller owns). */
  getPacked(keys: Uint8Array, count: number): Uint8Array
  /**
   * The entries within `range` in key order (`reverse`: descending), from its start: at most `limit` (>= 1)
   * and about `budgetBytes` of answer (the first entry comes whatever its size), packed by packEntries.
   */
  readRange(range: KeyRange, reverse: boolean, limit: number, budgetBytes: number, values: boolean): RangeRead
  /** Live entries. */
  readonly size: number
  /** The live entries' bytes as records (16 + key + value each): what a checkpoint of the table holds. */
  readonly liveBytes: number
  /**
   * Starts a walk of the live entries for a checkpoint. Batches may be applied between two calls of its
   * `next`; what the walk then guarantees is the table's to say (MapTable: the entries as they were when
   * the walk began; WasmTable: see there), and checkpoint/checkpoint-writer.ts says why either is enough.
   */
  scan(): TableScan
  /**
   * The table's memory and its ordered view's root, when another thread can read the view there
   * (WasmTable; ordered-reader.ts says how). MapTable has none.
   */
  sharedOrderedView?(): { memory: WasmMemory; root: () => number }
  /** Releases what the table holds; the table is unusable after. */
  dispose(): void
}

export interface TableScan {
  /**
   * The next entries as a body of put records (format/record.ts, record CRCs zero), of about
   * `budgetBytes` (one larger entry comes alone), or undefined when the walk is done.
   */
  next(budgetBytes: number): { body: Uint8Array; recordCount: number } | undefined
}

/** Packs entries as put records with zero CRCs: what every table's scan returns. */
export function putRecords(entries: readonly (readonly [Uint8Array, Uint8Array])[]): { body: Uint8Array; recordCount: number } {
  let bytes = 0
  for (const [key, value] of entries) bytes += recordBytes(key.length, value.length)
  const body = new Uint8Array(bytes)
  const view = new DataView(body.buffer)
  let offset = 0
  for (const [key, value] of entries) offset = encodeRecord(body, view, offset, recordKindPut, key, value)
  return { body, recordCount: entries.length }
}

/**
 * The reference table: a JavaScript Map from the key's bytes (as a latin1 string, one char per byte,
 * so equal bytes make equal strings) to a copy of the value.
 */
export class MapTable implements Table {
  private readonly entries = new Map<string, Uint8Array>()

  /** A JavaScript Map has no limit of its own short of the heap: nothing to reserve. */
  reserve(): void {}

  /** Nor anything to make room for ahead. */
  expect(): void {}

  private bytes = 0

  applyBatch(body: Uint8Array, recordCount: number): void {
    forEachRecord(body, recordCount, 'trust', (record) => {
      const name = Buffer.from(record.key.buffer, record.key.byteOffset, record.key.length).toString('latin1')
      const old = this.entries.get(name)
      if (old !== undefined) this.bytes -= recordBytes(name.length, old.length)
      if (record.kind === recordKindPut) {
        this.entries.set(name, record.value.slice())
        this.bytes += recordBytes(name.length, record.value.length)
      } else {
        this.entries.delete(name)
      }
    })
  }

  getPacked(keys: Uint8Array, count: number): Uint8Array {
    const answers: (Uint8Array | undefined)[] = []
    forEachPackedKey(keys, count, (key) => {
      answers.push(this.entries.get(Buffer.from(key.buffer, key.byteOffset, key.length).toString('latin1')))
    })
    return packAnswers(answers)
  }

  /** Sorts the keys at every call: the reference, not a fast path. */
  readRange(range: KeyRange, reverse: boolean, limit: number, budgetBytes: number, values: boolean): RangeRead {
    const low = range.low === undefined ? undefined : Buffer.from(range.low).toString('latin1')
    const high = range.high === undefined ? undefined : Buffer.from(range.high).toString('latin1')
    // latin1 strings of bytes compare as the bytes do.
    const names = [...this.entries.keys()]
      .filter(
        (name) =>
          (low === undefined || name > low || (!range.lowExclusive && name === low)) &&
          (high === undefined || name < high || (!range.highExclusive && name === high)),
      )
      .sort()
    if (reverse) names.reverse()
    const taken: [Uint8Array, Uint8Array][] = []
    let bytes = 0
    for (const name of names) {
      const value = this.entries.get(name)!
      const size = 4 + name.length + (values ? 4 + value.length : 0)
      if (taken.length === limit || (taken.length > 0 && bytes + size > budgetBytes)) break
      taken.push([Buffer.from(name, 'latin1'), value])
      bytes += size
    }
    return { packed: packEntries(taken, values), count: taken.length, more: taken.length < names.length }
  }

  get size(): number {
    return this.entries.size
  }

  get liveBytes(): number {
    return this.bytes
  }

  /** The entries as they are now: later batches do not change what the walk returns. */
  scan(): TableScan {
    const entries = [...this.entries]
    let index = 0
    return {
      next: (budgetBytes) => {
        if (index === entries.length) return undefined
        const taken: [Uint8Array, Uint8Array][] = []
        let bytes = 0
        while (index < entries.length) {
          const [name, value] = entries[index]!
          const size = recordBytes(name.length, value.length)
          if (taken.length > 0 && bytes + size > budgetBytes) break
          taken.push([Buffer.from(name, 'latin1'), value])
          bytes += size
          index++
        }
        return putRecords(taken)
      },
    }
  }

  dispose(): void {
    this.entries.clear()
    this.bytes = 0
  }
}
