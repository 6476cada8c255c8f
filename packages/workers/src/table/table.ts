// The shard's in-memory table: what the shard's durable log says, key -> value, and nothing else.
// Two implementations answer to this interface: `MapTable` (a JavaScript Map, the reference model) and
// the WebAssembly table. The shard only ever calls a table with data that is already durable, so a
// read of the table never sees an unacknowledged write.
//
// Both calls cross into the table once per batch, not once per key:
// - `applyBatch` takes a sealed batch body exactly as it sits in the log (format/record.ts);
// - `getPacked` takes keys and answers values packed as a read request carries them (protocol.ts), so a
//   read goes from the message into the table and back without being unpacked in JavaScript.

import { forEachRecord, recordKindPut } from '../format/record.js'
import { forEachPackedKey, packAnswers } from '../protocol.js'

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
