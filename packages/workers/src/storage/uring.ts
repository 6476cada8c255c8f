// The io_uring backend: each durable write is one IORING_OP_WRITE linked to one IORING_OP_FSYNC
// (IORING_FSYNC_DATASYNC) on the shard's ring; the ring's driver (wal-native) resubmits short writes and
// reports the first failure. The rings wait on the worker's own thread ('thread' mode, wal-native's
// ring.ts): once the worker has run everything already delivered to it, it blocks until its I/O completes.

import { probeIoUring, Ring, type RingIoError } from '@ringkv/wal-native'
import { EngineError, type IoFailure } from '../errors.js'
import type { BackendChoice } from '../protocol.js'
import { FsFile, FsStorage } from './fs.js'
import { NodeFile, NodeStorage, type Storage, type StorageFile } from './storage.js'
import type { FileKind, LogKind } from '../format/segment-files.js'

/** SQ entries per shard ring: a batch needs 2 (write + fsync), and a short write 2 more. */
export const ringEntries = 64

class UringFile extends NodeFile {
  constructor(
    filePath: string,
    private readonly ring: Ring,
  ) {
    super(filePath)
  }

  writeDurable(buffer: Uint8Array, fileOffset: number, callback: (failure: IoFailure | null) => void): void {
    this.ring.writeDurable(this.fd, buffer, fileOffset, (error: RingIoError | null) => {
      if (error === null) return callback(null)
      callback({ operation: error.operation, errno: error.errno, code: error.code, path: this.path })
    })
  }
}

export class UringStorage extends NodeStorage {
  readonly backend = 'io_uring' as const
  /** The shard's ring pair: one per log, set up with the storage so that a failure shows at open. */
  private readonly rings: Record<LogKind, Ring>

  constructor(readonly reason: string) {
    super()
    // The shard's worker thread does nothing else while its batch is in flight: it waits on the ring itself.
    const intent = Ring.setup(ringEntries, { wait: 'thread' })
    try {
      this.rings = { intent, completion: Ring.setup(ringEntries, { wait: 'thread' }) }
    } catch (error) {
      intent.close()
      throw error
    }
  }

  open(filePath: string, kind: FileKind): StorageFile {
    // A checkpoint's writes go through libuv's threadpool: on a ring they would make this thread, which
    // waits for everything in flight on its rings, wait for the checkpoint's writes too (1 MiB each).
    return kind === 'checkpoint' ? new FsFile(filePath, false) : new UringFile(filePath, this.rings[kind])
  }

  close(): void {
    this.rings.intent.close()
    this.rings.completion.close()
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
