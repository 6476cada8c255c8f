// The storage interface under the write-ahead log, and what the real backends share. The log never sees a
// syscall: it asks a StorageFile to make bytes durable and is called back once, with success or with the
// first failure. Three backends answer to it (the choice between the real ones is createStorage, uring.ts):
//   io_uring   one write linked to one fdatasync on the log's ring (uring.ts);
//   fs         libuv fs: write, then fdatasync (fs.ts), used where io_uring cannot be set up;
//   simulated  in-memory files with a volatile cache and faults, for seeded tests (testing/).
// Opening a file (when the shard opens, and when a log moves on to its next segment), reading back and
// truncating (only while the shard opens) are synchronous; writes and zero-fills call back.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { errnoOutcome } from '@ringkv/wal-native'
import type { IoFailure } from '../errors.js'
import { isCheckpointName } from '../format/checkpoint.js'
import type { FileKind } from '../format/segment-files.js'
import type { BackendName } from '../protocol.js'

export interface StorageFile {
  readonly path: string
  /** The whole file, as it is on disk now. */
  readAll(): Uint8Array
  /** Cuts the file to `length` bytes and makes that durable. */
  truncate(length: number): void
  /**
   * Writes all of `buffer` at `fileOffset` and then makes it durable (fdatasync). Calls back once:
   * null only after the write completed in full and the fdatasync covering it succeeded; otherwise the
   * first failure. Never retries a failed write or fdatasync. `buffer` belongs to the operation until the
   * callback: the caller must not touch it before.
   */
  writeDurable(buffer: Uint8Array, fileOffset: number, callback: (failure: IoFailure | null) => void): void
  /**
   * Extends the file with zeros up to `length` bytes, written (not fallocated: an unwritten extent still
   * costs a metadata sync at its first write) and made durable. A no-op when the file is that long.
   */
  zeroFill(length: number, callback: (failure: IoFailure | null) => void): void
  close(): void
}

export interface Storage {
  readonly backend: BackendName
  /** Why this backend runs: forced by an option, or why io_uring could not be set up. */
  readonly reason: string
  /**
   * Opens a file, creating it (and making its directory entry durable) if missing: a log's segment, on
   * that log's ring; or a checkpoint, written through libuv's threadpool on every real backend, so that
   * the shard's thread never waits for a checkpoint's I/O (storage/uring.ts).
   */
  open(filePath: string, kind: FileKind): StorageFile
  /**
   * A whole file as it is durable now (never creates a file). With `into`, the bytes go into the buffer it
   * gives for the file's length (at least that long: recovery's kept buffers), and what comes back is that
   * buffer cut to the bytes read; without, into a new buffer.
   */
  read(filePath: string, into?: (bytes: number) => Uint8Array): Uint8Array
  /**
   * Part of a file as `read` sees it: up to `target.length` bytes at `fileOffset`, into `target`; returns
   * how many (fewer only at the end of the file). For files too large to read whole at once (a checkpoint).
   */
  readAt(filePath: string, fileOffset: number, target: Uint8Array): number
  /** The names of the files in `directory`, sorted; empty when it does not exist. */
  list(directory: string): string[]
  /** Removes a file and makes that durable (its directory is fsynced). */
  remove(filePath: string): void
  /**
   * Renames a file over `to` (atomically replacing it), then makes that durable (fsync of the directory),
   * off the calling thread; calls back once, with the first failure or null.
   */
  renameDurable(from: string, to: string, callback: (failure: IoFailure | null) => void): void
  /**
   * Removes files off the calling thread, without making the removal durable: for files nothing needs any
   * more, which recovery removes again if a crash brings them back (retired segments, superseded
   * checkpoints). Failures are ignored for the same reason. Calls back once every removal has returned.
   * A checkpoint may be cut down in steps first (a crash may leave it shorter: recovery reads only the
   * newest checkpoint, never one superseded); a segment goes whole.
   */
  discard(filePaths: readonly string[], callback: () => void): void
  /** A file's size in bytes (0 when it does not exist): for stats. */
  size(filePath: string): number
  /** Releases the backend's own resources (a ring). Every file must be closed first. */
  close(): void
}

