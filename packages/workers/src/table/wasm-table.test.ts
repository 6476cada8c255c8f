// The WebAssembly table against the JavaScript Map reference (MapTable): every answer compared, across
// growths, forced collisions, delete/insert churn, and a full table. Needs dist/table/table.wasm: run
// `pnpm --filter @ringkv/workers run build` first.

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { constants as performanceConstants } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { encodeRecord, forEachRecord, RecordFormatError, recordBytes, recordKindDelete, recordKindPut } from '../format/record.js'
import { MapTable, type Table } from './table.js'
import { packKeys } from '../protocol.js'
import { memoryBytesInitial, TableFullError, WasmTable } from './wasm-table.js'

interface Operation {
  kind: 'put' | 'delete'
  key: Uint8Array
  value?: Uint8Array
}

function encodeBatch(operations: readonly Operation[]): Uint8Array {
  let bytes = 0
  for (const operation of operations) bytes += recordBytes(operation.key.length, operation.value?.length ?? 0)
  const body = new Uint8Array(bytes)
  const view = new DataView(body.buffer)
  let offset = 0
  for (const operation of operations) {
    const kind = operation.kind === 'put' ? recordKindPut : recordKindDelete
    offset = encodeRecord(body, view, offset, kind, operation.key, operation.kind === 'put' ? operation.value : undefined)
  }
  return body
}

function apply(tables: readonly Table[], operations: readonly Operation[]): void {
  const body = encodeBatch(operations)
  for (const table of tables) table.applyBatch(body, operations.length)
}

/** Asks both tables for `keys` (in chunks, so a small table's answer block stays small). */
function expectSameAnswers(table: Table, model: Table, keys: readonly Uint8Array[], chunk = 500): void {
  for (let start = 0; start < keys.length; start += chunk) {
    const slice = keys.slice(start, start + chunk)
    const packed = packKeys(slice)
    const answers = Buffer.from(table.getPacked(packed, slice.length))
    const expected = Buffer.from(model.getPacked(packed, slice.length))
    // Buffer.equals first: a deep toEqual over megabytes of answers is slow.
    if (!answers.equals(expected)) expect(answers).toEqual(expected)
  }
  expect(table.size).toBe(model.size)
}

function valueOf(length: number, stamp: number): Uint8Array {
  const value = new Uint8Array(length)
  for (let index = 0; index < length; index++) value[index] = (stamp * 131 + index * 7) & 0xff
  return value
}

function keyOf(number: number, length = 16): Uint8Array {
  const key = new Uint8Array(length)
  const mixed = Math.imul(number, 0x9e3779b1) >>> 0
  for (let index = 0; index < length; index++) key[index] = index < 4 ? number >>> (index * 8) : mixed >>> ((index % 4) * 8)
  return key
}

/** One operation of a random batch: a put (of a small or a large value) or a delete, of one of the keys. */
const operationArbitrary = fc.record({
  put: fc.boolean(),
  keyIndex: fc.nat(),
  valueLength: fc.oneof(fc.integer({ min: 0, max: 140 }), fc.integer({ min: 900, max: 5000 })),
})

/** Up to `count` distinct short keys over a small alphabet (so they collide in prefixes and lengths). */
function keysArbitrary(count: number): fc.Arbitrary<Uint8Array[]> {
  return fc.uniqueArray(fc.uint8Array({ minLength: 1, maxLength: 24, max: 3 }), {
    minLength: 1,
    maxLength: count,
    selector: (key) => Buffer.from(key).toString('hex'),
  })
}

