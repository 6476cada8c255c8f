// The growing-files test's writer child. It writes files that grow as they are written, through ringkv's
// own storage layer (createStorage, packages/workers/src/storage/uring.ts: on io_uring each writeDurable
// is one write linked to one fdatasync), and reports each durable step on stdout the moment it is done,
// with a synchronous write to fd 1 and the CLOCK_MONOTONIC time (process.hrtime), so that the test can
// tell what was acknowledged before the power cut began.
//
// Usage: node growing-writer.mjs '<json config>' (fields below; the test builds it). What it runs, at once:
// - one append loop per entry of `appendFiles`: the file is cut to `start` bytes (StorageFile.truncate, as
//   the log does after recovery), then records (growing-model.mjs) are appended one at a time, each one
//   writeDurable past the end of the file; file 0 on the 'intent' ring, file 1 on the 'completion' ring.
// - a checkpoint loop, from checkpoint `firstCheckpoint` on: checkpoint-K.tmp is created (StorageFile
//   open: O_CREAT, fsync, directory fsync), written in chunks, each one writeDurable past its end, then
//   fsynced, renamed to checkpoint-K, and the directory fsynced; then checkpoint K-2 is removed.
//
// Lines on stdout:
//   READY                     files open, loops starting
//   A <file> <sequence> <ns>  record <sequence> of append file <file> is durable (writeDurable called back)
//   C <k> <ns>                checkpoint <k> is in place under its final name, directory fsynced
//   E <code> <what>: <message> a step failed (after a cut: EIO, EROFS); that loop stops there
//   FATAL <message>           an uncaught error; exit code 70
//
// `broken` replaces the writes with a deliberately wrong variant, to check that the test catches what it
// is for (a run with one must fail):
//   ack-before-sync   io_uring, write linked to fdatasync, but acknowledged at the write's completion
//   unlinked          io_uring, write and fdatasync submitted together without IOSQE_IO_LINK
//   rename-unsynced   checkpoints written without any fdatasync or fsync before the rename
import fs from 'node:fs'
import { dirname, join } from 'node:path'
import { Ring } from '@ringkv/wal-native'
import { exitOnFatal, report } from './child-report.mjs'
import { checkpointBytes, checkpointChunks, checkpointName, recordBytes } from './growing-model.mjs'

const config = JSON.parse(process.argv[2] ?? '{}')
const {
  dir,
  backend = 'io_uring',
  seed = 1,
  round = 1,
  appendFiles = [],
  firstCheckpoint = 1,
  broken = 'none',
  // The storage module to write through; another build's (an old commit's) can be named to replay it.
  storageModule = new URL('../../packages/workers/dist/storage/uring.js', import.meta.url).href,
  runMsMax = 60_000,
} = config

const now = () => process.hrtime.bigint()

exitOnFatal(runMsMax)

const { createStorage } = await import(storageModule)
const storage = createStorage(backend)

function failed(what, error) {
  const code = error?.code ?? error?.name ?? 'UNKNOWN'
  // An Error, or an IoFailure from a StorageFile ({ operation, errno, code, path }).
  const message = error instanceof Error ? error.message : JSON.stringify(error)
  report(`E ${code} ${what}: ${String(message).slice(0, 300)}`)
}

