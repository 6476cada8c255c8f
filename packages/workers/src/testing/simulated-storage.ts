// The simulated storage backend: in-memory files under the same Storage interface as io_uring and fs, for
// seeded, deterministic tests of the shard (TigerBeetle src/testing/storage.zig in spirit). It owns the
// files, the queue of operations in flight, the PRNG that orders them, and the faults it injects.
//
// What it promises:
// - Each file has a durable image and a volatile page cache (the durable image with the writes not yet
//   made durable laid over it, in order). A write reaches the cache; an fdatasync makes the file's whole
//   cache durable, as a real fdatasync does for every dirty page of the file.
// - Nothing completes by itself: writeDurable queues a write, and only when that write completes does it
//   queue its fdatasync (a linked pair, as on io_uring); zeroFill the same. `step()` completes one pending
//   operation chosen by the PRNG across all files and logs, so the two logs of a shard complete in any
//   interleaving, like two rings. A completion's state change is made first, then its callback runs.
// - `crash()` returns a new storage over what survives a power loss: each file's durable image, plus, for
//   every write that reached the cache but no fdatasync, any subset of its 512-byte sectors (each sector
//   of it holds either the old bytes or the new ones, chosen by the PRNG: a third of such writes vanish,
//   a third survive whole, a third are torn sector by sector). A file grows only as far as its
//   last surviving sector; a gap reads as zeros.
// - Faults, by rate (per operation) or injected explicitly for the next matching operation, each recorded
//   in `faults` so a checker can tell what was done to the data:
//     bitFlip      one bit flips in durable bytes an acknowledged writeDurable had made durable (at crash);
//     lost         the write is reported successful and never applied;
//     misdirected  the write lands at another sector-shifted offset of the same file;
//     writeEio     the write fails with EIO (errno 5) and is not applied; its fdatasync never runs;
//     writeEnospc  the write fails with ENOSPC (errno 28) and is not applied;
//     fsyncEio     the fdatasync fails with EIO; like a real kernel after a failed writeback, each dirty
//                  sector of the file either reached the durable image or is dropped (the PRNG decides),
//                  and the file is clean afterwards, so a retried fdatasync would succeed over lost data.
//   lost and misdirected hit writeDurable only (a zeroFill is never lost or misdirected); the errors hit
//   both.
// - The same seed gives the same run, byte for byte: nothing depends on time, and every choice is drawn
//   from one PRNG in the order operations happen. `traceDigest` folds every completion into one number.
// - `acknowledgeBeforeSync` is a deliberately broken mode (what the Poro design did): writeDurable calls
//   back success when the write reaches the cache, and the fdatasync follows later, if ever.

import path from 'node:path'
import type { IoFailure } from '../errors.js'
import { copyPart, readInto, type Storage, type StorageFile } from '../storage/storage.js'
import type { FileKind } from '../format/segment-files.js'

export const sectorBytes = 512

/** Operations queued at once across all files; more is a runaway caller, not backpressure to model. */
export const operationsPendingMax = 4096

/** splitmix32: small, fast, and good enough to order operations and pick faults. */
export class Prng {
  private state: number

  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new RangeError('seed must be an integer')
    this.state = seed | 0
  }

  /** An unsigned 32-bit integer. */
  next(): number {
    this.state = (this.state + 0x9e3779b9) | 0
    let z = this.state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
    return (z ^ (z >>> 16)) >>> 0
  }

  /** An integer in [0, bound). */
  below(bound: number): number {
    if (!(bound >= 1)) throw new RangeError('bound must be at least 1')
    return Math.floor((this.next() / 0x1_0000_0000) * bound)
  }

  /** An integer in [low, high]. */
  between(low: number, high: number): number {
    return low + this.below(high - low + 1)
  }

  chance(probability: number): boolean {
    return this.next() / 0x1_0000_0000 < probability
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!
  }

  fill(target: Uint8Array): Uint8Array {
    for (let index = 0; index < target.length; index++) target[index] = this.next() & 0xff
    return target
  }

  /** A new generator whose sequence is independent of this one's from here on. */
  fork(): Prng {
    return new Prng(this.next())
  }
}