describe('WasmTable against MapTable', () => {
  test('random batches of put, overwrite and delete give the same answers as a Map', () => {
    fc.assert(
      fc.property(
        keysArbitrary(600),
        fc.array(fc.array(operationArbitrary, { maxLength: 250 }), { minLength: 1, maxLength: 25 }),
        fc.nat(),
        (keys, batches, seed) => {
          const table = WasmTable.create({ seed })
          const model = new MapTable()
          const absent = new Uint8Array([9, 9, 9, 9])
          batches.forEach((batch, batchIndex) => {
            const operations = batch.map((operation, index): Operation => {
              const key = keys[operation.keyIndex % keys.length]!
              return operation.put
                ? { kind: 'put', key, value: valueOf(operation.valueLength, batchIndex * 1000 + index) }
                : { kind: 'delete', key }
            })
            apply([table, model], operations)
            expectSameAnswers(table, model, [...keys, absent])
          })
          table.dispose()
        },
      ),
      { numRuns: 60 },
    )
  })

  test('answers stay right across many growths of the index and the arena', () => {
    const table = WasmTable.create({ seed: 7 })
    const model = new MapTable()
    const keyCount = 150_000
    const growthsSeen = new Set<number>()
    for (let start = 0; start < keyCount; start += 1000) {
      const operations: Operation[] = []
      for (let number = start; number < start + 1000; number++) {
        operations.push({ kind: 'put', key: keyOf(number, 8 + (number % 20)), value: valueOf(number % 200, number) })
        // Overwrite and delete earlier keys as it goes.
        if (number % 3 === 0)
          operations.push({ kind: 'put', key: keyOf(number >> 1, 8 + ((number >> 1) % 20)), value: valueOf(number % 50, -number) })
        if (number % 5 === 0) operations.push({ kind: 'delete', key: keyOf(number >> 2, 8 + ((number >> 2) % 20)) })
      }
      apply([table, model], operations)
      growthsSeen.add(table.debugStats().slotCount)
    }
    expect(growthsSeen.size).toBeGreaterThanOrEqual(7)
    const allKeys = Array.from({ length: keyCount + 10 }, (_, number) => keyOf(number, 8 + (number % 20)))
    expectSameAnswers(table, model, allKeys, 5000)
  })

  test('a malformed batch applies nothing and says which record', () => {
    const table = WasmTable.create({ seed: 1 })
    const model = new MapTable()
    apply([table, model], [{ kind: 'put', key: keyOf(1), value: valueOf(10, 1) }])
    const body = encodeBatch([
      { kind: 'put', key: keyOf(2), value: valueOf(10, 2) },
      { kind: 'delete', key: keyOf(1) },
    ])
    body[recordBytes(16, 10) + 4] = 7 // the second record's kind
    expect(() => table.applyBatch(body, 2)).toThrow(RecordFormatError)
    expect(() => table.applyBatch(body.subarray(0, body.length - 1), 2)).toThrow(/record 1/)
    expectSameAnswers(table, model, [keyOf(1), keyOf(2)])
    expect(() => table.getPacked(new Uint8Array([5, 0, 0, 0, 1]), 1)).toThrow(RangeError)
  })
})

