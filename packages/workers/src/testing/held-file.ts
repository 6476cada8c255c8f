// A Storage for unit tests whose write completions the test releases by hand: each writeDurable is held,
// across all files, until the test completes or fails it, so a test can look at a shard in the middle of
// a commit. Zero-filling completes at once, unless the test holds fills too. Completed writes are kept as
// if they had reached the disk.

import type { IoFailure } from '../errors.js'
import { encodeRecord, recordBytes, recordKindPut } from '../format/record.js'
import type { Shard } from '../shard.js'
import { copyPart, readInto, type Storage, type StorageFile } from '../storage/storage.js'
import type { FileKind } from '../format/segment-files.js'
import { forEachPackedAnswer, packKeys } from '../protocol.js'

const text = new TextEncoder()

export interface HeldWrite {
  file: HeldFile
  buffer: Uint8Array
  fileOffset: number
  callback: (failure: IoFailure | null) => void
}

export class HeldFile implements StorageFile {
  contents = new Uint8Array(0)
  closed = false

  constructor(
    readonly path: string,
    readonly log: FileKind,
    private readonly storage: HeldStorage,
  ) {}

  readAll(): Uint8Array {
    return this.contents.slice()
  }

  truncate(length: number): void {
    this.contents = this.contents.slice(0, length)
  }

  writeDurable(buffer: Uint8Array, fileOffset: number, callback: (failure: IoFailure | null) => void): void {
    this.storage.held.push({ file: this, buffer, fileOffset, callback })
  }

  zeroFill(length: number, callback: (failure: IoFailure | null) => void): void {
    if (this.storage.holdFills) return void this.storage.heldFills.push({ file: this, length, callback })
    this.grow(length)
    callback(null)
  }

  grow(length: number): void {
    if (length <= this.contents.length) return
    const grown = new Uint8Array(length)
    grown.set(this.contents)
    this.contents = grown
  }

  close(): void {
    this.closed = true
  }
}

export class HeldStorage implements Storage {
  readonly backend = 'simulated' as const
  readonly reason = 'unit test'
  readonly files = new Map<string, HeldFile>()
  readonly held: HeldWrite[] = []
  /** When set, zero-fills are held too (in `heldFills`), until the test completes or fails them. */
  holdFills = false
  readonly heldFills: { file: HeldFile; length: number; callback: (failure: IoFailure | null) => void }[] = []

  open(filePath: string, log: FileKind): StorageFile {
    let file = this.files.get(filePath)
    if (file === undefined) {
      file = new HeldFile(filePath, log, this)
      this.files.set(filePath, file)
    }
    return file
  }

  read(filePath: string, into?: (bytes: number) => Uint8Array): Uint8Array {
    return readInto(this.files.get(filePath)?.contents.slice() ?? new Uint8Array(0), into)
  }

  readAt(filePath: string, fileOffset: number, target: Uint8Array): number {
    return copyPart(this.read(filePath), fileOffset, target)
  }

  list(directory: string): string[] {
    const prefix = `${directory}/`
    return [...this.files.keys()]
      .filter((name) => name.startsWith(prefix))
      .map((name) => name.slice(prefix.length))
      .sort()
  }

  remove(filePath: string): void {
    this.files.delete(filePath)
  }

  size(filePath: string): number {
    return this.files.get(filePath)?.contents.length ?? 0
  }

  discard(filePaths: readonly string[], callback: () => void): void {
    for (const filePath of filePaths) this.remove(filePath)
    callback()
  }

  /** At once: the unit tests drive every step themselves. */
  renameDurable(from: string, to: string, callback: (failure: IoFailure | null) => void): void {
    this.rename(from, to)
    callback(null)
  }

  rename(from: string, to: string): void {
    const file = this.files.get(from)
    if (file === undefined) throw new Error(`ENOENT: no such file ${from}`)
    this.files.delete(from)
    this.files.set(to, file)
  }

  /** The held writes of one log. */
  heldOn(log: FileKind): HeldWrite[] {
    return this.held.filter((write) => write.file.log === log)
  }

  /** Completes the oldest held write of `log` with success. */
  complete(log: FileKind): void {
    const write = this.take(log)
    write.file.grow(write.fileOffset + write.buffer.length)
    write.file.contents.set(write.buffer, write.fileOffset)
    write.callback(null)
  }

  /** Completes the oldest held write of each log: one whole commit. */
  completeCommit(): void {
    this.complete('intent')
    this.complete('completion')
  }

  fail(log: FileKind, failure: IoFailure): void {
    this.take(log).callback(failure)
  }

  /** Completes the oldest held zero-fill with success. */
  completeFill(): void {
    const fill = this.takeFill()
    fill.file.grow(fill.length)
    fill.callback(null)
  }

  /** Fails the oldest held zero-fill. */
  failFill(failure: IoFailure): void {
    this.takeFill().callback(failure)
  }

  close(): void {}

  private takeFill(): HeldStorage['heldFills'][number] {
    const fill = this.heldFills.shift()
    if (fill === undefined) throw new Error('no zero-fill is held')
    return fill
  }

  private take(log: FileKind): HeldWrite {
    const index = this.held.findIndex((write) => write.file.log === log)
    if (index < 0) throw new Error(`no ${log} write is held`)
    return this.held.splice(index, 1)[0]!
  }
}

/** A put record (format/record.ts, CRC not yet sealed) for shard unit tests. */
export function putRecord(key: string, value: string): Uint8Array {
  const records = new Uint8Array(recordBytes(key.length, value.length))
  encodeRecord(records, new DataView(records.buffer), 0, recordKindPut, text.encode(key), text.encode(value))
  return records
}

/** Looks one key up through the shard's packed read path; undefined when absent. */
export function lookup(shard: Shard, key: string): string | undefined {
  let found: string | undefined
  forEachPackedAnswer(shard.read(packKeys([text.encode(key)]), 1), 1, (value) => {
    found = value === undefined ? undefined : Buffer.from(value).toString()
  })
  return found
}