/**
 * Turns a Node fs error into an IoFailure (Node's errno is negative; ours is the kernel's, positive). A write
 * or fsync errno that the ring's table (wal-native errno.ts) calls a bug, EBADF or EFAULT on a file this
 * shard opened and still owns, is not an I/O failure: it throws, so the shard's worker fails loudly on the
 * fs backend as it does on io_uring, instead of reporting a bug to the caller as IO_ERROR.
 */
export function ioFailure(operation: IoFailure['operation'], error: NodeJS.ErrnoException, filePath: string): IoFailure {
  const errno = Math.abs(error.errno ?? 5)
  if ((operation === 'write' || operation === 'fsync') && errnoOutcome(operation, errno) === 'bug') {
    assert.fail(`${operation} of ${filePath} failed with ${error.code ?? errno}: a bug in ringkv (a file it owns), not an I/O error`)
  }
  return { operation, errno, code: error.code ?? 'EIO', path: filePath }
}

/** fsyncs a directory, so that the entries created in it survive a power loss. */
export function syncDirectory(directory: string): void {
  const fd = fs.openSync(directory, 'r')
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * What every backend shares: opening with node fs (creating the file durably), reading back, and
 * truncating. Backends differ only in how they write.
 */
export abstract class NodeFile implements StorageFile {
  readonly fd: number

  /**
   * `durableCreate`: a new file's directory entry is made durable at once (a log segment: recovery must
   * find it). A checkpoint's is not: its durable rename covers it (renameDurable), and a shard's thread
   * would wait for two fsyncs for nothing.
   */
  constructor(
    readonly path: string,
    durableCreate = true,
  ) {
    const existed = fs.existsSync(path)
    this.fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644)
    if (!existed && durableCreate) {
      fs.fsyncSync(this.fd)
      syncDirectory(pathDirectory(path))
    }
  }

  readAll(): Uint8Array {
    const size = fs.fstatSync(this.fd).size
    const contents = new Uint8Array(size)
    const done = readFully(this.fd, contents, 0)
    if (done < size) throw new Error(`${this.path} shrank while being read (${done} of ${size} bytes)`)
    return contents
  }

  truncate(length: number): void {
    fs.ftruncateSync(this.fd, length)
    fs.fdatasyncSync(this.fd)
  }

  abstract writeDurable(buffer: Uint8Array, fileOffset: number, callback: (failure: IoFailure | null) => void): void

  zeroFill(length: number, callback: (failure: IoFailure | null) => void): void {
    let size: number
    try {
      size = fs.fstatSync(this.fd).size
    } catch (error) {
      // On the write path an I/O error must reach the log as a failure, never escape as an exception (a
      // bug, EBADF on our own fd, does escape: ioFailure throws it, and the worker stops: worker.ts).
      const failure = ioFailure('write', error as NodeJS.ErrnoException, this.path)
      return queueMicrotask(() => callback(failure))
    }
    if (size >= length) return queueMicrotask(() => callback(null))
    const fillFrom = (offset: number): void => {
      if (offset >= length) {
        fs.fdatasync(this.fd, (error) => callback(error === null ? null : ioFailure('fsync', error, this.path)))
        return
      }
      const bytes = Math.min(zeroFillChunk.length, length - offset)
      fs.write(this.fd, zeroFillChunk, 0, bytes, offset, (error, written) => {
        if (error !== null) return callback(ioFailure('write', error, this.path))
        if (written === 0) return callback({ operation: 'write', errno: 5, code: 'EIO', path: this.path })
        fillFrom(offset + written)
      })
    }
    fillFrom(size)
  }

  close(): void {
    fs.closeSync(this.fd)
  }
}

/** Reads into `target` from `fileOffset` until it is full or the file ends; returns how many bytes it read. */
function readFully(fd: number, target: Uint8Array, fileOffset: number): number {
  let done = 0
  while (done < target.length) {
    const read = fs.readSync(fd, target, done, target.length - done, fileOffset + done)
    if (read === 0) break
    done += read
  }
  return done
}

/** `contents` as read() answers it with `into` (for storages that hold their files in memory). */
export function readInto(contents: Uint8Array, into?: (bytes: number) => Uint8Array): Uint8Array {
  if (into === undefined) return contents
  const buffer = into(contents.length)
  buffer.set(contents)
  return buffer.subarray(0, contents.length)
}