export type FaultKind = 'bitFlip' | 'lost' | 'misdirected' | 'writeEio' | 'writeEnospc' | 'fsyncEio'

/** Probability of each fault per operation it can hit (bitFlip: per crash). */
export type FaultRates = Record<FaultKind, number>

export const noFaults: FaultRates = { bitFlip: 0, lost: 0, misdirected: 0, writeEio: 0, writeEnospc: 0, fsyncEio: 0 }

export interface SimulatedStorageOptions {
  seed: number
  faults?: Partial<FaultRates>
  /** Deliberately broken: call writeDurable back when the write reaches the cache, before any fdatasync. */
  acknowledgeBeforeSync?: boolean
}

/** A fault to apply to the next operation that matches (in the order operations complete). */
export interface InjectedFault {
  kind: Exclude<FaultKind, 'bitFlip'>
  log?: FileKind
  path?: string
  /** Only this kind of operation (writeEio, writeEnospc, fsyncEio can hit both); any when unset. */
  operation?: 'writeDurable' | 'zeroFill'
  /** Skip this many matching operations first. */
  after?: number
}

export interface FaultRecord {
  kind: FaultKind
  path: string
  log: FileKind
  /**
   * Which writeDurable of its log this was (0-based, in the order they were issued), or whose fdatasync
   * (fsyncEio); -1 for a zeroFill or its fdatasync, and for a bit flip.
   */
  logWriteIndex: number
  fileOffset: number
  length: number
  /** misdirected: where the bytes landed. bitFlip: the byte that flipped. */
  landedAt?: number
  /** lost and misdirected: a copy of the bytes that did not land where they should have. */
  bytes?: Uint8Array
  /** Which completion (storage.completions) applied it. */
  completion: number
}

interface DirtyWrite {
  fileOffset: number
  bytes: Uint8Array
  /** The writeDurable it came from (its log's index), or -1 for a zeroFill. */
  logWriteIndex: number
}

interface AcknowledgedRange {
  fileOffset: number
  length: number
}

/** A byte array that grows as writes land past its end; bytes never written read as zero. */
class Image {
  bytes: Uint8Array
  length: number

  constructor(contents: Uint8Array = new Uint8Array(0)) {
    this.bytes = contents.slice()
    this.length = contents.length
  }

  write(fileOffset: number, source: Uint8Array): void {
    this.grow(fileOffset + source.length)
    this.bytes.set(source, fileOffset)
  }

  grow(length: number): void {
    if (length <= this.length) return
    if (length > this.bytes.length) {
      const grown = new Uint8Array(Math.max(length, this.bytes.length * 2))
      grown.set(this.bytes.subarray(0, this.length))
      this.bytes = grown
    } else {
      this.bytes.fill(0, this.length, length)
    }
    this.length = length
  }

  cut(length: number): void {
    if (length < this.length) this.length = length
  }

  contents(): Uint8Array {
    return this.bytes.slice(0, this.length)
  }
}

type Operation =
  | {
      kind: 'write'
      id: number
      file: SimulatedFile
      bytes: Uint8Array
      fileOffset: number
      /** -1 for a zeroFill. */
      logWriteIndex: number
      callback: (failure: IoFailure | null) => void
    }
  | {
      kind: 'fsync'
      id: number
      file: SimulatedFile
      zeroFill: boolean
      /** The write this fdatasync is linked to, for the fault record. */
      logWriteIndex: number
      fileOffset: number
      length: number
      acknowledge: AcknowledgedRange | undefined
      callback: ((failure: IoFailure | null) => void) | undefined
    }
  | { kind: 'noop'; id: number; file: SimulatedFile; callback: (failure: IoFailure | null) => void }

export class SimulatedFile implements StorageFile {
  readonly durable: Image
  /** Writes in the page cache that no fdatasync has covered yet, oldest first. */
  dirty: DirtyWrite[] = []
  /** Byte ranges an acknowledged writeDurable made durable: where a bit flip damages acknowledged data. */
  acknowledged: AcknowledgedRange[] = []
  closed = false

