// The table's ordered view (assembly/ordered.ts) against the sorted reference (MapTable.readRange): every
// range read compared byte for byte, in both directions, in pages, across splits, merges, entries that
// move, and the empty key. Needs dist/table/table.wasm: run `pnpm --filter @ringkv/workers run build` first.

import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { encodeRecord, recordBytes, recordKindDelete, recordKindPut } from '../format/record.js'
import { forEachPackedEntry } from '../protocol.js'
import { MapTable, type KeyRange, type Table } from './table.js'
import { WasmTable } from './wasm-table.js'
import { batchesArbitrary, everything, rangeArbitrary } from '../testing/ordered-arbitraries.js'

type Operation = { kind: 'put'; key: Uint8Array; value: Uint8Array } | { kind: 'delete'; key: Uint8Array }

function apply(tables: readonly Table[], operations: readonly Operation[]): void {
  let bytes = 0
  for (const operation of operations) bytes += recordBytes(operation.key.length, operation.kind === 'put' ? operation.value.length : 0)
  const body = new Uint8Array(bytes)
  const view = new DataView(body.buffer)
  let offset = 0
  for (const operation of operations) {
    const value = operation.kind === 'put' ? operation.value : undefined
    offset = encodeRecord(body, view, offset, operation.kind === 'put' ? recordKindPut : recordKindDelete, operation.key, value)
  }
  for (const table of tables) table.applyBatch(body, operations.length)
}

/** A whole range read in pages of `limit` entries and `budget` bytes: each page starts after the last key of the one before. */
function readAll(table: Table, range: KeyRange, reverse: boolean, limit: number, budget: number, values: boolean): Buffer[] {
  const pages: Buffer[] = []
  let current = range
  for (;;) {
    const page = table.readRange(current, reverse, limit, budget, values)
    pages.push(Buffer.from(page.packed))
    let last: Uint8Array | undefined
    forEachPackedEntry(page.packed, page.count, values, (key) => (last = key))
    if (!page.more) return pages
    expect(page.count).toBeGreaterThan(0)
    current = reverse ? { ...current, high: last!.slice(), highExclusive: true } : { ...current, low: last!.slice(), lowExclusive: true }
  }
}

function expectSameRanges(table: WasmTable, model: MapTable, ranges: readonly KeyRange[], limit: number, budget: number): void {
  expect(table.debugOrderedCount()).toBe(model.size)
  for (const range of ranges) {
    for (const reverse of [false, true]) {
      for (const values of [true, false]) {
        const got = Buffer.concat(readAll(table, range, reverse, limit, budget, values))
        const expected = Buffer.concat(readAll(model, range, reverse, limit, budget, values))
        if (!got.equals(expected)) expect(got.toString('hex')).toBe(expected.toString('hex'))
      }
    }
  }
}

function valueOf(length: number, stamp: number): Uint8Array {
  const value = new Uint8Array(length)
  for (let index = 0; index < length; index++) value[index] = (stamp * 131 + index * 7) & 0xff
  return value
}

describe('the ordered view against a sorted Map', () => {
  test('random puts, overwrites and deletes: every range, both ways, in pages, as the sorted model says', () => {
    fc.assert(
      fc.property(
        batchesArbitrary(12),
        fc.array(rangeArbitrary, { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 3000 }),
        (batches, ranges, limit, budget) => {
          const table = WasmTable.create({ seed: 3 })
          const model = new MapTable()
          batches.forEach((batch, batchIndex) => {
            apply(
              [table, model],
              batch.map((step, index): Operation =>
                step.put
                  ? { kind: 'put', key: step.key, value: valueOf(step.valueLength, batchIndex * 1000 + index) }
                  : { kind: 'delete', key: step.key },
              ),
            )
            expectSameRanges(table, model, [everything, ...ranges], limit, budget)
          })
          table.dispose()
        },
      ),
      { numRuns: 80 },
    )
  })

  test('200,000 keys in hashed order, overwritten to other sizes (their entries move), then mostly deleted (leaves merge)', () => {
    const table = WasmTable.create({ seed: 5 })
    const model = new MapTable()
    const keyOf = (number: number): Uint8Array => {
      const key = Buffer.alloc(10)
      key.writeUInt32BE(Math.imul(number, 0x9e3779b1) >>> 0, 0)
      key.writeUInt32BE(number, 4)
      return key.subarray(0, 6 + (number % 5))
    }
    const count = 200_000
    const batch = (from: number, make: (number: number) => Operation): void => {
      const operations: Operation[] = []
      for (let number = from; number < Math.min(count, from + 2000); number++) operations.push(make(number))
      apply([table, model], operations)
    }
    for (let from = 0; from < count; from += 2000)
      batch(from, (number) => ({ kind: 'put', key: keyOf(number), value: valueOf(number % 30, number) }))
    const sample: KeyRange[] = [everything, { low: keyOf(17), lowExclusive: true, high: keyOf(99_999), highExclusive: false }]
    expectSameRanges(table, model, sample, 5000, 1 << 20)
    for (let from = 0; from < count; from += 2000)
      batch(from, (number) => ({ kind: 'put', key: keyOf(number), value: valueOf(200 + (number % 90), -number) }))
    expectSameRanges(table, model, sample, 5000, 1 << 20)
    for (let from = 0; from < count; from += 2000) {
      batch(from, (number): Operation =>
        number % 97 === 0 ? { kind: 'put', key: keyOf(number), value: valueOf(3, number) } : { kind: 'delete', key: keyOf(number) },
      )
    }
    expectSameRanges(table, model, sample, 100, 1 << 20)
    expect(table.size).toBe(Math.ceil(count / 97))
    // Deleting all but one key in 97 leaves about 2,000 keys: in leaves merged back to a few dozen, not 4,000.
    const stats = table.debugStats()
    expect(stats.freeBlockBytes).toBeGreaterThan(0)
    table.dispose()
  })

  test('keys that arrive in order fill their leaves: a million of them take well under 20 bytes each in the view', () => {
    const table = WasmTable.create({ seed: 9 })
    const arenaBefore = table.debugStats().arenaBytesUsed
    const count = 1_000_000
    const key = Buffer.alloc(16)
    let entryBytes = 0
    for (let from = 0; from < count; from += 10_000) {
      const operations: Operation[] = []
      for (let number = from; number < from + 10_000; number++) {
        key.write(`key-${String(number).padStart(12, '0')}`, 'latin1')
        operations.push({ kind: 'put', key: new Uint8Array(key), value: new Uint8Array(0) })
        entryBytes += 24 // an entry of a 16-byte key and no value: 8 + 16, its own size class
      }
      apply([table], operations)
    }
    const treeBytes = table.debugStats().arenaBytesUsed - arenaBefore - entryBytes - table.debugStats().freeBlockBytes
    // 12 bytes per entry in a full leaf of 64 (784 / 64 = 12.25), separators and inner nodes on top; the
    // input and output blocks are in arenaBytesUsed too, which is why the bound has slack.
    expect(treeBytes / count).toBeLessThan(14)
    const first = table.readRange(everything, false, 1, 1 << 20, false)
    const last = table.readRange(everything, true, 1, 1 << 20, false)
    expect(Buffer.from(first.packed.subarray(4)).toString('latin1')).toBe('key-000000000000')
    expect(Buffer.from(last.packed.subarray(4)).toString('latin1')).toBe(`key-${String(count - 1).padStart(12, '0')}`)
    table.dispose()
  })
})
