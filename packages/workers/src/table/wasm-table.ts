// The shard's table in WebAssembly linear memory (assembly/table.ts, built to dist/table/table.wasm). This
// module owns loading that module, copying each batch into it and each batch of answers out of it, and
// turning its status codes into errors. It promises what `Table` promises, plus: a batch either applies
// whole or not at all (a full table or a malformed body changes nothing), and a full table is a
// `TableFullError` with code 'SHARD_FULL', never a crash or a dropped record.
//
// Each table is its own WebAssembly instance with its own memory (at most 4 GiB less 64 KiB: wasm32),
// so the JavaScript heap holds a handful of objects however many entries the table has. The memory is
// created here, shared, and imported by the module. V8 (11.3, Node 20) counts an unshared wasm memory as
// its isolate's external memory, and a grow that puts that more than 64 MiB above its level at the last
// full GC starts a GC of the worker for "external memory pressure" (incremental marking, then a full
// pause), which frees nothing: the memory lives as long as the table. A shared memory is counted against
// no isolate, so the table's growth starts no GC. Answers are copied out into ordinary, unshared buffers;
// the memory itself leaves this module only as sharedOrderedView(), for a reader of the ordered view on
// another thread (ordered-reader.ts).

import { randomFillSync } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { keyBytesMax, RecordFormatError, recordHeaderBytes, recordKindPut, valueBytesMax } from '../format/record.js'
import { type KeyRange, type RangeRead, type Table, type TableScan } from './table.js'
import { absentLength } from '../protocol.js'
import { orderedLayoutFields, type WasmMemory } from './layout.js'

const pageBytes = 65536
/** wasm32 addresses 65536 pages; the table keeps one back so that every address fits in a u32. */
export const memoryBytesLimit = 65535 * pageBytes
export const memoryBytesMaxDefault = memoryBytesLimit
/** The input block a scan lists entry addresses in: 16,384 of them (the block a table always has holds more). */
const scanListBytes = 64 * 1024
/** Entries one rangeList call lists at most (their addresses go in the input block). */
const rangeListMax = 16 * 1024
/** A bound's mode in rangeList (assembly/table.ts): none, inclusive, exclusive. */
const boundNone = 0
const boundInclusive = 1
const boundExclusive = 2

/** Memory a table starts with (or its limit, if smaller); it doubles from there as the table grows. */
export const memoryBytesInitial = 16 * 1024 * 1024

/** The table cannot take a batch (or hold a batch's answers) within its memory limit. */
export class TableFullError extends Error {
  readonly code = 'SHARD_FULL' as const
  constructor(message: string) {
    super(message)
    this.name = 'TableFullError'
  }
}

export interface WasmTableOptions {
  /** Fixes the hash key (for tests). Without it, every table in this process uses one random key. */
  seed?: number
  /** The table's memory limit in bytes, rounded down to 64 KiB pages. Default: memoryBytesLimit. */
  memoryBytesMax?: number
}

/** What `debugStats` reports; probe distances count slots past an entry's home slot. */
export interface WasmTableStats {
  slotCount: number
  entryCount: number
  probeDistanceMax: number
  probeDistanceMean: number
  /** Bytes of the arena handed out so far (entries, free blocks, scratch). */
  arenaBytesUsed: number
  freeBlockBytes: number
  freeBlockCount: number
  indexBytes: number
  memoryBytes: number
  memoryBytesMax: number
}

// The WebAssembly API, typed here (WasmMemory in layout.ts): the project's lib (ES2022, no DOM) does not declare it.
interface WasmGlobal {
  readonly value: number
}
interface WasmApi {
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: object) => { readonly exports: object }
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