describe('WasmTable scan (what a checkpoint is written from)', () => {
  test('a walk in pieces with batches applied in between: untouched keys once with their value; the walk then the batches gives the table', () => {
    fc.assert(
      fc.property(
        keysArbitrary(400),
        fc.array(fc.array(operationArbitrary, { maxLength: 120 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.array(operationArbitrary, { maxLength: 60 }), { maxLength: 12 }),
        fc.integer({ min: 1, max: 4000 }),
        fc.nat(),
        (keys, before, during, budget, seed) => {
          const toOperations = (batch: (typeof before)[number], stamp: number): Operation[] =>
            batch.map((operation, index): Operation => {
              const key = keys[operation.keyIndex % keys.length]!
              return operation.put
                ? { kind: 'put', key, value: valueOf(operation.valueLength, stamp * 1000 + index) }
                : { kind: 'delete', key }
            })
          const table = WasmTable.create({ seed })
          const atStart = new MapTable()
          before.forEach((batch, index) => apply([table, atStart], toOperations(batch, index)))
          const startState = new Map(keys.map((key) => [Buffer.from(key).toString('hex'), lookupOne(atStart, key)]))
          // Walk in pieces; after each piece, apply the next batch of `during` (to the table only).
          const scan = table.scan()
          const walked = new MapTable()
          const touched = new Set<string>()
          const seen = new Map<string, number>()
          const after: Operation[][] = []
          for (let piece = scan.next(budget), step = 0; piece !== undefined; piece = scan.next(budget), step++) {
            walked.applyBatch(piece.body, piece.recordCount)
            forEachPut(piece.body, piece.recordCount, (key, value) => {
              const name = Buffer.from(key).toString('hex')
              seen.set(name, (seen.get(name) ?? 0) + 1)
              // an untouched key comes with its value as of the walk's start
              if (!touched.has(name)) expect(Buffer.from(value)).toEqual(Buffer.from(startState.get(name)!))
            })
            if (step < during.length) {
              const operations = toOperations(during[step]!, 100 + step)
              for (const operation of operations) touched.add(Buffer.from(operation.key).toString('hex'))
              apply([table], operations)
              after.push(operations)
            }
          }
          for (const [name, value] of startState) {
            if (!touched.has(name)) expect(seen.get(name) ?? 0).toBe(value === undefined ? 0 : 1)
          }
          // Recovery's order: the walk, then every batch after the walk began.
          for (const operations of after) apply([walked], operations)
          expectSameAnswers(table, walked, keys)
          table.dispose()
        },
      ),
      { numRuns: 80 },
    )
  })

  test('a full table still walks whole: pieces larger than its spare room are packed from the listed entries', () => {
    const table = WasmTable.create({ seed: 5, memoryBytesMax: memoryBytesInitial })
    const model = new MapTable()
    const keys: Uint8Array[] = []
    let full: unknown
    for (let batch = 0; full === undefined && batch < 10_000; batch++) {
      const operations: Operation[] = Array.from({ length: 100 }, (_, index) => {
        const number = batch * 100 + index
        return { kind: 'put', key: keyOf(number), value: valueOf(1000, number) }
      })
      try {
        table.applyBatch(encodeBatch(operations), operations.length)
        apply([model], operations)
        keys.push(...operations.map((operation) => operation.key))
      } catch (error) {
        full = error
      }
    }
    expect(full).toBeInstanceOf(TableFullError)
    expect(table.debugStats().slotCount * 3).toBeGreaterThan(keys.length * 4 + 400) // the arena is what ran out
    const walked = new MapTable()
    const scan = table.scan()
    // Pieces of 8 MiB, far more than the 1 MiB a full table keeps for reads (its arena is full: 1 KB values).
    for (let piece = scan.next(8 * 1024 * 1024); piece !== undefined; piece = scan.next(8 * 1024 * 1024)) {
      walked.applyBatch(piece.body, piece.recordCount)
    }
    expectSameAnswers(walked, model, keys)
  })

  test('liveBytes counts 16 + key + value of each live entry', () => {
    const table = WasmTable.create({ seed: 3 })
    const model = new MapTable()
    apply(
      [table, model],
      [
        { kind: 'put', key: keyOf(1), value: valueOf(10, 1) },
        { kind: 'put', key: keyOf(2, 5), value: valueOf(3000, 2) },
        { kind: 'put', key: keyOf(1), value: valueOf(20, 3) },
        { kind: 'delete', key: keyOf(3) },
      ],
    )
    expect(table.liveBytes).toBe(16 + 16 + 20 + 16 + 5 + 3000)
    expect(model.liveBytes).toBe(table.liveBytes)
    apply([table, model], [{ kind: 'delete', key: keyOf(2, 5) }])
    expect(table.liveBytes).toBe(16 + 16 + 20)
    expect(model.liveBytes).toBe(table.liveBytes)
  })
})

function lookupOne(table: Table, key: Uint8Array): Uint8Array | undefined {
  const answer = Buffer.from(table.getPacked(packKeys([key]), 1))
  const length = answer.readUInt32LE(0)
  return length === 0xffff_ffff ? undefined : new Uint8Array(answer.subarray(4, 4 + length))
}

function forEachPut(body: Uint8Array, recordCount: number, visit: (key: Uint8Array, value: Uint8Array) => void): void {
  forEachRecord(body, recordCount, 'trust', (record) => {
    expect(record.kind).toBe(recordKindPut)
    visit(record.key, record.value)
  })
}

// The project's lib (ES2022, no DOM) does not declare the WebAssembly API: the little this test uses.
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => { readonly buffer: ArrayBufferLike }
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: object) => { readonly exports: object }
}