  constructor(
    readonly storage: SimulatedStorage,
    readonly path: string,
    readonly log: FileKind,
    durable: Uint8Array,
  ) {
    this.durable = new Image(durable)
  }

  /** The file as a read sees it now: the durable image with the dirty writes laid over it. */
  readAll(): Uint8Array {
    if (this.dirty.length === 0) return this.durable.contents()
    const cache = new Image(this.durable.contents())
    for (const write of this.dirty) cache.write(write.fileOffset, write.bytes)
    return cache.contents()
  }

  get length(): number {
    let length = this.durable.length
    for (const write of this.dirty) length = Math.max(length, write.fileOffset + write.bytes.length)
    return length
  }

  truncate(length: number): void {
    this.assertOpen()
    if (!(length >= 0)) throw new RangeError('length must not be negative')
    this.sync()
    if (length > this.durable.length) this.durable.grow(length)
    else this.durable.cut(length)
    this.acknowledged = this.acknowledged
      .filter((range) => range.fileOffset < length)
      .map((range) => ({ fileOffset: range.fileOffset, length: Math.min(range.length, length - range.fileOffset) }))
  }

  writeDurable(buffer: Uint8Array, fileOffset: number, callback: (failure: IoFailure | null) => void): void {
    this.assertOpen()
    if (!Number.isSafeInteger(fileOffset) || fileOffset < 0) throw new RangeError('fileOffset must be a non-negative integer')
    if (buffer.length === 0) throw new RangeError('a write carries at least one byte')
    this.storage.queueWrite(this, buffer, fileOffset, callback)
  }

  zeroFill(length: number, callback: (failure: IoFailure | null) => void): void {
    this.assertOpen()
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError('length must be a non-negative integer')
    this.storage.queueZeroFill(this, length, callback)
  }

  close(): void {
    this.closed = true
  }

  /** fdatasync: every dirty write reaches the durable image, in order. */
  sync(): void {
    for (const write of this.dirty) {
      this.durable.write(write.fileOffset, write.bytes)
      this.storage.noteOnDisk(this.log, write.logWriteIndex)
    }
    this.dirty = []
  }

  /** What survives a power loss: the durable image and, of each dirty write, a PRNG-chosen set of sectors. */
  survivor(prng: Prng): Uint8Array {
    const image = new Image(this.durable.contents())
    for (const write of this.dirty) {
      const end = write.fileOffset + write.bytes.length
      // Whole or gone is what a crash does most often; a torn write (any subset of sectors) the rest.
      const mode = prng.below(3)
      for (let sector = Math.floor(write.fileOffset / sectorBytes) * sectorBytes; sector < end; sector += sectorBytes) {
        if (mode === 0 || (mode === 2 && !prng.chance(0.5))) continue
        this.storage.noteOnDisk(this.log, write.logWriteIndex)
        const from = Math.max(sector, write.fileOffset)
        const to = Math.min(sector + sectorBytes, end)
        image.write(from, write.bytes.subarray(from - write.fileOffset, to - write.fileOffset))
      }
    }
    return image.contents()
  }

  /** Records an acknowledged range, forgetting older ones it overwrites. */
  acknowledge(range: AcknowledgedRange): void {
    const end = range.fileOffset + range.length
    this.acknowledged = this.acknowledged.filter((old) => old.fileOffset + old.length <= range.fileOffset || old.fileOffset >= end)
    this.acknowledged.push(range)
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`${this.path} is closed`)
    if (this.storage.crashed) throw new Error(`${this.path} belongs to a crashed storage`)
  }
}

