// A backup of one shard into another directory, while the shard stays open and writable. It owns the copy
// and nothing else: the shard decides the moment, and holds its checkpoints still while the copy runs.
//
// What a backup holds, and why it is consistent: the shard first makes a checkpoint C (of every batch
// durable when the backup was asked for: so of every write acknowledged before it), then, with no other
// checkpoint allowed to start or retire anything, notes D, the last durable batch, and copies:
// - C's file, by a hard link where the file system allows (a checkpoint is never written after it is
//   made current), else a copy;
// - each log's segments from the one C's point is in up to the one D's end is in, the last one only up to
//   D's end: batches and completion records that are durable and that the shard never writes again.
// Recovery of the copy loads C and replays the batches after C up to D: the batches applied while C's
// table walk ran are all among them (they were durable before C was current, so before D), which is what
// makes C's fuzzy walk exact (checkpoint-writer.ts). Batches after D are not in the backup: it is the state
// as of D, a consistent prefix of what came after the call.
//
// Every copied file, and the directory, are fsynced before the backup is answered. All the I/O goes
// through libuv, off the shard's thread.

import fs from 'node:fs'
import path from 'node:path'
import { segmentName, type LogKind } from '../format/segment-files.js'
import { checkpointName } from '../format/checkpoint.js'
import type { DurablePoint } from '../log/log.js'
import type { BackupResult } from '../protocol.js'

/** Bytes copied per read and write. */
const copyChunkBytes = 1024 * 1024

export interface BackupPlan {
  /** The shard's directory, and the backup's. */
  source: string
  target: string
  /** The checkpoint the backup starts from (none: the logs from their first segment). */
  checkpoint: DurablePoint | undefined
  /** The last durable batch when the copy began: the backup ends there. */
  end: DurablePoint
  /** The segments each log holds now, ascending. */
  segments: Record<LogKind, number[]>
}

/** Copies what `plan` names; calls back once, with the first failure or the result. */
export function copyBackup(plan: BackupPlan, callback: (error: NodeJS.ErrnoException | null, result?: BackupResult) => void): void {
  const steps: ((done: (error: NodeJS.ErrnoException | null, bytes: number) => void) => void)[] = []
  if (plan.checkpoint !== undefined) {
    const name = checkpointName(plan.checkpoint.sequence, 'current')
    steps.push((done) => linkOrCopy(path.join(plan.source, name), path.join(plan.target, name), done))
  }
  for (const kind of ['intent', 'completion'] as const) {
    const first = plan.checkpoint?.[kind].segment ?? plan.segments[kind][0] ?? plan.end[kind].segment
    for (const segment of plan.segments[kind]) {
      if (segment < first || segment > plan.end[kind].segment) continue
      const name = segmentName(kind, segment)
      const length = segment === plan.end[kind].segment ? plan.end[kind].offset : undefined
      steps.push((done) => copyPrefix(path.join(plan.source, name), path.join(plan.target, name), length, done))
    }
  }
  let bytes = 0
  let index = 0
  const next = (error: NodeJS.ErrnoException | null, copied: number): void => {
    if (error !== null) return callback(error)
    bytes += copied
    if (index === steps.length) {
      return syncPath(plan.target, (syncError) =>
        syncError === null ? callback(null, { sequence: plan.end.sequence, files: steps.length, bytes }) : callback(syncError),
      )
    }
    steps[index++]!(next)
  }
  fs.mkdir(plan.target, { recursive: true }, (error) => (error === null ? next(null, 0) : callback(error)))
}

/** A hard link where the file system allows one, else a copy; then fsynced. */
function linkOrCopy(from: string, to: string, done: (error: NodeJS.ErrnoException | null, bytes: number) => void): void {
  fs.link(from, to, (error) => {
    if (error === null) return syncPath(to, (syncError) => done(syncError, 0))
    if (error.code !== 'EXDEV' && error.code !== 'EPERM' && error.code !== 'ENOTSUP') return done(error, 0)
    copyPrefix(from, to, undefined, done)
  })
}

/** Copies the first `length` bytes of `from` (all of it when undefined) to a new file `to`, and fsyncs it. */
function copyPrefix(
  from: string,
  to: string,
  length: number | undefined,
  done: (error: NodeJS.ErrnoException | null, bytes: number) => void,
): void {
  fs.open(from, 'r', (openError, source) => {
    if (openError !== null) return done(openError, 0)
    fs.open(to, 'wx', 0o644, (targetError, target) => {
      if (targetError !== null) return fs.close(source, () => done(targetError, 0))
      const buffer = Buffer.allocUnsafe(copyChunkBytes)
      const finish = (error: NodeJS.ErrnoException | null, copied: number): void => {
        const close = (): void => fs.close(source, () => fs.close(target, () => done(error, copied)))
        if (error !== null) return close()
        fs.fsync(target, (syncError) => {
          error = syncError
          close()
        })
      }
      const copyFrom = (offset: number): void => {
        const want = length === undefined ? copyChunkBytes : Math.min(copyChunkBytes, length - offset)
        if (want <= 0) return finish(null, offset)
        fs.read(source, buffer, 0, want, offset, (readError, read) => {
          if (readError !== null) return finish(readError, offset)
          if (read === 0) {
            if (length === undefined) return finish(null, offset)
            return finish(Object.assign(new Error(`${from} ends at ${offset} bytes, before ${length}`), { code: 'EIO' }), offset)
          }
          writeAll(target, buffer.subarray(0, read), offset, (writeError) =>
            writeError === null ? copyFrom(offset + read) : finish(writeError, offset),
          )
        })
      }
      copyFrom(0)
    })
  })
}

function writeAll(fd: number, bytes: Uint8Array, offset: number, done: (error: NodeJS.ErrnoException | null) => void): void {
  fs.write(fd, bytes, 0, bytes.length, offset, (error, written) => {
    if (error !== null) return done(error)
    if (written === bytes.length) return done(null)
    if (written === 0) return done(Object.assign(new Error('a write wrote nothing'), { code: 'EIO' }))
    writeAll(fd, bytes.subarray(written), offset + written, done)
  })
}

/** fsync of a file or a directory, through libuv. */
function syncPath(target: string, done: (error: NodeJS.ErrnoException | null) => void): void {
  fs.open(target, 'r', (openError, fd) => {
    if (openError !== null) return done(openError)
    fs.fsync(fd, (syncError) => fs.close(fd, () => done(syncError)))
  })
}