function syncDirectory(directory) {
  const fd = fs.openSync(directory, 'r')
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/** fsync of a file or directory by path, off the thread (libuv). */
async function fsyncPath(path) {
  const handle = await fs.promises.open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** A broken StorageFile on an io_uring of its own (see `broken` above). Creates the file as NodeFile does. */
class BrokenUringFile {
  constructor(path, mode) {
    const existed = fs.existsSync(path)
    this.path = path
    this.mode = mode
    this.fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644)
    if (!existed) {
      fs.fsyncSync(this.fd)
      syncDirectory(dirname(path))
    }
    this.ring = Ring.setup(8)
    this.queue = []
    this.busy = false
    this.closing = false
  }

  truncate(length) {
    fs.ftruncateSync(this.fd, length)
    fs.fdatasyncSync(this.fd)
  }

  writeDurable(buffer, fileOffset, callback) {
    this.queue.push({ buffer, fileOffset, callback })
    this.pump()
  }

  pump() {
    if (this.busy || this.queue.length === 0) return
    this.busy = true
    const { buffer, fileOffset, callback } = this.queue.shift()
    const link = this.mode === 'ack-before-sync' // 'unlinked': the fdatasync may run before the write
    this.ring.prepWrite(this.fd, buffer, fileOffset, 1, link)
    this.ring.prepFsync(this.fd, 2, true, false)
    let writeResult
    let syncResult
    let answered = false
    const answer = (failure) => {
      if (answered) return
      answered = true
      callback(failure)
    }
    const failure = (operation, result) => ({
      operation,
      errno: -result,
      code: result < 0 ? `errno${-result}` : 'SHORT_WRITE',
      path: this.path,
    })
    const collect = (error, completions) => {
      if (error !== null) throw error
      for (const completion of completions) {
        if (completion.userData === 1) writeResult = completion.result
        else syncResult = completion.result
      }
      // The bug under test: the write's completion answers the caller while its fdatasync still runs.
      if (this.mode === 'ack-before-sync' && writeResult !== undefined) {
        answer(writeResult === buffer.length ? null : failure('write', writeResult))
      }
      if (writeResult === undefined || syncResult === undefined) return this.ring.submitAndWait(1, collect)
      if (writeResult !== buffer.length) answer(failure('write', writeResult))
      else if (syncResult < 0) answer(failure('fsync', syncResult))
      else answer(null)
      this.busy = false
      if (this.closing && this.queue.length === 0) return this.release()
      this.pump()
    }
    this.ring.submitAndWait(1, collect)
  }

  /** Once nothing is in flight (an acknowledged write's fdatasync may still be). */
  close() {
    this.closing = true
    if (!this.busy) this.release()
  }

  release() {
    this.ring.close()
    fs.closeSync(this.fd)
  }
}

function openFile(path, log) {
  if (broken === 'ack-before-sync' || broken === 'unlinked') return new BrokenUringFile(path, broken)
  return storage.open(path, log)
}

function writeDurable(file, bytes, offset) {
  return new Promise((resolve, reject) => {
    file.writeDurable(bytes, offset, (failure) => (failure === null ? resolve() : reject(failure)))
  })
}

function appendLoop(index, { name, start }) {
  const file = openFile(join(dir, name), index % 2 === 0 ? 'intent' : 'completion')
  file.truncate(start)
  let position = start
  const append = (sequence) => {
    const bytes = recordBytes(seed, round, index, sequence)
    file.writeDurable(bytes, position, (failure) => {
      if (failure !== null) return failed(`append ${index} ${sequence}`, failure)
      position += bytes.length
      report(`A ${index} ${sequence} ${now()}`)
      append(sequence + 1)
    })
  }
  return () => append(1)
}

async function checkpointLoop() {
  for (let k = firstCheckpoint; ; k++) {
    const name = checkpointName(k)
    const temporary = join(dir, `${name}.tmp`)
    const bytes = checkpointBytes(seed, k)
    try {
      if (broken === 'rename-unsynced') {
        await fs.promises.writeFile(temporary, bytes)
      } else {
        const file = openFile(temporary, 'completion')
        try {
          file.truncate(0) // a leftover of a cut
          let offset = 0
          for (const length of checkpointChunks(seed, k)) {
            await writeDurable(file, bytes.subarray(offset, offset + length), offset)
            offset += length
          }
        } finally {
          file.close()
        }
        await fsyncPath(temporary)
      }
      await fs.promises.rename(temporary, join(dir, name))
      await fsyncPath(dir)
    } catch (error) {
      return failed(`checkpoint ${k}`, error)
    }
    report(`C ${k} ${now()}`)
    try {
      const old = join(dir, checkpointName(k - 2))
      if (fs.existsSync(old)) storage.remove(old)
    } catch (error) {
      return failed(`remove ${k - 2}`, error)
    }
  }
}

let starts
try {
  starts = appendFiles.map((file, index) => appendLoop(index, file))
} catch (error) {
  failed('open', error)
  starts = []
}
report('READY')
for (const start of starts) start()
if (starts.length === appendFiles.length) await checkpointLoop()
// Every loop has stopped (a failure) or runs on: wait to be killed.
setInterval(() => {}, 1000)