interface TableExports {
  statusOk: WasmGlobal
  statusFull: WasmGlobal
  statusRecordHeaderPastBody: WasmGlobal
  statusRecordKindUnknown: WasmGlobal
  statusRecordLengthsImpossible: WasmGlobal
  statusRecordDeleteWithValue: WasmGlobal
  statusRecordPastBody: WasmGlobal
  statusBodyTrailingBytes: WasmGlobal
  statusPackedKeyPastBuffer: WasmGlobal
  statusPackedKeysTrailingBytes: WasmGlobal
  statusAnswersNoRoom: WasmGlobal
  init(key0Low: number, key0High: number, key1Low: number, key1High: number, pagesMax: number): number
  inputReserve(bytes: number): number
  inputCapacity(): number
  applyBatch(body: number, length: number, recordCount: number): number
  reserveBatch(body: number, length: number, recordCount: number): number
  reserveEntries(entries: number, arenaBytes: number): number
  lookupBatch(keys: number, length: number, count: number): number
  outputPointer(): number
  outputLength(): number
  entryCount(): number
  liveBytes(): number
  scanEntries(cursor: number, end: number, list: number, listMax: number, budgetBytes: number): number
  scanListedCount(): number
  listWrite(list: number, count: number, format: number): number
  listFormatRecords: WasmGlobal
  listFormatPairs: WasmGlobal
  listFormatKeys: WasmGlobal
  rangeList(
    low: number,
    lowLength: number,
    lowMode: number,
    high: number,
    highLength: number,
    highMode: number,
    reverse: number,
    list: number,
    listMax: number,
    budgetBytes: number,
    format: number,
  ): number
  rangeMore(): number
  orderedCount(): number
  arenaBegin(): number
  arenaEnd(): number
  errorRecordIndex(): number
  errorRecordOffset(): number
  keyBytesMax(): number
  valueBytesMax(): number
  orderedRoot(): number
  orderedLayout(field: number): number
  statsWrite(): number
  hashForTest(pointer: number, length: number, compressionRounds: number, finalizationRounds: number): bigint
}

const usedAfterDispose = 'WasmTable used after dispose()'
let compiledModule: object | undefined
/** The process's random hash key: 4 u32 words, drawn once. */
let processKeyWords: Uint32Array | undefined

function wasmPath(): string {
  // Beside the built JavaScript in dist/table/; from src/table/ (tests run the TypeScript), the build's output.
  const candidates = [new URL('./table.wasm', import.meta.url), new URL('../../dist/table/table.wasm', import.meta.url)]
  for (const candidate of candidates) {
    const path = fileURLToPath(candidate)
    if (existsSync(path)) return path
  }
  throw new Error(
    `table.wasm not found beside ${fileURLToPath(import.meta.url)} nor in dist/table/: ` +
      'run `pnpm --filter @ringkv/workers run build` first',
  )
}

function tableModule(): object {
  compiledModule ??= new wasmApi.Module(readFileSync(wasmPath()))
  return compiledModule
}