export class SimulatedStorage implements Storage {
  readonly backend = 'simulated' as const
  readonly reason = 'simulated storage for seeded tests'
  readonly prng: Prng
  readonly rates: FaultRates
  readonly acknowledgeBeforeSync: boolean
  readonly files = new Map<string, SimulatedFile>()
  readonly faults: FaultRecord[] = []
  /** Operations completed so far. */
  completions = 0
  /** writeDurable and zeroFill calls so far (a shard that failed must make no more). */
  writesIssued = 0
  /** writeDurable calls per log so far. */
  readonly logWrites: Record<FileKind, number> = { intent: 0, completion: 0, checkpoint: 0 }
  /**
   * Per log, the highest writeDurable index of which any byte reached the durable image (by an
   * fdatasync, a failed one, or a crash keeping some of its sectors); -1 when none did.
   */
  readonly logOnDiskMax: Record<FileKind, number> = { intent: -1, completion: -1, checkpoint: -1 }
  /** The bytes of every intent writeDurable issued, by index (the buffers themselves: the log never reuses one). */
  readonly intentWrites: Uint8Array[] = []
  /** A hash of every completion, for determinism checks. */
  traceDigest = 0x811c9dc5
  crashed = false
  closed = false
  private pending: Operation[] = []
  private injected: InjectedFault[] = []
  private operationNext = 0

  constructor(
    options: SimulatedStorageOptions,
    files?: Map<string, { log: FileKind; contents: Uint8Array; acknowledged: AcknowledgedRange[] }>,
  ) {
    this.prng = new Prng(options.seed)
    this.rates = { ...noFaults, ...options.faults }
    for (const [kind, rate] of Object.entries(this.rates)) {
      if (!(rate >= 0 && rate <= 1)) throw new RangeError(`fault rate ${kind} must be in [0, 1]`)
    }
    this.acknowledgeBeforeSync = options.acknowledgeBeforeSync ?? false
    for (const [filePath, survivor] of files ?? []) {
      const file = new SimulatedFile(this, filePath, survivor.log, survivor.contents)
      file.acknowledged = survivor.acknowledged
      this.files.set(filePath, file)
    }
  }

  /** Whether any fault can happen, by rate or injected. */
  get faulty(): boolean {
    return Object.values(this.rates).some((rate) => rate > 0) || this.injected.length > 0 || this.faults.length > 0
  }

  get pendingCount(): number {
    return this.pending.length
  }

  open(filePath: string, log: FileKind): StorageFile {
    this.assertLive()
    let file = this.files.get(filePath)
    if (file === undefined) {
      file = new SimulatedFile(this, filePath, log, new Uint8Array(0))
      this.files.set(filePath, file)
    }
    file.closed = false
    return file
  }

  /** A whole file as a read sees it now (the page cache over the durable image). */
  read(filePath: string, into?: (bytes: number) => Uint8Array): Uint8Array {
    const file = this.files.get(filePath)
    if (file === undefined) throw Object.assign(new Error(`ENOENT: no such file ${filePath}`), { code: 'ENOENT', errno: -2 })
    return readInto(file.readAll(), into)
  }

  readAt(filePath: string, fileOffset: number, target: Uint8Array): number {
    return copyPart(this.read(filePath), fileOffset, target)
  }

  list(directory: string): string[] {
    const names: string[] = []
    for (const filePath of this.files.keys()) if (path.dirname(filePath) === directory) names.push(path.basename(filePath))
    return names.sort()
  }

  remove(filePath: string): void {
    this.assertLive()
    // An operation still in flight on it completes on the orphaned file, as on a real unlinked inode.
    this.files.delete(filePath)
  }

  size(filePath: string): number {
    return this.files.get(filePath)?.length ?? 0
  }

  /** Durable at once, as the real backends make it (rename, then fsync of the directory). */
  discard(filePaths: readonly string[], callback: () => void): void {
    for (const filePath of filePaths) this.remove(filePath)
    callback()
  }

  /**
   * A pending operation, completed at a step the PRNG chooses like a write's (so a crash may come before
   * it, and other operations and checkpoints run meanwhile); made durable at once when it completes.
   */
  renameDurable(from: string, to: string, callback: (failure: IoFailure | null) => void): void {
    this.assertLive()
    const file = this.files.get(from)
    if (file === undefined) return queueMicrotask(() => callback(failure('rename', 2, 'ENOENT', from)))
    this.enqueue({
      kind: 'noop',
      id: this.operationNext++,
      file,
      callback: () => {
        if (this.files.get(from) !== file) return callback(failure('rename', 2, 'ENOENT', from))
        this.rename(from, to)
        callback(null)
      },
    })
  }

