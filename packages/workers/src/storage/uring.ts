// The io_uring backend: one ring per shard, shared by both logs, waited on from the worker's own thread
// ('thread' mode, wal-native's ring.ts): once the worker has run everything already delivered to it, it blocks
// until its I/O completes. The ring's driver (wal-native) resubmits short writes and reports the first failure.
//
// How a batch becomes durable depends on the file system under the shard's directory (`flushMode`):
// - 'device' (ext4, XFS: they overwrite allocated, written blocks in place, and a log only ever writes into
//   space zero-filled and made durable before, segment-writer.ts): a writeBack is an IORING_OP_WRITE linked to
//   an IORING_OP_SYNC_FILE_RANGE (WAIT_BEFORE | WRITE | WAIT_AFTER) over its bytes, which puts them on the
//   device without flushing its cache; a flush is one IORING_OP_FSYNC (DATASYNC) with IOSQE_IO_DRAIN, so it
//   starts after both logs' writeBacks completed, and its one device cache flush makes both durable (ext4's
//   and XFS's fdatasync always end in a cache flush, even with no dirty page of their own). One flush per
//   batch instead of one per log: measured on this project's virtio disk (write-back cache, no FUA), 4 KiB +
//   64 B appends to two files, p50 226–291 µs against 284–334 µs for two write + fdatasync pairs.
// - 'file' (any other file system: copy-on-write or log-structured ones write an overwrite elsewhere, and only
//   the file's own fdatasync commits where): each writeBack is a write linked to its own fdatasync, and flush
//   has nothing left to do.
// Every file of a shard is in one directory, so on one file system and one device: asserted at each open.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { probeIoUring, Ring, type RingIoError } from '@ringkv/wal-native'
import { EngineError, type IoFailure } from '../errors.js'
import type { BackendChoice } from '../protocol.js'
import { FsStorage } from './fs.js'
import { NodeFile, NodeStorage, type Storage, type StorageFile } from './storage.js'

/** SQ entries per shard ring: a batch needs 5 (two writes, two sync_file_ranges, a flush), a short write 2 more. */
export const ringEntries = 64

/** statfs f_type of the file systems that overwrite in place, where one flush covers both logs. */
const overwriteInPlace = new Map<number, string>([
  [0xef53, 'ext4'], // EXT4_SUPER_MAGIC (also ext2, ext3)
  [0x58465342, 'XFS'], // XFS_SUPER_MAGIC
])

export type FlushMode = 'device' | 'file'

/** The flush mode for files in `directory`, and the file system's name for the backend's reason. */
export function flushModeFor(directory: string): { mode: FlushMode; fileSystem: string } {
  const type = Number(fs.statfsSync(directory).type)
  const name = overwriteInPlace.get(type)
  if (name !== undefined) return { mode: 'device', fileSystem: name }
  return { mode: 'file', fileSystem: `file system type 0x${type.toString(16)}` }
}

class UringFile extends NodeFile {
  constructor(
    filePath: string,
    private readonly ring: Ring,
    private readonly mode: FlushMode,
  ) {
    super(filePath)
  }

  writeBack(buffer: Uint8Array, fileOffset: number, callback: (failure: IoFailure | null) => void): void {
    const done = (error: RingIoError | null): void => {
      if (error === null) return callback(null)
      callback({ operation: error.operation, errno: error.errno, code: error.code, path: this.path })
    }
    if (this.mode === 'device') this.ring.writeBack(this.fd, buffer, fileOffset, done)
    else this.ring.writeDurable(this.fd, buffer, fileOffset, done)
  }

  flush(callback: (failure: IoFailure | null) => void): void {
    if (this.mode === 'file') return queueMicrotask(() => callback(null))
    this.ring.flush(this.fd, (error) => {
      if (error === null) return callback(null)
      callback({ operation: error.operation, errno: error.errno, code: error.code, path: this.path })
    })
  }
}

export class UringStorage extends NodeStorage {
  readonly backend = 'io_uring' as const
  private readonly ring: Ring
  /** Set by the first open: the file system every file of this shard is on. */
  private device: { dev: number; mode: FlushMode; fileSystem: string } | undefined

  constructor(private readonly choiceReason: string) {
    super()
    // The shard's worker thread does nothing else while its batch is in flight: it waits on the ring itself.
    this.ring = Ring.setup(ringEntries, { wait: 'thread' })
  }

  get reason(): string {
    if (this.device === undefined) return this.choiceReason
    const flushes = this.device.mode === 'device' ? 'one device flush per batch' : 'an fdatasync per log per batch'
    return `${this.choiceReason}; ${this.device.fileSystem}: ${flushes}`
  }

  open(filePath: string): StorageFile {
    const directory = path.dirname(filePath)
    const dev = fs.statSync(directory).dev
    if (this.device === undefined) this.device = { dev, ...flushModeFor(directory) }
    // One flush covers only the device it is sent to.
    assert.equal(dev, this.device.dev, `${filePath} is on another device than the shard's other files`)
    return new UringFile(filePath, this.ring, this.device.mode)
  }

  close(): void {
    this.ring.close()
  }
}

/**
 * Picks the backend: 'io_uring' or 'fs' as asked, or 'auto': io_uring when it can be set up here, else fs
 * with the reason recorded (shown by stats()).
 */
export function createStorage(choice: BackendChoice): Storage {
  if (choice === 'fs') return new FsStorage('forced by the option backend: "fs"')
  const probe = probeIoUring()
  if (probe.available) {
    return new UringStorage(choice === 'io_uring' ? 'forced by the option backend: "io_uring"' : 'io_uring is available')
  }
  if (choice === 'io_uring') {
    throw new EngineError('BACKEND_UNAVAILABLE', `io_uring was required but cannot be set up: ${probe.reason}`, {
      details: { errno: probe.errno },
    })
  }
  return new FsStorage(`io_uring cannot be set up (${probe.reason}); using node:fs write + fdatasync`)
}