describe('WasmTable hashing', () => {
  test('is SipHash: the reference vector of SipHash-2-4 holds', () => {
    // Key 00..0f, message 00..0e: the paper's test vector (Aumasson and Bernstein, appendix A).
    const wasmFile = fileURLToPath(new URL('../../dist/table/table.wasm', import.meta.url))
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 100, shared: true })
    const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(wasmFile)), {
      env: {
        memory,
        abort: () => {
          throw new Error('abort')
        },
      },
    })
    const exports = instance.exports as unknown as {
      init(a: number, b: number, c: number, d: number, pagesMax: number): number
      inputReserve(bytes: number): number
      hashForTest(pointer: number, length: number, c: number, d: number): bigint
    }
    expect(exports.init(0x03020100, 0x07060504, 0x0b0a0908, 0x0f0e0d0c, 100)).toBe(0)
    const pointer = exports.inputReserve(15)
    new Uint8Array(memory.buffer).set(
      Array.from({ length: 15 }, (_, index) => index),
      pointer,
    )
    expect(BigInt.asUintN(64, exports.hashForTest(pointer, 15, 2, 4))).toBe(0xa129ca6149be45e5n)
  })

  test('the seed changes every hash; an unseeded table uses a random one', () => {
    const key = keyOf(12345)
    const first = WasmTable.create({ seed: 1 })
    const second = WasmTable.create({ seed: 2 })
    expect(first.debugHash(key)).not.toBe(second.debugHash(key))
    expect(WasmTable.create({ seed: 1 }).debugHash(key)).toBe(first.debugHash(key))
    expect(WasmTable.create().debugHash(key)).not.toBe(first.debugHash(key))
  })

  test('keys crafted to collide in the low hash bits are still told apart', () => {
    const table = WasmTable.create({ seed: 99 })
    const model = new MapTable()
    // Brute force 96 keys whose tags agree in the low 12 bits: one home slot up to 4096 slots.
    const colliding: Uint8Array[] = []
    for (let number = 0; colliding.length < 96; number++) {
      const key = keyOf(number, 4 + (number % 13))
      if ((table.debugHash(key) & 0xfffn) === 0x5a5n) colliding.push(key)
    }
    apply(
      [table, model],
      colliding.map((key, index) => ({ kind: 'put', key, value: valueOf(index % 40, index) })),
    )
    expect(table.debugStats().probeDistanceMax).toBeGreaterThanOrEqual(95)
    expectSameAnswers(table, model, colliding)
    // Delete every other one from the middle of the run, overwrite the rest, put some back.
    apply(
      [table, model],
      colliding.filter((_, index) => index % 2 === 1).map((key) => ({ kind: 'delete', key })),
    )
    expectSameAnswers(table, model, colliding)
    apply(
      [table, model],
      colliding.filter((_, index) => index % 4 === 0).map((key, index) => ({ kind: 'put', key, value: valueOf(300, index) })),
    )
    apply(
      [table, model],
      colliding.filter((_, index) => index % 4 === 1).map((key, index) => ({ kind: 'put', key, value: valueOf(3, index) })),
    )
    expectSameAnswers(table, model, colliding)
    apply(
      [table, model],
      colliding.map((key) => ({ kind: 'delete', key })),
    )
    expectSameAnswers(table, model, colliding)
    expect(table.debugStats().probeDistanceMax).toBe(0)
  })
})

describe('WasmTable.expect (before a checkpoint is loaded)', () => {
  test('makes the room at once: loading that many keys then neither rehashes the index nor grows memory', () => {
    const table = WasmTable.create({ seed: 11 })
    const model = new MapTable()
    const count = 20_000
    const operations: Operation[] = Array.from({ length: count }, (_, index) => ({
      kind: 'put',
      key: keyOf(index),
      value: valueOf(100, index),
    }))
    table.expect(count, encodeBatch(operations).length)
    const before = table.debugStats()
    expect(before.slotCount * 3).toBeGreaterThanOrEqual(count * 4)
    for (let start = 0; start < count; start += 500) apply([table, model], operations.slice(start, start + 500))
    const after = table.debugStats()
    expect(after.slotCount).toBe(before.slotCount)
    expect(after.memoryBytes).toBe(before.memoryBytes)
    expectSameAnswers(
      table,
      model,
      operations.map((operation) => operation.key),
    )
  })

  test('is a hint: past the memory limit, or with nonsense, it changes nothing and throws nothing', () => {
    const table = WasmTable.create({ seed: 12, memoryBytesMax: memoryBytesInitial })
    const before = table.debugStats()
    table.expect(50_000_000, 10 * memoryBytesInitial)
    table.expect(-1, 100)
    table.expect(1.5, 100)
    expect(table.debugStats()).toEqual(before)
    apply([table], [{ kind: 'put', key: keyOf(1), value: valueOf(10, 1) }])
    expect(table.size).toBe(1)
  })
})

