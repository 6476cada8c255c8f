// One log's appends across its segment files (the intent log or the completion log). Owns the
// current segment, the append position, and the zero-filled region ahead of it. Promises:
// - appends land in order, one at a time (the caller waits for each before the next);
// - an append goes into space already zero-filled and made durable, so its fdatasync has no file size or
//   extent change to commit (measured on this machine's ext4: p50 193–235 µs for a 4 KiB append into a
//   zero-filled file against 339–362 µs into a growing one);
// - zero-filling runs ahead of the position, off the event loop, and never overlaps a write: it only
//   extends the file past everything written or being written;
// - a batch never spans two segments: one that does not fit in the rest of a segment starts the next one,
//   and one larger than a whole segment gets a segment of its own, as large as it needs;
// - segments a checkpoint retired are reused: up to `reuseMax` of them stay on disk under their old names,
//   and the next segment is one of them renamed (durably) to its new number, written over without being
//   zero-filled again, so that a steady-state append costs its own bytes once. What the reused file still
//   holds ahead of the position is stale, and every append says which segment it was written in (the
//   intent log's sector stamps, the completion log's own-segment field: format/sectors.ts says why and how
//   recovery tells them apart). Only a segment a checkpoint retired is reused: its number, and every number
//   it was written as, is smaller than any segment the log will ever append to.

import assert from 'node:assert/strict'
import path from 'node:path'
import { segmentName, segmentNumbers, type LogKind } from '../format/segment-files.js'
import type { IoFailure } from '../errors.js'
import { ioFailure, type Storage, type StorageFile } from '../storage/storage.js'

export interface SegmentLocation {
  segment: number
  offset: number
}

/**
 * Whether an append at `start` follows on from a log that ended at `end`: where it ended, or at offset 0
 * of a later segment. The writer only ever places appends so; the log asserts it as it writes, and
 * recovery refuses a batch that does not ('misplaced').
 */
export function followsOn(end: SegmentLocation, start: SegmentLocation): boolean {
  return (start.segment === end.segment && start.offset === end.offset) || (start.segment > end.segment && start.offset === 0)
}

export interface SegmentWriterOptions {
  storage: Storage
  directory: string
  kind: LogKind
  segmentBytes: number
  /** How far ahead of the position zero-filling runs, and how much one fill adds. */
  fillStepBytes: number
  /** Where appends continue. */
  segment: number
  file: StorageFile
  position: number
  /** The file's length: everything below it is written or zero-filled. */
  filledTo: number
  /** How many retired segments to keep for reuse. */
  reuseMax: number
  /** Retired segments on disk that may be kept for reuse (a checkpoint covers them); the rest are returned by `retireBefore`. */
  retired: readonly number[]
}

type AppendCallback = (failure: IoFailure | null) => void
type PlacedCallback = (location: SegmentLocation) => void
type BuildCallback = (segment: number) => Uint8Array

export class SegmentWriter {
  private readonly storage: Storage
  private readonly directory: string
  private readonly kind: LogKind
  private readonly segmentBytes: number
  private readonly fillStepBytes: number
  private segment: number
  private file: StorageFile
  private position: number
  private filledTo: number
  private fillInFlight = false
  private fillWaiter: (() => void) | undefined
  /** The file the fill in flight writes, when it is a zero-fill (not a rename). */
  private fillFile: StorageFile | undefined
  /** Answers of appends to `fillFile` that succeeded while its fill was in flight: given once it ends. */
  private answersAfterFill: (() => void)[] = []
  private next: { segment: number; file: StorageFile; filledTo: number; ready: boolean } | undefined
  private failure: IoFailure | undefined
  private appendInFlight = false
  /** The files this writer opened, by segment number, until retired or closed. */
  private readonly files = new Map<number, StorageFile>()
  private readonly reuseMax: number
  /** Retired segments kept for reuse, on disk under their old numbers, a full segment long. */
  private readonly reusable: number[] = []
  /** A kept segment being renamed to the next one's number: no longer kept, but still under its old name. */
  private renaming: number | undefined
  /** Retired segments found at open and not kept: the caller removes them (`takeUnused`). */
  private unused: number[] = []
  /** How many segments this writer made by reusing a retired one. */
  reusedCount = 0

  constructor(options: SegmentWriterOptions) {
    if (!(options.segmentBytes >= options.fillStepBytes && options.fillStepBytes > 0)) {
      throw new RangeError('segmentBytes must be at least fillStepBytes, which must be positive')
    }
    this.storage = options.storage
    this.directory = options.directory
    this.kind = options.kind
    this.segmentBytes = options.segmentBytes
    this.fillStepBytes = options.fillStepBytes
    this.segment = options.segment
    this.file = options.file
    this.position = options.position
    this.filledTo = options.filledTo
    this.reuseMax = options.reuseMax
    this.files.set(this.segment, this.file)
    this.unused = this.keepForReuse(options.retired)
    this.fillAhead()
  }