  rename(from: string, to: string): void {
    this.assertLive()
    const file = this.files.get(from)
    if (file === undefined) throw Object.assign(new Error(`ENOENT: no such file ${from}`), { code: 'ENOENT', errno: -2 })
    this.files.delete(from)
    this.files.set(to, file)
  }

  close(): void {
    this.closed = true
  }

  /** Applies `fault` to the next operation that matches it. */
  inject(fault: InjectedFault): void {
    this.injected.push({ ...fault })
  }

  /** Flips one bit of durable data now: at `fileOffset` of `filePath`, or at a random acknowledged byte. */
  flipBit(filePath?: string, fileOffset?: number, bit?: number): FaultRecord | undefined {
    let file: SimulatedFile | undefined
    if (filePath !== undefined) {
      file = this.files.get(filePath)
      if (file === undefined) throw new Error(`no file ${filePath}`)
    } else {
      // Acknowledged bytes that are durable: a lost write past the end of a growing file (a checkpoint's)
      // was acknowledged but left nothing there to flip.
      const candidates = [...this.files.values()].filter((candidate) => durableRanges(candidate).length > 0)
      if (candidates.length === 0) return undefined
      file = this.prng.pick(candidates)
    }
    if (fileOffset === undefined) {
      const range = this.prng.pick(durableRanges(file))
      fileOffset = range.fileOffset + this.prng.below(range.length)
    }
    if (fileOffset >= file.durable.length) throw new RangeError(`offset ${fileOffset} is past the durable end of ${file.path}`)
    bit ??= this.prng.below(8)
    file.durable.bytes[fileOffset]! ^= 1 << bit
    const record: FaultRecord = {
      kind: 'bitFlip',
      path: file.path,
      log: file.log,
      logWriteIndex: -1,
      fileOffset,
      length: 1,
      landedAt: fileOffset,
      completion: this.completions,
    }
    this.faults.push(record)
    return record
  }

  /** Completes one pending operation, chosen by the PRNG; false when nothing is pending. */
  step(): boolean {
    this.assertLive()
    if (this.pending.length === 0) return false
    const index = this.prng.below(this.pending.length)
    const operation = this.pending[index]!
    this.pending[index] = this.pending[this.pending.length - 1]!
    this.pending.pop()
    this.completions++
    const callback = this.complete(operation)
    // The state change is made; now the caller hears of it (it may queue more operations).
    callback?.()
    return true
  }

  /** Steps until nothing is pending (callbacks may queue more); returns how many steps ran. */
  runUntilIdle(stepsMax = 1_000_000): number {
    let steps = 0
    while (this.step()) {
      steps++
      if (steps > stepsMax) throw new Error(`runUntilIdle: still busy after ${stepsMax} steps`)
    }
    return steps
  }

  /**
   * Power loss. Returns a new storage over what survives (see the top of this module); this one is dead,
   * and no pending operation ever calls back. Bit flips by rate happen here, in acknowledged data.
   */
  crash(): SimulatedStorage {
    this.assertLive()
    if (this.prng.chance(this.rates.bitFlip)) this.flipBit()
    this.crashed = true
    const survivors = new Map<string, { log: FileKind; contents: Uint8Array; acknowledged: AcknowledgedRange[] }>()
    for (const [filePath, file] of this.files) {
      const contents = file.survivor(this.prng)
      const acknowledged = file.acknowledged
        .filter((range) => range.fileOffset < contents.length)
        .map((range) => ({ fileOffset: range.fileOffset, length: Math.min(range.length, contents.length - range.fileOffset) }))
      survivors.set(filePath, { log: file.log, contents, acknowledged })
    }
    this.pending = []
    return new SimulatedStorage(
      { seed: this.prng.next(), faults: this.rates, acknowledgeBeforeSync: this.acknowledgeBeforeSync },
      survivors,
    )
  }