describe('WasmTable space', () => {
  test('insert/delete churn leaves probe lengths, slots and arena where they were', () => {
    const table = WasmTable.create({ seed: 3 })
    const live = 2000
    const churn = 1000
    let next = 0
    const put = (count: number): Operation[] =>
      Array.from({ length: count }, () => ({ kind: 'put', key: keyOf(next, 16), value: valueOf(100, next++) }))
    apply([table], put(live))
    let oldest = 0
    const afterCycles: ReturnType<WasmTable['debugStats']>[] = []
    for (let cycle = 0; cycle < 60; cycle++) {
      const deletes: Operation[] = Array.from({ length: churn }, () => ({ kind: 'delete', key: keyOf(oldest++, 16) }))
      apply([table], deletes)
      apply([table], put(churn))
      afterCycles.push(table.debugStats())
    }
    const first = afterCycles[1]!
    const last = afterCycles[afterCycles.length - 1]!
    expect(last.entryCount).toBe(live)
    expect(last.slotCount).toBe(first.slotCount)
    expect(last.arenaBytesUsed).toBe(first.arenaBytesUsed)
    for (const stats of afterCycles) {
      expect(stats.probeDistanceMean).toBeLessThan(2)
      expect(stats.probeDistanceMax).toBeLessThan(64)
    }
  })

  test('overwrites reuse the space of the values they replace', () => {
    const table = WasmTable.create({ seed: 4 })
    const keys = Array.from({ length: 1000 }, (_, number) => keyOf(number))
    const overwrite = (length: number, stamp: number): void =>
      apply(
        [table],
        keys.map((key, index) => ({ kind: 'put', key, value: valueOf(length, stamp + index) })),
      )
    overwrite(100, 0)
    overwrite(300, 1)
    const settled = table.debugStats().arenaBytesUsed
    for (let round = 0; round < 20; round++) overwrite(round % 2 === 0 ? 100 : 300, round)
    for (let round = 0; round < 20; round++) overwrite(97 + (round % 7), round) // one size class: in place
    expect(table.debugStats().arenaBytesUsed).toBe(settled)
  })

  test('a full table throws SHARD_FULL, applies nothing of that batch, and keeps working', () => {
    const memoryBytesMax = 1024 * 1024
    const table = WasmTable.create({ seed: 5, memoryBytesMax })
    const model = new MapTable()
    const keys: Uint8Array[] = []
    let full: unknown
    for (let batch = 0; full === undefined; batch++) {
      const operations: Operation[] = Array.from({ length: 100 }, (_, index) => {
        const number = batch * 100 + index
        return { kind: 'put', key: keyOf(number), value: valueOf(100, number) }
      })
      try {
        table.applyBatch(encodeBatch(operations), operations.length)
      } catch (error) {
        full = error
        break
      }
      apply([model], operations)
      keys.push(...operations.map((operation) => operation.key))
      expect(batch).toBeLessThan(1000)
    }
    expect(full).toBeInstanceOf(TableFullError)
    expect((full as TableFullError).code).toBe('SHARD_FULL')
    expect(table.debugStats().memoryBytes).toBeLessThanOrEqual(memoryBytesMax)
    expect(table.size).toBeGreaterThan(4000)
    const lost = Array.from({ length: 100 }, (_, index) => keyOf(keys.length + index))
    expectSameAnswers(table, model, [...keys, ...lost], 100)
    // One read of every key: too large for the spare room, so it goes in pieces, packed in JavaScript.
    expectSameAnswers(table, model, [...keys, ...lost], 100_000)

    // Deletes make room that puts of the same size reuse: the deleted keys put back, and overwrites.
    const deletes: Operation[] = keys.slice(0, 300).map((key) => ({ kind: 'delete', key }))
    apply([table, model], deletes)
    const puts: Operation[] = keys.slice(0, 300).map((key, index) => ({ kind: 'put', key, value: valueOf(100, -index) }))
    apply([table, model], puts)
    const overwrites: Operation[] = keys.slice(300, 600).map((key, index) => ({ kind: 'put', key, value: valueOf(100, index) }))
    apply([table, model], overwrites)
    expectSameAnswers(table, model, [...keys, ...lost], 100)
    // New keys need room in the ordered view too when they split a leaf (assembly/ordered.ts), which the
    // freed entries' blocks (a smaller size class) cannot give: all of such a batch, or none of it.
    const added: Operation[] = lost.map((key, index) => ({ kind: 'put', key, value: valueOf(100, index) }))
    try {
      apply([table], added)
      apply([model], added)
    } catch (error) {
      expect((error as TableFullError).code).toBe('SHARD_FULL')
    }
    expectSameAnswers(table, model, [...keys, ...lost], 100)
    expect(table.debugOrderedCount()).toBe(table.size)
  })

  test('options are checked', () => {
    expect(() => WasmTable.create({ memoryBytesMax: 1000 })).toThrow(RangeError)
    expect(() => WasmTable.create({ memoryBytesMax: 2 ** 33 })).toThrow(RangeError)
    expect(() => WasmTable.create({ seed: -1 })).toThrow(RangeError)
    const table = WasmTable.create()
    table.dispose()
    expect(() => table.size).toThrow(/dispose/)
  })
})