/** Storage.readAt over a whole file's contents (the in-memory storages): copies what there is, returns how much. */
export function copyPart(contents: Uint8Array, fileOffset: number, target: Uint8Array): number {
  const part = contents.subarray(fileOffset, fileOffset + target.length)
  target.set(part)
  return part.length
}

/** What the real backends share beyond files: reading back, listing and removing with node fs. */
export abstract class NodeStorage implements Storage {
  abstract readonly backend: Storage['backend']
  abstract readonly reason: string
  abstract open(filePath: string, kind: FileKind): StorageFile
  abstract close(): void

  read(filePath: string, into?: (bytes: number) => Uint8Array): Uint8Array {
    if (into === undefined) return fs.readFileSync(filePath)
    const fd = fs.openSync(filePath, 'r')
    try {
      const size = fs.fstatSync(fd).size
      const buffer = into(size)
      return buffer.subarray(0, readFully(fd, buffer.subarray(0, size), 0))
    } finally {
      fs.closeSync(fd)
    }
  }

  readAt(filePath: string, fileOffset: number, target: Uint8Array): number {
    const fd = fs.openSync(filePath, 'r')
    try {
      return readFully(fd, target, fileOffset)
    } finally {
      fs.closeSync(fd)
    }
  }

  list(directory: string): string[] {
    if (!fs.existsSync(directory)) return []
    return fs.readdirSync(directory).sort()
  }

  remove(filePath: string): void {
    fs.rmSync(filePath, { force: true })
    syncDirectory(pathDirectory(filePath))
  }

  renameDurable(from: string, to: string, callback: (failure: IoFailure | null) => void): void {
    fs.rename(from, to, (error) => {
      if (error !== null) return callback(ioFailure('rename', error, from))
      const directory = pathDirectory(to)
      fs.open(directory, 'r', (openError, fd) => {
        if (openError !== null) return callback(ioFailure('open', openError, directory))
        fs.fsync(fd, (syncError) => {
          fs.close(fd, () => callback(syncError === null ? null : ioFailure('fsync', syncError, directory)))
        })
      })
    })
  }

  discard(filePaths: readonly string[], callback: () => void): void {
    let outstanding = filePaths.length + 1
    const done = (): void => {
      if (--outstanding === 0) callback()
    }
    for (const filePath of filePaths) {
      // Only a checkpoint is cut down first: recovery never reads a superseded one. A retired segment may be
      // scanned again (a damaged checkpoint opened with truncate), so it goes whole or not at all.
      if (isCheckpointName(path.basename(filePath))) shrinkThenRemove(filePath, done)
      else fs.rm(filePath, { force: true }, done)
    }
    done()
  }

  size(filePath: string): number {
    try {
      return fs.statSync(filePath).size
    } catch {
      return 0
    }
  }
}

/**
 * A discarded checkpoint is cut this much at a time before it is unlinked. Unlinking a 132 MB checkpoint at once
 * frees all its extents in one ext4 journal transaction, and the log's fdatasyncs waited behind it: batches
 * of 35-50 ms, every checkpoint, at a million keys per shard (RocksDB's bytes_max_delete_chunk is the same
 * remedy). Cut in steps, each transaction is small.
 */
export const discardStepBytes = 8 * 1024 * 1024

/** Truncates `filePath` down by discardStepBytes at a time, off the event loop, then removes it; errors ignored. */
function shrinkThenRemove(filePath: string, callback: () => void): void {
  const remove = (): void => fs.rm(filePath, { force: true }, () => callback())
  fs.stat(filePath, (statError, stats) => {
    if (statError !== null) return remove()
    let length = stats.size
    const step = (): void => {
      if (length <= discardStepBytes) return remove()
      length -= discardStepBytes
      fs.truncate(filePath, length, (error) => (error === null ? step() : remove()))
    }
    step()
  })
}

/** Zero-filling writes this much at a time, off the event loop (libuv threadpool). */
const zeroFillChunkBytes = 1024 * 1024
/**
 * The zeros every fill writes from: one buffer for the thread's life, never written to, so fills of both logs
 * may read it at once (a new 1 MiB buffer per fill showed as 3.7% of a shard worker's profile at c=4096).
 */
const zeroFillChunk = new Uint8Array(zeroFillChunkBytes)

function pathDirectory(filePath: string): string {
  return path.dirname(filePath)
}
