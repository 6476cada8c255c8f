// The ordered view read from outside the table (ordered-reader.ts) against the table's own range reads:
// the same bytes, the same "more", in both directions and both formats; no answer while the sequence word
// is odd or moves during the read; and a view torn under the reader (random bytes in its nodes, a root
// that points anywhere) ends in an answer or none, never in a throw or a hang.
// Needs dist/table/table.wasm: run `pnpm --filter @ringkv/workers run build` first.

import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { encodeRecord, recordBytes, recordKindDelete, recordKindPut } from '../format/record.js'
import { packEntries, viewSlotRoot, viewSlotSequence, viewStateBytes, type KeyRange } from '../protocol.js'
import { OrderedReader, type InPlaceRead } from './ordered-reader.js'
import { WasmTable } from './wasm-table.js'
import type { WasmMemory } from './layout.js'
import { batchesArbitrary, everything, rangeArbitrary, type Step } from '../testing/ordered-arbitraries.js'

function apply(table: WasmTable, operations: readonly Step[], stamp: number): void {
  let bytes = 0
  for (const operation of operations) bytes += recordBytes(operation.key.length, operation.put ? operation.valueLength : 0)
  const body = new Uint8Array(bytes)
  const view = new DataView(body.buffer)
  let offset = 0
  operations.forEach((operation, index) => {
    const value = operation.put ? new Uint8Array(operation.valueLength).fill((stamp + index) & 0xff) : undefined
    offset = encodeRecord(body, view, offset, operation.put ? recordKindPut : recordKindDelete, operation.key, value)
  })
  table.applyBatch(body, operations.length)
}

/** A reader of `table`'s view, with the state the shard would keep: an even sequence, the root published. */
function readerOf(table: WasmTable, memory?: WasmMemory): { reader: OrderedReader; state: Int32Array } {
  const shared = table.sharedOrderedView()
  const buffer = new SharedArrayBuffer(viewStateBytes)
  const state = new Int32Array(buffer)
  state[viewSlotRoot] = shared.root()
  return { reader: new OrderedReader(memory ?? shared.memory, buffer), state }
}

/** The entries of a read in place, packed as the table packs a range read. */
function packed(read: InPlaceRead, values: boolean): Uint8Array {
  return packEntries(
    read.keys.map((key, index) => [key, read.values[index]!] as const),
    values,
  )
}

function hashedKey(number: number): Uint8Array {
  const key = Buffer.alloc(12)
  key.writeUInt32BE(Math.imul(number, 0x9e3779b1) >>> 0, 0)
  key.writeUInt32BE(number, 4)
  return key.subarray(0, 5 + (number % 7))
}