  /** Every file's durable image, by path (what a crash would keep of synced data). */
  durableImages(): Map<string, Uint8Array> {
    const images = new Map<string, Uint8Array>()
    for (const [filePath, file] of this.files) images.set(filePath, file.durable.contents())
    return images
  }

  noteOnDisk(log: FileKind, logWriteIndex: number): void {
    if (logWriteIndex > this.logOnDiskMax[log]) this.logOnDiskMax[log] = logWriteIndex
  }

  queueWrite(file: SimulatedFile, buffer: Uint8Array, fileOffset: number, callback: (failure: IoFailure | null) => void): void {
    this.writesIssued++
    const logWriteIndex = this.logWrites[file.log]++
    if (file.log === 'intent') this.intentWrites.push(buffer)
    this.enqueue({ kind: 'write', id: this.operationNext++, file, bytes: buffer, fileOffset, logWriteIndex, callback })
  }

  queueZeroFill(file: SimulatedFile, length: number, callback: (failure: IoFailure | null) => void): void {
    this.writesIssued++
    const size = file.length
    if (size >= length) {
      this.enqueue({ kind: 'noop', id: this.operationNext++, file, callback })
      return
    }
    const zeros = new Uint8Array(length - size)
    this.enqueue({ kind: 'write', id: this.operationNext++, file, bytes: zeros, fileOffset: size, logWriteIndex: -1, callback })
  }

  private enqueue(operation: Operation): void {
    this.assertLive()
    if (this.pending.length >= operationsPendingMax) {
      throw new Error(`assertion: more than ${operationsPendingMax} storage operations pending`)
    }
    this.pending.push(operation)
  }

  /** Applies one operation's effect and returns what to call back, if anything. */
  private complete(operation: Operation): (() => void) | undefined {
    const file = operation.file
    this.trace(operation.id, operation.kind.length, file.path.length, this.completions)
    if (operation.kind === 'noop') return () => operation.callback(null)
    if (operation.kind === 'fsync') {
      if (this.takeFault('fsyncEio', file, operation.zeroFill)) {
        this.record('fsyncEio', file, operation.logWriteIndex, operation.fileOffset, operation.length)
        // The kernel marks the pages clean whether or not they reached the disk.
        const survivor = file.survivor(this.prng)
        file.dirty = []
        file.durable.cut(0)
        file.durable.write(0, survivor)
        this.trace(0xeeee, survivor.length, 0, 0)
        const callback = operation.callback
        return callback === undefined ? undefined : () => callback(failure('fsync', 5, 'EIO', file.path))
      }
      file.sync()
      if (operation.acknowledge !== undefined) file.acknowledge(operation.acknowledge)
      const callback = operation.callback
      return callback === undefined ? undefined : () => callback(null)
    }

    const isZeroFill = operation.logWriteIndex < 0
    const errno = this.takeFault('writeEio', file, isZeroFill)
      ? { errno: 5, code: 'EIO' as const, kind: 'writeEio' as const }
      : this.takeFault('writeEnospc', file, isZeroFill)
        ? { errno: 28, code: 'ENOSPC' as const, kind: 'writeEnospc' as const }
        : undefined
    if (errno !== undefined) {
      this.record(errno.kind, file, operation.logWriteIndex, operation.fileOffset, operation.bytes.length)
      return () => operation.callback(failure('write', errno.errno, errno.code, file.path))
    }
    let landedAt = operation.fileOffset
    if (!isZeroFill && this.takeFault('lost', file, false)) {
      this.record('lost', file, operation.logWriteIndex, operation.fileOffset, operation.bytes.length, undefined, operation.bytes)
      landedAt = -1
    } else if (!isZeroFill && this.takeFault('misdirected', file, false)) {
      landedAt = this.misdirect(file, operation.fileOffset, operation.bytes.length)
      this.record('misdirected', file, operation.logWriteIndex, operation.fileOffset, operation.bytes.length, landedAt, operation.bytes)
    }
    if (landedAt >= 0) {
      // The cache keeps its own copy: the caller may reuse its buffer once called back.
      file.dirty.push({ fileOffset: landedAt, bytes: operation.bytes.slice(), logWriteIndex: operation.logWriteIndex })
      this.trace(landedAt, operation.bytes.length, operation.bytes[0] ?? 0, operation.bytes[operation.bytes.length - 1] ?? 0)
    }
    const acknowledge = isZeroFill ? undefined : { fileOffset: operation.fileOffset, length: operation.bytes.length }
    // The broken mode answers the caller now, when the write reached the cache, and syncs later unheard.
    const acknowledgeNow = this.acknowledgeBeforeSync && !isZeroFill
    this.enqueue({
      kind: 'fsync',
      id: this.operationNext++,
      file,
      zeroFill: isZeroFill,
      logWriteIndex: operation.logWriteIndex,
      fileOffset: operation.fileOffset,
      length: operation.bytes.length,
      acknowledge,
      callback: acknowledgeNow ? undefined : operation.callback,
    })
    if (acknowledgeNow) return () => operation.callback(null)
    return undefined
  }