  /** Retired segments found at open and not kept for reuse: the caller removes them. */
  takeUnused(): string[] {
    const paths = this.unused.map((number) => this.pathOf(number))
    this.unused = []
    return paths
  }

  /** Where the next append would go, if it fits in the current segment. */
  get location(): SegmentLocation {
    return { segment: this.segment, offset: this.position }
  }

  /** Stops all work of this writer's own (fills, new segments): the log has failed. Appends fail after. */
  halt(failure: IoFailure): void {
    this.failure ??= failure
  }

  /**
   * Appends `length` bytes durably: `build` makes them once the segment they go in is decided (they say
   * which segment they are written in). `placed` is called once their location is decided and their write
   * submitted (not called when the append fails before that); `callback` once they are durable, or with the
   * failure.
   */
  append(length: number, build: BuildCallback, placed: PlacedCallback, callback: AppendCallback): void {
    assert(!this.appendInFlight, 'one append in flight per log')
    this.appendInFlight = true
    this.place(length, build, placed, (failure) => {
      this.appendInFlight = false
      callback(failure)
    })
  }

  /**
   * Closes this log's segments before `segment` (a checkpoint made them unneeded:
   * checkpoint/checkpoint-writer.ts), those this writer opened, keeps up to `reuseMax` of them for reuse,
   * and returns the paths of the others, with those an earlier open left, for the caller to discard
   * (Storage.discard: not made durable; a crash that brings a segment back leaves it to recovery, which
   * retires it again). Never the one it appends to, nor the next: both come after.
   */
  retireBefore(segment: number): string[] {
    assert(segment <= this.segment, 'the segment appended to is never retired')
    let names: string[]
    try {
      names = this.storage.list(this.directory)
    } catch {
      names = [...this.files.keys()].map((number) => segmentName(this.kind, number)) // the disk failed: those known
    }
    const retired = segmentNumbers(names, this.kind).filter(
      (number) => number < segment && !this.reusable.includes(number) && number !== this.renaming,
    )
    for (const number of retired) {
      const file = this.files.get(number)
      this.files.delete(number)
      try {
        file?.close()
      } catch {
        // as in close(): nothing is lost by a failed close of a file no longer written
      }
    }
    return this.keepForReuse(retired).map((number) => this.pathOf(number))
  }

  /** Keeps retired segments a full segment long for reuse, up to `reuseMax`; returns the others. */
  private keepForReuse(retired: readonly number[]): number[] {
    const others: number[] = []
    for (const number of retired) {
      if (this.reusable.length < this.reuseMax && this.storage.size(this.pathOf(number)) === this.segmentBytes) {
        this.reusable.push(number)
      } else {
        others.push(number)
      }
    }
    return others
  }

  private pathOf(segment: number): string {
    return path.join(this.directory, segmentName(this.kind, segment))
  }

  /** Calls back once no fill is in flight (appends are the caller's to wait for), then closes the files. */
  close(callback: () => void): void {
    const finish = (): void => {
      // A next segment that is not ready with no fill in flight had its fill fail: nothing to wait for.
      if (this.fillInFlight) {
        this.fillWaiter = finish
        return
      }
      for (const file of this.files.values()) {
        try {
          file.close()
        } catch {
          // Closing after the last write was durable cannot lose anything; a failed close is not a failure.
        }
      }
      callback()
    }
    finish()
  }

  private place(length: number, build: BuildCallback, placed: PlacedCallback, callback: AppendCallback): void {
    if (this.failure !== undefined) return callback(this.failure)
    if (this.position > 0 && this.position + length > this.segmentBytes) {
      if (!this.roll()) {
        if (this.failure !== undefined) return callback(this.failure) // the next segment could not be made
        // the next segment is still being prepared: wait for its fill, then try again
        this.fillWaiter = () => this.place(length, build, placed, callback)
        return
      }
    }
    const end = this.position + length
    if (end > this.filledTo) {
      // Only when writing outruns filling (or for an oversized batch): wait for the space.
      if (this.fillInFlight) {
        this.fillWaiter = () => this.place(length, build, placed, callback)
        return
      }
      // Continue as the fill's waiter (set first: a fill may complete at once), so that a failed fill
      // reaches this append: place checks the failure first.
      this.fillWaiter = () => this.place(length, build, placed, callback)
      this.startFill(this.file, Math.max(end, Math.min(this.segmentBytes, this.filledTo + this.fillStepBytes)), (filled) => {
        this.filledTo = filled
      })
      return
    }
    const location = { segment: this.segment, offset: this.position }
    const buffer = build(location.segment)
    assert.equal(buffer.length, length, 'an append is as long as it said')
    this.position = end
    const file = this.file
    file.writeDurable(buffer, location.offset, (failure) => {
      if (failure !== null) this.failure = failure
      // A failure while this write was in flight (a fill's fdatasync of the same file, most of all) may
      // have dropped its dirty pages, and the kernel reports a writeback error once, to whichever
      // fdatasync of the file comes first: this write's own can then succeed over lost bytes (fsyncgate).
      // So a write whose log failed meanwhile is never acknowledged, whatever its own fdatasync said; and
      // while a fill of the same file is in flight, its answer waits for that fill's: the fill's failure
      // may come back after this success (it runs through libuv, this write on the ring).
      const answer = (): void => callback(failure ?? this.failure ?? null)
      if (failure === null && this.fillInFlight && this.fillFile === file) this.answersAfterFill.push(answer)
      else answer()
    })
    placed(location)
    this.fillAhead()
  }