const largeValueBytes = 64 * 1024

/** The large value of key number `number`: a fixed pattern, the number in its first 4 bytes. */
function largeValueOf(number: number, value = valueOf(largeValueBytes, 0)): Uint8Array {
  new DataView(value.buffer, value.byteOffset).setUint32(0, number, true)
  return value
}

/**
 * Puts large values under fresh keys (from `firstKey` on) until the table's memory reaches
 * `memoryBytesTarget` or the table is full. Body and value buffers are reused, so the test makes no
 * external memory of its own. Returns the keys put, the memory sizes seen, and the full error if any.
 */
function fillWithLargeValues(table: WasmTable, memoryBytesTarget: number, firstKey = 0) {
  const recordsPerBatch = 16
  const body = new Uint8Array(recordsPerBatch * recordBytes(16, largeValueBytes))
  const view = new DataView(body.buffer)
  const value = largeValueOf(0)
  const keys: Uint8Array[] = []
  const memoryBytesSeen = new Set<number>([table.memoryBytesNow])
  let next = firstKey
  while (table.memoryBytesNow < memoryBytesTarget) {
    const batchKeys = Array.from({ length: recordsPerBatch }, () => keyOf(next++))
    let offset = 0
    for (const [index, key] of batchKeys.entries()) {
      offset = encodeRecord(body, view, offset, recordKindPut, key, largeValueOf(next - recordsPerBatch + index, value))
    }
    try {
      table.applyBatch(body, recordsPerBatch)
    } catch (error) {
      return { keys, memoryBytesSeen: [...memoryBytesSeen], full: error }
    }
    keys.push(...batchKeys)
    memoryBytesSeen.add(table.memoryBytesNow)
  }
  return { keys, memoryBytesSeen: [...memoryBytesSeen], full: undefined }
}