  /** Another sector-shifted offset in the file for `length` bytes, inside the file when one fits. */
  private misdirect(file: SimulatedFile, fileOffset: number, length: number): number {
    const limit = Math.max(file.length, fileOffset + length) - length
    const candidates: number[] = []
    for (let shift = -64; shift <= 64; shift++) {
      const target = fileOffset + shift * sectorBytes
      if (shift !== 0 && target >= 0 && target <= limit) candidates.push(target)
    }
    if (candidates.length === 0) return fileOffset + this.prng.between(1, 8) * sectorBytes
    return this.prng.pick(candidates)
  }

  /** Whether a fault of `kind` hits this operation: an injected one that matches, or the rate's draw. */
  private takeFault(kind: InjectedFault['kind'], file: SimulatedFile, isZeroFill: boolean): boolean {
    for (let index = 0; index < this.injected.length; index++) {
      const fault = this.injected[index]!
      if (fault.kind !== kind) continue
      if (fault.log !== undefined && fault.log !== file.log) continue
      if (fault.path !== undefined && fault.path !== file.path) continue
      if (fault.operation !== undefined && (fault.operation === 'zeroFill') !== isZeroFill) continue
      if ((fault.after ?? 0) > 0) {
        fault.after! -= 1
        return false
      }
      this.injected.splice(index, 1)
      return true
    }
    const rate = this.rates[kind]
    return rate > 0 && this.prng.chance(rate)
  }

  private record(
    kind: FaultKind,
    file: SimulatedFile,
    logWriteIndex: number,
    fileOffset: number,
    length: number,
    landedAt?: number,
    bytes?: Uint8Array,
  ): void {
    this.faults.push({
      kind,
      path: file.path,
      log: file.log,
      logWriteIndex,
      fileOffset,
      length,
      ...(landedAt === undefined ? {} : { landedAt }),
      ...(bytes === undefined ? {} : { bytes: bytes.slice() }),
      completion: this.completions,
    })
  }

  private trace(...values: number[]): void {
    for (const value of values) this.traceDigest = Math.imul(this.traceDigest ^ (value >>> 0), 0x01000193) >>> 0
  }

  private assertLive(): void {
    if (this.crashed) throw new Error('this storage crashed: use the one crash() returned')
  }
}

/** A file's acknowledged ranges, cut to its durable length. */
function durableRanges(file: SimulatedFile): AcknowledgedRange[] {
  const length = file.durable.length
  return file.acknowledged
    .filter((range) => range.fileOffset < length)
    .map((range) => ({ fileOffset: range.fileOffset, length: Math.min(range.length, length - range.fileOffset) }))
}

function failure(operation: IoFailure['operation'], errno: number, code: string, filePath: string): IoFailure {
  return { operation, errno, code, path: filePath }
}
