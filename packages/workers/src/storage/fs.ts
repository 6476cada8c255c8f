// The fallback backend: libuv's fs (a threadpool write, then a threadpool fdatasync). Same durability as
// io_uring, more thread hops. Used where io_uring cannot be set up, or when asked for.

import fs from 'node:fs'
import type { IoFailure } from '../errors.js'
import { ioFailure, NodeFile, NodeStorage, type StorageFile } from './storage.js'
import type { FileKind } from '../format/segment-files.js'

/** libuv's write then fdatasync; also the checkpoint files of the io_uring backend (uring.ts). */
export class FsFile extends NodeFile {
  writeDurable(buffer: Uint8Array, fileOffset: number, callback: (failure: IoFailure | null) => void): void {
    const writeFrom = (done: number): void => {
      fs.write(this.fd, buffer, done, buffer.length - done, fileOffset + done, (error, written) => {
        if (error !== null) return callback(ioFailure('write', error, this.path))
        // A regular file only writes 0 bytes when asked for 0: anything else would loop forever here.
        if (written === 0) return callback({ operation: 'write', errno: 5, code: 'EIO', path: this.path })
        if (done + written < buffer.length) return writeFrom(done + written)
        fs.fdatasync(this.fd, (syncError) => {
          callback(syncError === null ? null : ioFailure('fsync', syncError, this.path))
        })
      })
    }
    writeFrom(0)
  }
}

export class FsStorage extends NodeStorage {
  readonly backend = 'fs' as const

  constructor(readonly reason: string) {
    super()
  }

  open(filePath: string, kind: FileKind): StorageFile {
    return new FsFile(filePath, kind !== 'checkpoint')
  }

  close(): void {}
}
