// A StorageFile for unit tests whose completions the test releases by hand: each writeDurable is held
// until `complete` or `fail` is called, so a test can look at the shard in the middle of a commit.
// It keeps the bytes it was given, as if every completed write had reached the disk.

import type { IoFailure } from '../errors.js'
import type { Storage, StorageFile } from '../storage.js'

interface HeldWrite {
  buffer: Uint8Array
  fileOffset: number
  callback: (failure: IoFailure | null) => void
}

export class HeldFile implements StorageFile {
  contents = new Uint8Array(0)
  readonly held: HeldWrite[] = []
  closed = false

  constructor(readonly path: string) {}

  readAll(): Uint8Array {
    return this.contents.slice()
  }

  truncate(length: number): void {
    this.contents = this.contents.slice(0, length)
  }

  writeDurable(buffer: Uint8Array, fileOffset: number, callback: (failure: IoFailure | null) => void): void {
    this.held.push({ buffer, fileOffset, callback })
  }

  zeroFill(length: number, callback: (failure: IoFailure | null) => void): void {
    if (length > this.contents.length) {
      const grown = new Uint8Array(length)
      grown.set(this.contents)
      this.contents = grown
    }
    queueMicrotask(() => callback(null))
  }

  /** Completes the oldest held write with success. */
  complete(): void {
    const write = this.held.shift()
    if (write === undefined) throw new Error('no write is held')
    const end = write.fileOffset + write.buffer.length
    if (end > this.contents.length) {
      const grown = new Uint8Array(end)
      grown.set(this.contents)
      this.contents = grown
    }
    this.contents.set(write.buffer, write.fileOffset)
    write.callback(null)
  }

  /** Fails the oldest held write. */
  fail(failure: IoFailure): void {
    const write = this.held.shift()
    if (write === undefined) throw new Error('no write is held')
    write.callback(failure)
  }

  close(): void {
    this.closed = true
  }
}

export class HeldStorage implements Storage {
  readonly backend = 'simulated' as const
  readonly reason = 'unit test'
  readonly files = new Map<string, HeldFile>()

  list(directory: string): string[] {
    const prefix = `${directory}/`
    return [...this.files.keys()].filter((name) => name.startsWith(prefix)).map((name) => name.slice(prefix.length)).sort()
  }

  remove(filePath: string): void {
    this.files.delete(filePath)
  }

  open(filePath: string): StorageFile {
    let file = this.files.get(filePath)
    if (file === undefined) {
      file = new HeldFile(filePath)
      this.files.set(filePath, file)
    }
    return file
  }

  close(): void {}
}