  /** Moves to the prepared next segment; false when it is not ready yet. */
  private roll(): boolean {
    if (this.next === undefined) {
      if (this.fillInFlight) return false // the fill in flight must end before the next one starts
      this.prepareNext()
      if (this.next === undefined) return false // it failed: this.failure says why
    }
    const next = this.next
    if (!next.ready) return false
    this.segment = next.segment
    this.file = next.file
    this.filledTo = next.filledTo
    this.position = 0
    this.next = undefined
    this.fillAhead()
    return true
  }

  /** Keeps at least half a step of zero-filled space ahead, and the next segment ready near the end. */
  private fillAhead(): void {
    if (this.fillInFlight || this.failure !== undefined) return
    if (this.filledTo < this.segmentBytes && this.filledTo - this.position < this.fillStepBytes / 2) {
      const file = this.file
      this.startFill(file, Math.min(this.segmentBytes, this.filledTo + this.fillStepBytes), (filled) => {
        if (file === this.file) this.filledTo = filled
      })
    } else if (this.next === undefined && this.segmentBytes - this.position < this.fillStepBytes) {
      this.prepareNext()
    }
  }

  private prepareNext(): void {
    const segment = this.segment + 1
    const filePath = this.pathOf(segment)
    const reused = this.reusable.shift()
    if (reused !== undefined) return this.reuse(reused, segment)
    let file: StorageFile
    try {
      file = this.storage.open(filePath, this.kind)
    } catch (error) {
      // Creating a segment is on the write path: a failure halts this log like a failed write would.
      this.failure ??= ioFailure('open', error as NodeJS.ErrnoException, filePath)
      return
    }
    this.files.set(segment, file)
    const next = { segment, file, filledTo: 0, ready: false }
    this.next = next
    this.startFill(file, Math.min(this.fillStepBytes, this.segmentBytes), (filled) => {
      next.filledTo = filled
      next.ready = true
    })
  }

  /**
   * Makes the next segment of a retired one: renamed to its new number, durably before anything is written
   * in it (else a crash could bring back the old name, and the batches written under the new one would be
   * gone), then opened, already full length. Runs as a fill does: one at a time, and close waits for it.
   */
  private reuse(retired: number, segment: number): void {
    const filePath = this.pathOf(segment)
    const next = { segment, file: undefined as unknown as StorageFile, filledTo: 0, ready: false }
    this.next = next
    this.renaming = retired
    this.startBackground(
      (done) =>
        this.storage.renameDurable(this.pathOf(retired), filePath, (failure) => {
          this.renaming = undefined
          done(failure)
        }),
      () => {
        if (this.failure !== undefined) return // halted meanwhile: nothing more is opened
        try {
          next.file = this.storage.open(filePath, this.kind)
        } catch (error) {
          this.failure ??= ioFailure('open', error as NodeJS.ErrnoException, filePath)
          return
        }
        this.files.set(segment, next.file)
        next.filledTo = this.storage.size(filePath)
        next.ready = true
        this.reusedCount++
      },
    )
  }

  private startFill(file: StorageFile, length: number, filled: (length: number) => void): void {
    this.startBackground(
      (done) => {
        this.fillFile = file
        file.zeroFill(length, done)
      },
      () => filled(length),
    )
  }

  /** Runs one fill or rename (one at a time per log); on success `succeeded`, then whoever waits for it. */
  private startBackground(run: (done: (failure: IoFailure | null) => void) => void, succeeded: () => void): void {
    assert(!this.fillInFlight, 'one fill in flight per log')
    this.fillInFlight = true
    run((failure) => {
      this.fillInFlight = false
      this.fillFile = undefined
      if (failure !== null) this.failure ??= failure
      else succeeded()
      // The appends that waited for this fill: failed if it failed (this.failure), else acknowledged.
      const answers = this.answersAfterFill
      this.answersAfterFill = []
      for (const answer of answers) answer()
      const waiter = this.fillWaiter
      this.fillWaiter = undefined
      if (waiter !== undefined) waiter()
      else if (failure === null) this.fillAhead()
    })
  }
}