describe('the ordered view read from another thread', () => {
  test('answers as the table does: every range, both ways, with and without values, any limit and budget', () => {
    fc.assert(
      fc.property(
        batchesArbitrary(10),
        fc.array(rangeArbitrary, { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1, max: 80 }),
        fc.integer({ min: 1, max: 3000 }),
        (batches, ranges, limit, budget) => {
          const table = WasmTable.create({ seed: 3 })
          batches.forEach((batch, stamp) => {
            apply(table, batch, stamp)
            const { reader } = readerOf(table)
            for (const range of [everything, ...ranges]) {
              for (const reverse of [false, true]) {
                for (const values of [true, false]) {
                  const expected = table.readRange(range, reverse, limit, budget, values)
                  const got = reader.read(range, reverse, limit, budget, values)
                  expect(got).toBeDefined()
                  expect(got!.keys.length).toBe(expected.count)
                  expect(got!.more).toBe(expected.more)
                  expect(Buffer.from(packed(got!, values)).equals(Buffer.from(expected.packed))).toBe(true)
                }
              }
            }
          })
          table.dispose()
        },
      ),
      { numRuns: 60 },
    )
  })

  test('a tree of many levels (100,000 keys): random starts in both directions read as the table reads them', () => {
    const table = WasmTable.create({ seed: 4 })
    for (let from = 0; from < 100_000; from += 5000) {
      const batch: Step[] = []
      for (let number = from; number < from + 5000; number++) batch.push({ put: true, key: hashedKey(number), valueLength: number % 50 })
      apply(table, batch, from)
    }
    const { reader } = readerOf(table)
    for (let probe = 0; probe < 2000; probe++) {
      const start = hashedKey((probe * 7919) % 120_000).subarray(0, 1 + (probe % 9))
      const range: KeyRange =
        probe % 2 === 0
          ? { ...everything, low: start, lowExclusive: probe % 3 === 0 }
          : { ...everything, high: start, highExclusive: probe % 3 === 0 }
      const reverse = probe % 4 >= 2
      const expected = table.readRange(range, reverse, 10, 1 << 20, true)
      const got = reader.read(range, reverse, 10, 1 << 20, true)!
      expect(got.more).toBe(expected.more)
      expect(Buffer.from(packed(got, true)).equals(Buffer.from(expected.packed))).toBe(true)
    }
    table.dispose()
  })

  test('no answer while the sequence word is odd (durable batches not yet in the table), nor when it moves during the read', () => {
    const table = WasmTable.create({ seed: 5 })
    apply(table, [{ put: true, key: new Uint8Array([1]), valueLength: 3 }], 0)
    const { reader, state } = readerOf(table)
    expect(reader.read(everything, false, 10, 1 << 20, true)?.keys.length).toBe(1)
    state[viewSlotSequence] = 1
    expect(reader.read(everything, false, 10, 1 << 20, true)).toBeUndefined()
    state[viewSlotSequence] = 2
    expect(reader.read(everything, false, 10, 1 << 20, true)?.keys.length).toBe(1)
    // A memory whose every look bumps the sequence: a batch applied while the reader walked.
    const shared = table.sharedOrderedView()
    const moving = readerOf(table, {
      get buffer() {
        Atomics.add(moving.state, viewSlotSequence, 2)
        return shared.memory.buffer
      },
    })
    expect(moving.reader.read(everything, false, 10, 1 << 20, true)).toBeUndefined()
    table.dispose()
  })

  test('a view torn under the reader (bytes of its nodes overwritten, a root anywhere): an answer or none, never a throw or a hang', () => {
    const table = WasmTable.create({ seed: 6 })
    for (let from = 0; from < 20_000; from += 5000) {
      const batch: Step[] = []
      for (let number = from; number < from + 5000; number++) batch.push({ put: true, key: hashedKey(number), valueLength: 10 })
      apply(table, batch, from)
    }
    const shared = table.sharedOrderedView()
    const original = new Uint8Array(shared.memory.buffer)
    const root = shared.root()
    // A copy of the memory, damaged for each run near the tree (its root's neighbourhood) and undone after.
    const copy = new SharedArrayBuffer(original.length)
    const bytes = new Uint8Array(copy)
    bytes.set(original)
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(1 << 20), byte: fc.nat(255) }), { minLength: 1, maxLength: 200 }),
        fc.oneof(fc.constant(root), fc.nat(original.length + 4096)),
        rangeArbitrary,
        fc.boolean(),
        (writes, rootNow, range, reverse) => {
          const places = writes.map(({ at }) => (root + at - (1 << 19) + bytes.length) % bytes.length)
          writes.forEach(({ byte }, index) => (bytes[places[index]!] = byte))
          const buffer = new SharedArrayBuffer(viewStateBytes)
          new Int32Array(buffer)[viewSlotRoot] = rootNow
          const reader = new OrderedReader({ buffer: copy }, buffer)
          try {
            const got = reader.read(range, reverse, 50, 1 << 16, true)
            if (got !== undefined) expect(got.keys.length).toBeLessThanOrEqual(50)
          } finally {
            for (const place of places) bytes[place] = original[place]!
          }
        },
      ),
      { numRuns: 2000 },
    )
    table.dispose()
  })
})