/** splitmix64: spreads a small test seed over the 128-bit hash key. */
function keyWordsFromSeed(seed: number): Uint32Array {
  const words = new Uint32Array(4)
  let state = BigInt(seed)
  for (let index = 0; index < 2; index++) {
    state = (state + 0x9e3779b97f4a7c15n) & 0xffff_ffff_ffff_ffffn
    let mixed = state
    mixed = ((mixed ^ (mixed >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffff_ffff_ffff_ffffn
    mixed = ((mixed ^ (mixed >> 27n)) * 0x94d049bb133111ebn) & 0xffff_ffff_ffff_ffffn
    mixed ^= mixed >> 31n
    words[index * 2] = Number(mixed & 0xffff_ffffn)
    words[index * 2 + 1] = Number(mixed >> 32n)
  }
  return words
}

/** Reads an AssemblyScript string (UTF-16, byte length in the u32 before it) for abort messages. */
function readWasmString(memory: WasmMemory, pointer: number): string {
  if (pointer === 0) return '(no message)'
  const bytes = new Uint8Array(memory.buffer)
  const length = new DataView(memory.buffer).getUint32(pointer - 4, true)
  return Buffer.from(bytes.subarray(pointer, pointer + length)).toString('utf16le')
}

export class WasmTable implements Table {
  private exports: TableExports | undefined
  private memory: WasmMemory | undefined
  private memoryBytes: Uint8Array
  private readonly statusFull: number
  private readonly memoryBytesMax: number

  private constructor(exports: TableExports, memory: WasmMemory, memoryBytesMax: number) {
    this.exports = exports
    this.memory = memory
    this.memoryBytes = new Uint8Array(memory.buffer)
    this.statusFull = exports.statusFull.value
    this.memoryBytesMax = memoryBytesMax
  }

  static create(options: WasmTableOptions = {}): WasmTable {
    const { seed, memoryBytesMax = memoryBytesMaxDefault } = options
    if (seed !== undefined && (!Number.isSafeInteger(seed) || seed < 0)) {
      throw new RangeError(`options.seed must be a non-negative safe integer, got ${seed}`)
    }
    if (!Number.isSafeInteger(memoryBytesMax) || memoryBytesMax < pageBytes || memoryBytesMax > memoryBytesLimit) {
      throw new RangeError(`options.memoryBytesMax must be an integer in ${pageBytes}..${memoryBytesLimit}, got ${memoryBytesMax}`)
    }
    const pagesMax = Math.floor(memoryBytesMax / pageBytes)
    // The maximum makes V8 refuse a grow past the limit too; the table checks pagesMax before growing.
    const memory = new wasmApi.Memory({ initial: Math.min(memoryBytesInitial / pageBytes, pagesMax), maximum: pagesMax, shared: true })
    const instance = new wasmApi.Instance(tableModule(), {
      env: {
        memory,
        abort(message: number, fileName: number, line: number, column: number): never {
          // An assertion inside the table failed: a programmer error, never an operating one.
          throw new Error(`table.wasm: ${readWasmString(memory, message)} at ${readWasmString(memory, fileName)}:${line}:${column}`)
        },
      },
    })
    const exports = instance.exports as unknown as TableExports
    if (exports.keyBytesMax() !== keyBytesMax || exports.valueBytesMax() !== valueBytesMax) {
      throw new Error('table.wasm was built with other key/value limits than format/record.ts: rebuild it')
    }
    if (orderedLayoutFields.some((value, field) => exports.orderedLayout(field) >>> 0 !== value)) {
      throw new Error('table.wasm lays out its ordered view otherwise than table/layout.ts says: rebuild it, or fix layout.ts')
    }
    if (seed === undefined) {
      processKeyWords ??= randomFillSync(new Uint32Array(4))
    }
    const keyWords = seed === undefined ? processKeyWords! : keyWordsFromSeed(seed)
    const status = exports.init(keyWords[0]!, keyWords[1]!, keyWords[2]!, keyWords[3]!, pagesMax)
    if (status === exports.statusFull.value) {
      throw new RangeError(`options.memoryBytesMax ${memoryBytesMax} cannot hold even an empty table`)
    }
    return new WasmTable(exports, memory, pagesMax * pageBytes)
  }

  applyBatch(body: Uint8Array, recordCount: number): void {
    const exports = this.live()
    if (!Number.isInteger(recordCount) || recordCount < 0 || recordCount > 0xffff_ffff) {
      throw new RangeError(`recordCount must be a u32, got ${recordCount}`)
    }
    const pointer = this.copyIn(body, body.length, recordCount)
    const status = exports.applyBatch(pointer, body.length, recordCount)
    if (status === this.statusFull) {
      throw new TableFullError(
        `shard table is full: a batch of ${recordCount} records (${body.length} bytes) does not fit ` +
          `in memoryBytesMax ${this.memoryBytesMax}; nothing of it was applied`,
      )
    }
    if (status !== 0) this.throwFormatError(status)
  }

  reserve(body: Uint8Array, recordCount: number): void {
    const exports = this.live()
    const pointer = this.copyIn(body, body.length, recordCount)
    const status = exports.reserveBatch(pointer, body.length, recordCount)
    if (status === this.statusFull) {
      throw new TableFullError(
        `shard table is full: a batch of ${recordCount} records (${body.length} bytes) would not fit ` +
          `in memoryBytesMax ${this.memoryBytesMax}`,
      )
    }
    if (status !== 0) this.throwFormatError(status)
  }

  /**
   * Grows the index to hold `entries` more keys and the arena to hold their records' `bytes`, at once: a
   * checkpoint of a million keys then loads without rehashing the index twenty times and moving it up the
   * memory at each step of the arena's growth. An entry block is its record less 8 bytes, rounded up to
   * its size class (at most 12.5% above): so `bytes` x 9/8 is room enough. Past the memory limit it does
   * nothing, and the batches find out for themselves.
   */
  expect(entries: number, bytes: number): void {
    if (!(Number.isSafeInteger(entries) && entries > 0 && entries <= 0xffff_ffff && bytes >= 0)) return
    // And the ordered view's leaves, at worst half full: 12 bytes per entry in a leaf, plus separators.
    this.live().reserveEntries(entries, Math.min(Math.ceil((bytes * 9) / 8) + 32 * entries, memoryBytesLimit))
  }

  getPacked(keys: Uint8Array, count: number): Uint8Array {
    const exports = this.live()
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`)
    // Every packed key takes at least its 4-byte length: more keys than that cannot be there.
    if (count > keys.length / 4) throw new RangeError(`packed key ${Math.floor(keys.length / 4)} runs past its buffer`)
    const foundBytes = ((keys.length + 3) & ~3) - keys.length + 4 * count
    const pointer = exports.inputReserve(keys.length + foundBytes) >>> 0
    // A full table reads a large batch in pieces that fit the input block it has.
    if (pointer === 0) return this.getPackedInPieces(keys, count)
    this.bytes().set(keys, pointer)
    const status = exports.lookupBatch(pointer, keys.length, count)
    if (status === this.statusFull) {
      throw new TableFullError(`shard table is full: no room for the answers to ${count} keys`)
    }
    if (status === exports.statusAnswersNoRoom.value) {
      return this.packAnswersFromEntries(pointer + keys.length + foundBytes - 4 * count, count)
    }
    if (status !== 0) this.throwFormatError(status)
    const output = exports.outputPointer() >>> 0
    return this.bytes().slice(output, output + (exports.outputLength() >>> 0))
  }

  private getPackedInPieces(keys: Uint8Array, count: number): Uint8Array {
    const capacity = this.live().inputCapacity() >>> 0
    const view = new DataView(keys.buffer, keys.byteOffset, keys.byteLength)
    const answers: Uint8Array[] = []
    let pieceStart = 0
    let pieceCount = 0
    let offset = 0
    const flush = (): void => {
      if (pieceCount > 0) answers.push(this.getPacked(keys.subarray(pieceStart, offset), pieceCount))
      pieceStart = offset
      pieceCount = 0
    }
    for (let index = 0; index < count; index++) {
      if (offset + 4 > keys.length) throw new RangeError(`packed key ${index} runs past its buffer`)
      const keyBytes = 4 + view.getUint32(offset, true)
      if (offset + keyBytes > keys.length) throw new RangeError(`packed key ${index} runs past its buffer`)
      if (offset + keyBytes - pieceStart + 4 * (pieceCount + 1) + 3 > capacity) flush()
      if (keyBytes + 4 + 3 > capacity) {
        // Longer than any key the table can hold (the input block holds the longest): absent.
        const absent = new Uint8Array(4)
        new DataView(absent.buffer).setUint32(0, absentLength, true)
        answers.push(absent)
        offset += keyBytes
        pieceStart = offset
        continue
      }
      offset += keyBytes
      pieceCount++
    }
    if (offset !== keys.length) throw new RangeError('packed keys carry bytes after the last key')
    flush()
    return Buffer.concat(answers)
  }

  /** The full table's read path: packs the answers in JavaScript from the entries the lookup found. */
  private packAnswersFromEntries(found: number, count: number): Uint8Array {
    const bytes = this.bytes()
    const memory = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const answers = Buffer.allocUnsafe(this.live().outputLength() >>> 0)
    let target = 0
    for (let index = 0; index < count; index++) {
      const entry = memory.readUInt32LE(found + 4 * index)
      if (entry === 0) {
        target = answers.writeUInt32LE(absentLength, target)
        continue
      }
      const keyLength = memory.readUInt32LE(entry) & 0xff_ffff // entry header: see assembly/table.ts
      const valueLength = memory.readUInt32LE(entry + 4)
      target = answers.writeUInt32LE(valueLength, target)
      const valueStart = entry + 8 + keyLength
      target += memory.copy(answers, target, valueStart, valueStart + valueLength)
    }
    return new Uint8Array(answers.buffer, answers.byteOffset, answers.length)
  }

  get size(): number {
    return this.live().entryCount() >>> 0
  }

  get liveBytes(): number {
    return this.live().liveBytes()
  }

  /**
   * A walk of the arena in address order (assembly/table.ts), in pieces, from its start to where it ended
   * when the walk began. Batches applied between two pieces may move, add or drop entries, so the walk is
   * fuzzy: an entry whose key no batch touches after the walk began is returned exactly once, with its
   * value (its block neither moves nor changes); a key that a later batch touches may come 0, 1 or 2
   * times, with any of its values. A checkpoint replays every batch after the walk began over what the
   * walk returned, which makes such keys exact (checkpoint/checkpoint-writer.ts).
   */
  scan(): TableScan {
    let cursor = this.live().arenaBegin() >>> 0
    const end = this.live().arenaEnd() >>> 0
    return {
      next: (budgetBytes) => {
        if (cursor >= end) return undefined
        const exports = this.live()
        // The list of entry addresses goes in the input block, which the walk skips.
        const list = exports.inputReserve(scanListBytes) >>> 0
        const capacity = exports.inputCapacity() >>> 0
        if (list === 0) throw new TableFullError('shard table is full: no room to list entries for a checkpoint')
        cursor = exports.scanEntries(cursor, end, list, Math.floor(capacity / 4), budgetBytes) >>> 0
        const listed = exports.scanListedCount() >>> 0
        return { body: this.writeListed(list, listed, exports.listFormatRecords.value), recordCount: listed }
      },
    }
  }

  /**
   * Entries within `range` in key order (`reverse`: descending): at most `limit`, and about `budgetBytes`
   * of answer (one larger entry comes alone), packed as protocol.ts says (with or without `values`). The
   * walk goes down the ordered view (assembly/ordered.ts) to the range's start and along its leaves.
   */
  readRange(range: KeyRange, reverse: boolean, limit: number, budgetBytes: number, values: boolean): RangeRead {
    const exports = this.live()
    if (!(Number.isInteger(limit) && limit >= 1)) throw new RangeError(`limit must be a positive integer, got ${limit}`)
    const listMax = Math.min(limit, rangeListMax)
    const lowBytes = range.low === undefined ? 0 : (range.low.length + 3) & ~3
    const highBytes = range.high === undefined ? 0 : (range.high.length + 3) & ~3
    const pointer = exports.inputReserve(lowBytes + highBytes + 4 * listMax) >>> 0
    if (pointer === 0) throw new TableFullError('shard table is full: no room to list a range')
    const memory = this.bytes()
    if (range.low !== undefined) memory.set(range.low, pointer)
    if (range.high !== undefined) memory.set(range.high, pointer + lowBytes)
    const mode = (bound: Uint8Array | undefined, exclusive: boolean): number =>
      bound === undefined ? boundNone : exclusive ? boundExclusive : boundInclusive
    const format = values ? exports.listFormatPairs.value : exports.listFormatKeys.value
    const list = pointer + lowBytes + highBytes
    const count =
      exports.rangeList(
        pointer,
        range.low?.length ?? 0,
        mode(range.low, range.lowExclusive),
        pointer + lowBytes,
        range.high?.length ?? 0,
        mode(range.high, range.highExclusive),
        reverse ? 1 : 0,
        list,
        listMax,
        Math.min(Math.max(1, budgetBytes), 0xffff_0000),
        format,
      ) >>> 0
    return { packed: this.writeListed(list, count, format), count, more: exports.rangeMore() !== 0 }
  }

  /**
   * The memory and the ordered view's root, for an OrderedReader on another thread (ordered-reader.ts): the
   * caller publishes the root and keeps the sequence word around every change (Shard does).
   */
  sharedOrderedView(): { memory: WasmMemory; root: () => number } {
    const exports = this.live()
    return { memory: this.memory!, root: () => exports.orderedRoot() >>> 0 }
  }

  /** Entries in the ordered view, counted along its leaves: for tests (it equals `size`). */
  debugOrderedCount(): number {
    return this.live().orderedCount() >>> 0
  }

  /**
   * The entries just listed at `list` in `format` (listWrite in assembly/table.ts), copied out. A full table
   * with no room for the output block: packed here from the listed entries instead, the same bytes.
   */
  private writeListed(list: number, count: number, format: number): Uint8Array {
    const exports = this.live()
    if (exports.listWrite(list, count, format) === exports.statusOk.value) {
      const out = exports.outputPointer() >>> 0
      return this.bytes().slice(out, out + (exports.outputLength() >>> 0))
    }
    // entry: u32 key length | class << 24, u32 value length, key, value (assembly/table.ts).
    const memory = this.bytes()
    const view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength)
    const records = format === exports.listFormatRecords.value
    const keysOnly = format === exports.listFormatKeys.value
    const entryAt = (index: number): number => view.getUint32(list + 4 * index, true)
    const keyLength = (entry: number): number => view.getUint32(entry, true) & 0xff_ffff
    let bytes = 0
    for (let index = 0; index < count; index++) {
      const entry = entryAt(index)
      bytes += keysOnly ? 4 + keyLength(entry) : (records ? recordHeaderBytes : 8) + keyLength(entry) + view.getUint32(entry + 4, true)
    }
    const out = new Uint8Array(bytes)
    const outView = new DataView(out.buffer)
    let offset = 0
    for (let index = 0; index < count; index++) {
      const entry = entryAt(index)
      const keyBytes = keyLength(entry)
      const valueBytes = view.getUint32(entry + 4, true)
      const key = memory.subarray(entry + 8, entry + 8 + keyBytes)
      const value = memory.subarray(entry + 8 + keyBytes, entry + 8 + keyBytes + valueBytes)
      if (records) {
        // record: u32 CRC (zero here), u32 kind, u32 key length, u32 value length, key, value (format/record.ts).
        outView.setUint32(offset + 4, recordKindPut, true)
        outView.setUint32(offset + 8, keyBytes, true)
        outView.setUint32(offset + 12, valueBytes, true)
        out.set(key, offset + recordHeaderBytes)
        out.set(value, offset + recordHeaderBytes + keyBytes)
        offset += recordHeaderBytes + keyBytes + valueBytes
        continue
      }
      outView.setUint32(offset, keyBytes, true)
      out.set(key, offset + 4)
      offset += 4 + keyBytes
      if (keysOnly) continue
      outView.setUint32(offset, valueBytes, true)
      out.set(value, offset + 4)
      offset += 4 + valueBytes
    }
    return out
  }

  /** Bytes of linear memory the table has (grown, not necessarily touched). */
  get memoryBytesNow(): number {
    return this.bytes().byteLength
  }

  /** Walks the index: for tests and benchmarks only. */
  debugStats(): WasmTableStats {
    const exports = this.live()
    const statsAddress = exports.statsWrite() >>> 0
    const bytes = this.bytes()
    const view = new DataView(bytes.buffer, statsAddress, 12 * 8)
    const field = (index: number): number => Number(view.getBigUint64(index * 8, true))
    const entryCount = field(1)
    return {
      slotCount: field(0),
      entryCount,
      probeDistanceMax: field(2),
      probeDistanceMean: entryCount === 0 ? 0 : field(3) / entryCount,
      arenaBytesUsed: field(5) - field(4),
      freeBlockBytes: field(8),
      freeBlockCount: field(9),
      indexBytes: field(0) * 8,
      memoryBytes: field(7),
      memoryBytesMax: field(10) * pageBytes,
    }
  }

  /** The table's keyed SipHash of `bytes` with the given rounds (1, 3 is the table's): for tests. */
  debugHash(bytes: Uint8Array, compressionRounds = 1, finalizationRounds = 3): bigint {
    const exports = this.live()
    const pointer = this.copyIn(bytes, bytes.length, 0)
    return BigInt.asUintN(64, exports.hashForTest(pointer, bytes.length, compressionRounds, finalizationRounds))
  }

  dispose(): void {
    this.exports = undefined
    this.memory = undefined
    this.memoryBytes = new Uint8Array(0)
  }

  private live(): TableExports {
    if (this.exports === undefined) throw new Error(usedAfterDispose)
    return this.exports
  }

  /** The memory as bytes; a grown memory has a new buffer, so this is fetched again after each call. */
  private bytes(): Uint8Array {
    if (this.memory === undefined) throw new Error(usedAfterDispose)
    const buffer = this.memory.buffer
    if (this.memoryBytes.buffer !== buffer) this.memoryBytes = new Uint8Array(buffer)
    return this.memoryBytes
  }

  /** Copies `source` into the table's input block of at least `reserveBytes`; returns its address. */
  private copyIn(source: Uint8Array, reserveBytes: number, count: number): number {
    if (reserveBytes > memoryBytesLimit) {
      throw new TableFullError(`shard table is full: a batch of ${count} (${source.length} bytes) is larger than a table`)
    }
    const pointer = this.live().inputReserve(reserveBytes) >>> 0
    if (pointer === 0) {
      throw new TableFullError(
        `shard table is full: no room to take a batch of ${count} (${source.length} bytes) ` +
          `within memoryBytesMax ${this.memoryBytesMax}`,
      )
    }
    this.bytes().set(source, pointer)
    return pointer
  }

  private throwFormatError(status: number): never {
    const exports = this.live()
    const index = exports.errorRecordIndex() >>> 0
    const offset = exports.errorRecordOffset() >>> 0
    const messages = new Map<number, string>([
      [exports.statusRecordHeaderPastBody.value, `record ${index} header runs past the batch body`],
      [exports.statusRecordKindUnknown.value, `record ${index} has an unknown kind`],
      [exports.statusRecordLengthsImpossible.value, `record ${index} has impossible key/value lengths`],
      [exports.statusRecordDeleteWithValue.value, `delete record ${index} carries a value`],
      [exports.statusRecordPastBody.value, `record ${index} runs past the batch body`],
      [exports.statusBodyTrailingBytes.value, `batch body has bytes after its last record`],
    ])
    const message = messages.get(status)
    if (message !== undefined) throw new RecordFormatError(message, offset)
    if (status === exports.statusPackedKeyPastBuffer.value) throw new RangeError(`packed key ${index} runs past its buffer`)
    if (status === exports.statusPackedKeysTrailingBytes.value) {
      throw new RangeError('packed keys carry bytes after the last key')
    }
    throw new Error(`table.wasm returned unknown status ${status}`)
  }
}