describe('WasmTable memory and the garbage collector', () => {
  test("the memory is shared, so growing it adds nothing to V8's external memory", () => {
    // Unshared, V8 counts the whole memory as the isolate's external memory, and growth by 64 MiB
    // since the last full GC starts a full GC (external memory pressure).
    const table = WasmTable.create({ seed: 12 })
    expect(table.memoryBytesNow).toBe(memoryBytesInitial)
    const externalBefore = process.memoryUsage().external
    fillWithLargeValues(table, 4 * memoryBytesInitial)
    const grownBytes = table.memoryBytesNow - memoryBytesInitial
    expect(grownBytes).toBeGreaterThanOrEqual(3 * memoryBytesInitial)
    expect(process.memoryUsage().external - externalBefore).toBeLessThan(grownBytes / 4)
    table.dispose()
  })

  test('a worker whose table grows to 256 MiB has no GC started by external memory pressure', async () => {
    // The built modules: a worker cannot load the TypeScript sources the test runner compiles.
    const distUrl = (name: string): string => new URL(`../../dist/${name}`, import.meta.url).href
    const source = `
      const { parentPort, workerData } = require('node:worker_threads')
      const { PerformanceObserver } = require('node:perf_hooks')
      ;(async () => {
        const { WasmTable } = await import(workerData.wasmTableUrl)
        const { encodeRecord, recordBytes, recordKindPut } = await import(workerData.recordUrl)
        const gcFlags = []
        const observer = new PerformanceObserver((list) => { for (const entry of list.getEntries()) gcFlags.push(entry.detail.flags) })
        observer.observe({ entryTypes: ['gc'] })
        const table = WasmTable.create({ seed: 13 })
        const value = new Uint8Array(64 * 1024).fill(7)
        const key = new Uint8Array(16)
        const keyView = new DataView(key.buffer)
        const body = new Uint8Array(16 * recordBytes(16, value.length))
        const view = new DataView(body.buffer)
        for (let next = 0; table.memoryBytesNow < workerData.memoryBytesTarget; ) {
          let offset = 0
          for (let index = 0; index < 16; index++) {
            keyView.setUint32(0, next++, true)
            offset = encodeRecord(body, view, offset, recordKindPut, key, value)
          }
          table.applyBatch(body, 16)
        }
        await new Promise((resolve) => setTimeout(resolve, 100)) // the last 'gc' entries arrive
        observer.disconnect()
        parentPort.postMessage({ memoryBytes: table.memoryBytesNow, gcFlags })
      })()
    `
    const memoryBytesTarget = 256 * 1024 * 1024
    const worker = new Worker(source, {
      eval: true,
      workerData: { wasmTableUrl: distUrl('table/wasm-table.js'), recordUrl: distUrl('format/record.js'), memoryBytesTarget },
    })
    const result = await new Promise<{ memoryBytes: number; gcFlags: number[] }>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    })
    await worker.terminate()
    expect(result.memoryBytes).toBeGreaterThanOrEqual(memoryBytesTarget)
    const externalMemoryFlag = performanceConstants.NODE_PERFORMANCE_GC_FLAGS_ALL_EXTERNAL_MEMORY
    expect(result.gcFlags.filter((flags) => (flags & externalMemoryFlag) !== 0)).toEqual([])
  })

  test('memory doubles from its initial size, stops exactly at the limit, and then SHARD_FULL', () => {
    const memoryBytesMax = 40 * 1024 * 1024
    const table = WasmTable.create({ seed: 14, memoryBytesMax })
    const { keys, memoryBytesSeen, full } = fillWithLargeValues(table, Number.POSITIVE_INFINITY)
    expect(memoryBytesSeen).toEqual([memoryBytesInitial, 2 * memoryBytesInitial, memoryBytesMax])
    expect(full).toBeInstanceOf(TableFullError)
    expect((full as TableFullError).code).toBe('SHARD_FULL')
    expect(table.size).toBe(keys.length)
    expect(table.debugStats().memoryBytes).toBe(memoryBytesMax)
    // Every value is still there, whole.
    const answers = Buffer.from(table.getPacked(packKeys(keys), keys.length))
    const expected = largeValueOf(0)
    let offset = 0
    keys.forEach((_, number) => {
      expect(answers.readUInt32LE(offset)).toBe(largeValueBytes)
      if (!answers.subarray(offset + 4, offset + 4 + largeValueBytes).equals(largeValueOf(number, expected))) {
        expect.fail(`the value of key ${number} changed`)
      }
      offset += 4 + largeValueBytes
    })
  })

  test('answers are copied out into unshared buffers that later writes do not change', () => {
    const table = WasmTable.create({ seed: 15 })
    apply([table], [{ kind: 'put', key: keyOf(1), value: valueOf(50, 1) }])
    const answers = table.getPacked(packKeys([keyOf(1)]), 1)
    expect(Object.prototype.toString.call(answers.buffer)).toBe('[object ArrayBuffer]')
    const copy = answers.slice()
    apply([table], [{ kind: 'put', key: keyOf(1), value: valueOf(50, 2) }])
    fillWithLargeValues(table, 2 * memoryBytesInitial, 100) // the memory grows: a new buffer
    expect(answers).toEqual(copy)
    expect(Buffer.from(table.getPacked(packKeys([keyOf(1)]), 1)).subarray(4)).toEqual(Buffer.from(valueOf(50, 2)))
  })
})
