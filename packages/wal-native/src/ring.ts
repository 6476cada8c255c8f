// An io_uring instance driven from JavaScript: SQ, CQ and SQE memory mapped into views, SQEs written by hand,
// io_uring_enter called through koffi.
//
// Owns: the ring fd, its three (or two) mappings, every buffer the kernel may still read, and at most one
// io_uring_enter wait in flight.
//
// Where a ring waits, chosen at setup (`wait`):
// - 'threadpool' (the default): on a libuv threadpool thread, through koffi's `.async`; the JavaScript
//   thread never blocks. Each wait costs a threadpool hop both ways.
// - 'thread': on the JavaScript thread itself, but only after yielding once to the event loop (setImmediate),
//   so that everything already delivered to the thread (messages, other callbacks) runs first; then the
//   thread blocks in io_uring_enter until every operation in flight has completed. For a thread that owns
//   the ring and has nothing else to do while its I/O is in flight (a shard worker). Measured on this
//   project's 2-core virtio machine, a 4 KiB write + fdatasync: p50 about 40 µs lower, and half the CPU.
//
// Promises:
// - Nothing the kernel may read is released early: every prepared SQE's buffer is referenced from `operations`
//   until its CQE has been reaped, whatever the caller does meanwhile (tokio-uring's Lifecycle).
// - In 'threadpool' mode the JavaScript thread never blocks on I/O: waits run on the threadpool; a submission
//   made while a wait is already in flight is synchronous but never waits (min_complete 0), and large writes
//   submitted that way are forced to the kernel's io-wq (IOSQE_ASYNC) so the copy into the page cache does not
//   happen on this thread. In 'thread' mode the thread blocks only in the wait described above.
// - Completions are reaped first, then callbacks run, never inside the loop that reaps them.
// - `writeDurable` calls back exactly once: null only after the whole buffer was written and a linked
//   fdatasync after its last byte succeeded; a RingIoError for an operating error (errno.ts's 'io' rows, and
//   errnos outside the table). Or never, when its write or fsync meets a programmer error (errno.ts's 'bug'
//   rows: EBADF, EFAULT): then the ring throws a RingBugError where it runs callbacks, after the reap; the
//   other callbacks of that reap still run, and the first exception thrown among them escapes, uncaught (a
//   shard's worker fails). The low-level calls hand back raw CQEs: `errnoOutcome` says what each errno means.
// - Assertions (node:assert) stay on in production: the kernel structs' layout is checked when this module
//   loads, and the ring's invariants at the top of each call.
//
// Two ways to use a ring, not to be mixed on one ring (asserted): the low-level liburing-like calls
// (prepWrite, prepFsync, submitAndWait), where the caller drives submission and waits; or writeDurable, where
// the ring runs its own completion loop: while any durable write is in flight, exactly one wait is outstanding.
//
// Queue limits, and what happens when each is reached:
// - SQ slots (the kernel's sq_entries): prep* throws; writeDurable waits in `pendingWrites`.
// - Operations in flight: at most cq_entries, so the CQ can never overflow (no reliance on IORING_FEAT_NODROP);
//   prep* throws; writeDurable waits in `pendingWrites`.
// - `pendingWrites`: at most pendingWritesMax; past it writeDurable throws: the caller must bound what it queues.
//
// Why no IORING_SETUP_SINGLE_ISSUER / DEFER_TASKRUN: the wait runs on a threadpool thread and submissions may
// come from the JavaScript thread; under those flags an io_uring_enter from the other thread fails with EEXIST.

import assert from 'node:assert/strict'
import {
  ECANCELED,
  EFAULT,
  EINTR,
  EINVAL,
  EIO,
  EMFILE,
  ENFILE,
  ENOMEM,
  ENOSYS,
  EPERM,
  errnoCase,
  errnoOutcome,
  errnoName,
  type RingOperation,
} from './errno.js'
import {
  address,
  close as closeFd,
  errno,
  ioUringEnter,
  ioUringEnterAsync,
  ioUringSetup,
  mapFailed,
  mapPopulate,
  mapShared,
  mmap,
  munmap,
  type Pointer,
  protRead,
  protWrite,
  view,
} from './native.js'

/** IORING_MAX_ENTRIES: the kernel refuses more SQ entries than this. */
export const ringEntriesMax = 32768
/** Durable writes waiting for SQ space or for a free CQ slot. */
export const pendingWritesMax = 4096
/** MAX_RW_COUNT (INT_MAX & PAGE_MASK): the kernel writes at most this many bytes per write request. */
export const writeBytesMax = 0x7ffff000
/** Writes larger than this, submitted from the JavaScript thread, are forced to io-wq (IOSQE_ASYNC). */
export const inlineWriteBytesMax = 64 * 1024
/** Consecutive EINTR/EAGAIN/EBUSY answers from io_uring_enter before the ring gives up. */
export const enterRetriesMax = 64
/** Consecutive zero-byte write completions before writeDurable reports EIO instead of looping forever. */
export const zeroProgressWritesMax = 4

// Kernel ABI (include/uapi/linux/io_uring.h). Each struct's fields are listed whole, in the kernel's order, and
// checked at load to follow one another and add up to the struct's size, so a mistyped offset cannot pass.

/** struct io_uring_params. */
const paramsSqEntries = 0
const paramsCqEntries = 4
const paramsFeatures = 20
const paramsSqOff = 40
const paramsCqOff = 80
const paramsBytes = 120
/** struct io_sqring_offsets (params.sq_off): where each field of the SQ ring is in its mapping. */
const sqOffHead = 0
const sqOffTail = 4
const sqOffRingMask = 8
const sqOffArray = 24
/** struct io_cqring_offsets (params.cq_off). */
const cqOffHead = 0
const cqOffTail = 4
const cqOffRingMask = 8
const cqOffCqes = 20
const ringOffsetsBytes = 40
/** struct io_uring_sqe: 64 bytes without IORING_SETUP_SQE128, which this ring never sets. */
const sqeOpcode = 0
const sqeFlags = 1
const sqeFd = 4
const sqeOff = 8
const sqeAddr = 16
const sqeLen = 24
const sqeOpFlags = 28 // rw_flags, fsync_flags …: one union.
const sqeUserData = 32
const sqeBytes = 64
/** struct io_uring_cqe: 16 bytes without IORING_SETUP_CQE32, which this ring never sets. */
const cqeUserData = 0
const cqeResult = 8
const cqeFlags = 12
const cqeBytes = 16

assertLayout('io_uring_params', paramsBytes, [
  ['sq_entries', paramsSqEntries, 4],
  ['cq_entries', paramsCqEntries, 4],
  ['flags', 8, 4],
  ['sq_thread_cpu', 12, 4],
  ['sq_thread_idle', 16, 4],
  ['features', paramsFeatures, 4],
  ['wq_fd', 24, 4],
  ['resv', 28, 3 * 4],
  ['sq_off', paramsSqOff, ringOffsetsBytes],
  ['cq_off', paramsCqOff, ringOffsetsBytes],
])
assertLayout('io_sqring_offsets', ringOffsetsBytes, [
  ['head', sqOffHead, 4],
  ['tail', sqOffTail, 4],
  ['ring_mask', sqOffRingMask, 4],
  ['ring_entries', 12, 4],
  ['flags', 16, 4],
  ['dropped', 20, 4],
  ['array', sqOffArray, 4],
  ['resv1', 28, 4],
  ['user_addr', 32, 8],
])
assertLayout('io_cqring_offsets', ringOffsetsBytes, [
  ['head', cqOffHead, 4],
  ['tail', cqOffTail, 4],
  ['ring_mask', cqOffRingMask, 4],
  ['ring_entries', 12, 4],
  ['overflow', 16, 4],
  ['cqes', cqOffCqes, 4],
  ['flags', 24, 4],
  ['resv1', 28, 4],
  ['user_addr', 32, 8],
])
assertLayout('io_uring_sqe', sqeBytes, [
  ['opcode', sqeOpcode, 1],
  ['flags', sqeFlags, 1],
  ['ioprio', 2, 2],
  ['fd', sqeFd, 4],
  ['off', sqeOff, 8],
  ['addr', sqeAddr, 8],
  ['len', sqeLen, 4],
  ['op_flags', sqeOpFlags, 4],
  ['user_data', sqeUserData, 8],
  ['buf_index', 40, 2],
  ['personality', 42, 2],
  ['splice_fd_in', 44, 4],
  ['addr3', 48, 8],
  ['__pad2', 56, 8],
])
assertLayout('io_uring_cqe', cqeBytes, [
  ['user_data', cqeUserData, 8],
  ['res', cqeResult, 4],
  ['flags', cqeFlags, 4],
])

const offSqRing = 0
const offCqRing = 0x8000000
const offSqes = 0x10000000
const featSingleMmap = 1 << 0
const featRwCurPos = 1 << 3 // Arrived with Linux 5.6, like IORING_OP_WRITE: its absence means no OP_WRITE.
const opFsync = 3
const opWrite = 23
const sqeFlagIoLink = 1 << 2
const sqeFlagAsync = 1 << 4
const fsyncDatasync = 1 << 0
const enterGetEvents = 1 << 0
/** Internal userData for writeDurable starts here; low-level callers use their own numbers. */
const durableUserDataFirst = 2 ** 48

// Relations between the limits above and the kernel's fields, checked once at load.
assert.equal(writeBytesMax, 0x7fffffff & -4096, 'writeBytesMax is MAX_RW_COUNT: INT_MAX rounded down to a page')
assert(writeBytesMax <= 0xffffffff, "writeBytesMax fits the SQE's 32-bit len")
assert(inlineWriteBytesMax < writeBytesMax, 'inlineWriteBytesMax is below writeBytesMax')
assert.equal(ringEntriesMax & (ringEntriesMax - 1), 0, 'ringEntriesMax is a power of two, as the kernel rounds to')
// userData is a JavaScript number: the durable counter must stay exact (2^53 - 2^48 operations is centuries).
assert(durableUserDataFirst < Number.MAX_SAFE_INTEGER / 2, 'durable userData stays a safe integer')

export class RingSetupError extends Error {
  readonly errno: number
  /** What happened and what to do about it. */
  readonly reason: string

  constructor(errnoValue: number, reason: string) {
    super(`io_uring is not available: ${errnoName(errnoValue)} (errno ${errnoValue}): ${reason}`)
    this.name = 'RingSetupError'
    this.errno = errnoValue
    this.reason = reason
  }
}

export class RingIoError extends Error {
  readonly operation: 'write' | 'fsync'
  readonly errno: number
  /** The errno's name: 'EIO', 'ENOSPC' … ('ERRNO_<n>' for one outside errno.ts). */
  readonly code: string

  constructor(operation: 'write' | 'fsync', errnoValue: number, detail: string) {
    super(`${operation} failed: ${errnoName(errnoValue)} (errno ${errnoValue}): ${detail}`)
    this.name = 'RingIoError'
    this.operation = operation
    this.errno = errnoValue
    this.code = errnoName(errnoValue)
  }
}

/**
 * A programmer error the kernel reported (errno.ts's 'bug' rows): EBADF or EFAULT from a write or fsync, a ring
 * fd closed underneath the ring. Never passed to a writeDurable callback: thrown where the ring runs callbacks,
 * after the reap (the other callbacks of that reap still run), so that it escapes as an uncaught exception
 * (a shard's worker fails, and the engine reports SHARD_FAILED).
 */
export class RingBugError extends Error {
  readonly operation: RingOperation
  readonly errno: number
  /** The errno's name: 'EBADF', 'EFAULT' … */
  readonly code: string

  constructor(operation: RingOperation, errnoValue: number, detail: string) {
    super(`${operation} failed: ${errnoName(errnoValue)} (errno ${errnoValue}), a bug in ringkv or its caller: ${detail}`)
    this.name = 'RingBugError'
    this.operation = operation
    this.errno = errnoValue
    this.code = errnoName(errnoValue)
  }
}

export interface Completion {
  userData: number
  /** The CQE's res: bytes written, 0, or a negated errno. */
  result: number
  flags: number
}

/** Why io_uring_setup failed, and what the operator can do. */
function setupReason(errnoValue: number): string {
  switch (errnoValue) {
    case EPERM: // Refused by policy, not by a missing feature.
      return (
        'io_uring is refused by policy. Check sysctl kernel.io_uring_disabled (0 allows everyone, 1 only members ' +
        "of kernel.io_uring_group, 2 nobody), and the seccomp profile: Docker's default profile blocks " +
        'io_uring_setup, so run with a profile that allows io_uring_setup and io_uring_enter.'
      )
    case ENOSYS: // No such syscall: a kernel without io_uring, or a seccomp filter answering ENOSYS.
      return (
        'this kernel has no io_uring (older than Linux 5.1, built without CONFIG_IO_URING, or a seccomp filter ' +
        'answering ENOSYS); Linux 5.6 or later is needed.'
      )
    case ENOMEM: // Ring memory could not be allocated (or locked).
      return 'the kernel could not allocate ring memory; before Linux 5.12 it counts against RLIMIT_MEMLOCK (ulimit -l).'
    case EMFILE: // This process has no free fd for the ring.
    case ENFILE: // The system has no free file.
      return 'out of file descriptors for the ring fd: raise ulimit -n, or close files.'
    case EINVAL: // Parameters the kernel does not accept: entries out of range, or flags it does not know.
      return 'the kernel rejected the ring parameters (entries out of range, or a kernel too old for them).'
    case EFAULT: // The params struct was not readable: a bug in this package.
      return 'the kernel could not read the setup parameters: a bug in @ringkv/wal-native.'
    default:
      return `unexpected errno ${errnoValue} from io_uring_setup.`
  }
}

/** The error for a failed write or fsync CQE, as errno.ts's table says: a RingBugError for its 'bug' rows. */
function failureFor(operation: 'write' | 'fsync', errnoValue: number, fd: number, fileOffset: number): RingIoError | RingBugError {
  const row = errnoCase(operation, errnoValue)
  const where = `fd ${fd} at offset ${fileOffset}`
  if (row === undefined) {
    return new RingIoError(operation, errnoValue, `unexpected errno ${errnoValue} from ${operation} (${where})`)
  }
  assert(row.outcome === 'io' || row.outcome === 'bug', `${operation} CQE: '${row.outcome}' is not a CQE outcome`)
  if (row.outcome === 'bug') return new RingBugError(operation, errnoValue, `${where}: ${row.meaning}`)
  return new RingIoError(operation, errnoValue, `${where}: ${row.meaning}`)
}

/** The error for a failed io_uring_enter that is not retried (errno.ts's table): `where` names the call. */
function enterFailureFor(errnoValue: number, where: string): Error {
  const row = errnoCase('enter', errnoValue)
  if (row?.outcome === 'bug') return new RingBugError('enter', errnoValue, `${where}: ${row.meaning}`)
  return new Error(`io_uring_enter failed: unexpected errno ${errnoName(errnoValue)} (errno ${errnoValue}) (${where})`)
}

/** One writeDurable call: its buffer, how far it got, and the results of its current write + fsync pair. */
interface DurableWrite {
  readonly fd: number
  readonly buffer: Uint8Array
  readonly fileOffset: number
  readonly callback: (error: RingIoError | null) => void
  bytesWritten: number
  zeroProgressWrites: number
  writeResult: number | null
  fsyncResult: number | null
}

type Operation =
  | { readonly kind: 'low'; readonly buffer: Uint8Array | null }
  | { readonly kind: 'write'; readonly durable: DurableWrite; readonly buffer: Uint8Array }
  | { readonly kind: 'fsync'; readonly durable: DurableWrite }

interface Mapping {
  readonly pointer: Pointer
  readonly length: number
}

/** Map `length` bytes of the ring at `offset`, or throw RingSetupError (the caller unmaps and closes). */
function mapRegion(fd: number, length: number, offset: number): Mapping {
  const pointer = mmap(length, protRead | protWrite, mapShared | mapPopulate, fd, offset)
  if (pointer === mapFailed) {
    const errnoValue = errno()
    throw new RingSetupError(
      errnoValue,
      errnoValue === ENOMEM
        ? 'mmap of ring memory failed; before Linux 5.12 it counts against RLIMIT_MEMLOCK (ulimit -l).'
        : `mmap of ring memory failed (offset 0x${offset.toString(16)}, ${length} bytes).`,
    )
  }
  return { pointer, length }
}

/** Where a ring waits for completions: see the top of this file. */
export type RingWait = 'threadpool' | 'thread'

export interface RingOptions {
  /** Default 'threadpool'. */
  wait?: RingWait
}

export class Ring {
  readonly fd: number
  readonly sqEntries: number
  readonly cqEntries: number

  private readonly mappings: Mapping[]
  private readonly sqRing: Uint32Array
  private readonly sqHeadIndex: number
  private readonly sqTailIndex: number
  private readonly sqMask: number
  private readonly sqes: DataView
  private readonly sqeBytesView: Uint8Array
  private readonly cqRing: Uint32Array
  private readonly cqHeadIndex: number
  private readonly cqTailIndex: number
  private readonly cqMask: number
  private readonly cqes: DataView
  private readonly cqesOffset: number

  /** Next SQE slot to fill; published to the kernel's tail by flushSq. */
  private sqeTail: number
  private readonly operations = new Map<number, Operation>()
  private durableOperations = 0
  private readonly pendingWrites: DurableWrite[] = []
  private nextDurableUserData = durableUserDataFirst
  private waiting = false
  private closed = false

  /**
   * Called before writeDurable resubmits the rest of a short write: an observation point for metrics and for
   * tests that must change the world between the short write and its resubmission (free space on a full disk).
   */
  shortWriteHook: ((fd: number, bytesWritten: number, bytesRemaining: number) => void) | null = null
  /** Short writes writeDurable has resubmitted since setup. */
  shortWrites = 0

  static setup(entries: number, options: RingOptions = {}): Ring {
    if (!Number.isInteger(entries) || entries < 1 || entries > ringEntriesMax) {
      throw new RangeError(`Ring.setup: entries must be an integer from 1 to ${ringEntriesMax}, got ${entries}`)
    }
    const wait = options.wait ?? 'threadpool'
    if (wait !== 'threadpool' && wait !== 'thread') {
      throw new RangeError(`Ring.setup: options.wait must be 'threadpool' or 'thread', got ${String(wait)}`)
    }
    const params = new Uint8Array(paramsBytes)
    const fd = ioUringSetup(entries, params)
    if (fd < 0) {
      const errnoValue = errno()
      throw new RingSetupError(errnoValue, setupReason(errnoValue))
    }
    const mappings: Mapping[] = []
    try {
      return new Ring(fd, new DataView(params.buffer), mappings, wait)
    } catch (error) {
      for (const mapping of mappings) munmap(mapping.pointer, mapping.length)
      closeFd(fd)
      throw error
    }
  }

  /** Use Ring.setup. `mappings` is filled as regions are mapped, so that setup can undo a partial construction. */
  private constructor(
    fd: number,
    params: DataView,
    mappings: Mapping[],
    readonly wait: RingWait,
  ) {
    this.fd = fd
    this.mappings = mappings
    const u32 = (offset: number) => params.getUint32(offset, true)
    this.sqEntries = u32(paramsSqEntries)
    this.cqEntries = u32(paramsCqEntries)
    const features = u32(paramsFeatures)
    if ((features & featRwCurPos) === 0) {
      throw new RingSetupError(ENOSYS, 'this kernel is older than Linux 5.6 and has no IORING_OP_WRITE; upgrade it.')
    }
    const sqRingBytes = u32(paramsSqOff + sqOffArray) + this.sqEntries * 4 // sq_off.array + the index array
    const cqRingBytes = u32(paramsCqOff + cqOffCqes) + this.cqEntries * cqeBytes // cq_off.cqes + the CQE array

    let sqRingMapping: Mapping
    let cqRingMapping: Mapping
    if ((features & featSingleMmap) !== 0) {
      sqRingMapping = mapRegion(fd, Math.max(sqRingBytes, cqRingBytes), offSqRing)
      mappings.push(sqRingMapping)
      cqRingMapping = sqRingMapping
    } else {
      sqRingMapping = mapRegion(fd, sqRingBytes, offSqRing)
      mappings.push(sqRingMapping)
      cqRingMapping = mapRegion(fd, cqRingBytes, offCqRing)
      mappings.push(cqRingMapping)
    }
    const sqesMapping = mapRegion(fd, this.sqEntries * sqeBytes, offSqes)
    mappings.push(sqesMapping)

    const sqRingBuffer = view(sqRingMapping.pointer, sqRingMapping.length)
    this.sqRing = new Uint32Array(sqRingBuffer)
    this.sqHeadIndex = u32(paramsSqOff + sqOffHead) / 4
    this.sqTailIndex = u32(paramsSqOff + sqOffTail) / 4
    this.sqMask = this.sqRing[u32(paramsSqOff + sqOffRingMask) / 4]!
    // Slot i of the index array always names SQE i: SQEs are filled in ring order, as liburing does.
    const sqArray = new Uint32Array(sqRingBuffer, u32(paramsSqOff + sqOffArray), this.sqEntries)
    for (let index = 0; index < this.sqEntries; index++) sqArray[index] = index

    const sqesBuffer = view(sqesMapping.pointer, sqesMapping.length)
    this.sqes = new DataView(sqesBuffer)
    this.sqeBytesView = new Uint8Array(sqesBuffer)

    const cqRingBuffer = view(cqRingMapping.pointer, cqRingMapping.length)
    this.cqRing = new Uint32Array(cqRingBuffer)
    this.cqHeadIndex = u32(paramsCqOff + cqOffHead) / 4
    this.cqTailIndex = u32(paramsCqOff + cqOffTail) / 4
    this.cqMask = this.cqRing[u32(paramsCqOff + cqOffRingMask) / 4]!
    this.cqes = new DataView(cqRingBuffer)
    this.cqesOffset = u32(paramsCqOff + cqOffCqes)

    this.sqeTail = Atomics.load(this.sqRing, this.sqTailIndex)
  }

  /** Operations prepared (queued in the SQ or submitted) whose CQE has not been reaped yet. */
  get inFlight(): number {
    return this.operations.size
  }

  /** Durable writes waiting for SQ or CQ space, not yet prepared. */
  get pending(): number {
    return this.pendingWrites.length
  }

  // ---- low level --------------------------------------------------------------------------------------------

  /** IORING_OP_WRITE of `buffer` at `fileOffset`. The ring keeps `buffer` alive until its CQE is reaped. */
  prepWrite(fd: number, buffer: Uint8Array, fileOffset: number, userData: number, link: boolean): void {
    this.assertOpen('prepWrite')
    assertWriteArguments('prepWrite', fd, buffer, fileOffset)
    this.assertLowLevelSlot('prepWrite', userData)
    this.writeSqe(opWrite, link ? sqeFlagIoLink : 0, fd, fileOffset, address(buffer), buffer.byteLength, 0, userData)
    this.operations.set(userData, { kind: 'low', buffer })
  }

  /** IORING_OP_FSYNC, with IORING_FSYNC_DATASYNC when `datasync` (fdatasync semantics). */
  prepFsync(fd: number, userData: number, datasync: boolean, link: boolean): void {
    this.assertOpen('prepFsync')
    assertFd('prepFsync', fd)
    this.assertLowLevelSlot('prepFsync', userData)
    this.writeSqe(opFsync, link ? sqeFlagIoLink : 0, fd, 0, 0n, 0, datasync ? fsyncDatasync : 0, userData)
    this.operations.set(userData, { kind: 'low', buffer: null })
  }

  /**
   * Submit what is queued, wait off the JavaScript thread until at least `waitCount` CQEs are ready, reap every
   * ready CQE, then call back. At most one wait per ring.
   */
  submitAndWait(waitCount: number, callback: (error: Error | null, completions: Completion[]) => void): void {
    this.assertOpen('submitAndWait')
    if (!Number.isInteger(waitCount) || waitCount < 0 || waitCount > this.cqEntries) {
      throw new RangeError(`submitAndWait: waitCount must be an integer from 0 to ${this.cqEntries}, got ${waitCount}`)
    }
    assert(!this.waiting, 'submitAndWait: a wait is already in flight on this ring')
    assert(
      this.durableOperations === 0 && this.pendingWrites.length === 0,
      'submitAndWait: writeDurable is running its own completion loop on this ring; do not mix the two',
    )
    this.flushSq()
    this.waiting = true
    this.enterAndWait(waitCount, 0, (error) => {
      this.waiting = false
      const completions = error === null ? this.reapCompletions() : []
      for (const completion of completions) {
        const operation = this.operations.get(completion.userData)
        assert(operation !== undefined && operation.kind === 'low', `CQE for unknown userData ${completion.userData}`)
        this.operations.delete(completion.userData) // Releases the buffer: the kernel is done with it.
      }
      callback(error, completions)
    })
  }

  // ---- high level -------------------------------------------------------------------------------------------

  /**
   * Write all of `buffer` at `fileOffset` and fdatasync, as a write linked to an fsync; short writes are
   * resubmitted (with a new linked fsync) until done. Calls back once, with null only when durable.
   */
  writeDurable(fd: number, buffer: Uint8Array, fileOffset: number, callback: (error: RingIoError | null) => void): void {
    this.assertOpen('writeDurable')
    assertWriteArguments('writeDurable', fd, buffer, fileOffset)
    if (typeof callback !== 'function') throw new TypeError('writeDurable: callback must be a function')
    assert(
      this.durableOperations > 0 || this.operations.size === 0,
      'writeDurable: low-level operations are in flight on this ring; do not mix the two',
    )
    const durable: DurableWrite = {
      fd,
      buffer,
      fileOffset,
      callback,
      bytesWritten: 0,
      zeroProgressWrites: 0,
      writeResult: null,
      fsyncResult: null,
    }
    if (this.pendingWrites.length > 0 || !this.prepDurable(durable)) {
      if (this.pendingWrites.length >= pendingWritesMax) {
        throw new Error(
          `writeDurable: ${pendingWritesMax} writes (pendingWritesMax) already wait for ring space; ` +
            'the caller must bound how many durable writes it has in flight',
        )
      }
      this.pendingWrites.push(durable)
    }
    this.kick()
  }

  /** munmap every mapping and close the ring fd. Nothing may be in flight: the kernel would still use them. */
  close(): void {
    this.assertOpen('close')
    assert(!this.waiting, 'close: a wait is in flight')
    assert(this.operations.size === 0, `close: ${this.operations.size} operations are in flight`)
    assert(this.pendingWrites.length === 0, `close: ${this.pendingWrites.length} durable writes are pending`)
    this.closed = true // From here on no method touches a view: every one starts with assertOpen.
    for (const mapping of this.mappings) {
      const result = munmap(mapping.pointer, mapping.length)
      assert(result === 0, `close: munmap failed with ${errnoName(errno())}`)
    }
    this.mappings.length = 0
    const result = closeFd(this.fd)
    assert(result === 0, `close: close(${this.fd}) failed with ${errnoName(errno())}`)
  }

  // ---- internals --------------------------------------------------------------------------------------------

  private assertOpen(caller: string): void {
    assert(!this.closed, `${caller}: the ring is closed`)
  }

  /** Free SQ slots, counting SQEs prepared here but not yet consumed by the kernel. */
  private sqSpace(): number {
    const kernelHead = Atomics.load(this.sqRing, this.sqHeadIndex)
    return this.sqEntries - ((this.sqeTail - kernelHead) >>> 0)
  }

  /** SQEs published or prepared that the kernel has not consumed: always what to pass as to_submit. */
  private unsubmitted(): number {
    return (this.sqeTail - Atomics.load(this.sqRing, this.sqHeadIndex)) >>> 0
  }

  private hasRoomFor(count: number): boolean {
    return this.sqSpace() >= count && this.operations.size + count <= this.cqEntries
  }

  private assertLowLevelSlot(caller: string, userData: number): void {
    if (!Number.isSafeInteger(userData) || userData < 0 || userData >= durableUserDataFirst) {
      throw new RangeError(`${caller}: userData must be an integer from 0 to 2^48 - 1, got ${userData}`)
    }
    assert(this.durableOperations === 0, `${caller}: writeDurable is running on this ring; do not mix the two`)
    assert(!this.operations.has(userData), `${caller}: userData ${userData} is already in flight`)
    if (!this.hasRoomFor(1)) {
      throw new Error(
        `${caller}: the ring is full (${this.sqEntries} SQ entries, ${this.cqEntries} operations in flight at most); ` +
          'submit and reap before queuing more',
      )
    }
  }

  private writeSqe(
    opcode: number,
    flags: number,
    fd: number,
    fileOffset: number,
    bufferAddress: bigint,
    length: number,
    opFlags: number,
    userData: number,
  ): void {
    const offset = (this.sqeTail & this.sqMask) * sqeBytes
    const sqe = this.sqes
    this.sqeBytesView.fill(0, offset, offset + sqeBytes)
    sqe.setUint8(offset + sqeOpcode, opcode)
    sqe.setUint8(offset + sqeFlags, flags)
    sqe.setInt32(offset + sqeFd, fd, true)
    sqe.setUint32(offset + sqeOff, fileOffset % 2 ** 32, true)
    sqe.setUint32(offset + sqeOff + 4, Math.floor(fileOffset / 2 ** 32), true)
    sqe.setBigUint64(offset + sqeAddr, bufferAddress, true)
    sqe.setUint32(offset + sqeLen, length, true)
    sqe.setUint32(offset + sqeOpFlags, opFlags, true)
    sqe.setUint32(offset + sqeUserData, userData % 2 ** 32, true)
    sqe.setUint32(offset + sqeUserData + 4, Math.floor(userData / 2 ** 32), true)
    this.sqeTail = (this.sqeTail + 1) >>> 0
  }

  /** Publish prepared SQEs: after this the kernel may consume them (a link pair is always published whole). */
  private flushSq(): void {
    Atomics.store(this.sqRing, this.sqTailIndex, this.sqeTail)
  }

  private reapCompletions(): Completion[] {
    const tail = Atomics.load(this.cqRing, this.cqTailIndex)
    let head = Atomics.load(this.cqRing, this.cqHeadIndex)
    const completions: Completion[] = []
    for (let reaped = 0; head !== tail; reaped++) {
      assert(reaped < this.cqEntries, 'reapCompletions: more CQEs than the CQ holds')
      const offset = this.cqesOffset + (head & this.cqMask) * cqeBytes
      const userData = this.cqes.getUint32(offset + cqeUserData, true) + this.cqes.getUint32(offset + cqeUserData + 4, true) * 2 ** 32
      completions.push({
        userData,
        result: this.cqes.getInt32(offset + cqeResult, true),
        flags: this.cqes.getUint32(offset + cqeFlags, true),
      })
      head = (head + 1) >>> 0
    }
    Atomics.store(this.cqRing, this.cqHeadIndex, head) // The kernel may reuse these CQ slots from here on.
    return completions
  }

  /**
   * io_uring_enter(to_submit, waitCount, GETEVENTS), where this ring waits (see the top of this file), then
   * `callback`. to_submit is recomputed from the kernel's head on every attempt: after a failed enter, what was
   * "just queued" may or may not have been consumed.
   */
  private enterAndWait(waitCount: number, retries: number, callback: (error: Error | null) => void): void {
    if (this.wait === 'threadpool') {
      ioUringEnterAsync(this.fd, this.unsubmitted(), waitCount, enterGetEvents, (koffiError, result, errnoValue) => {
        if (koffiError !== null) return callback(koffiError)
        this.afterEnter(result, errnoValue, waitCount, retries, callback)
      })
      return
    }
    // Submit at once, so the kernel works while the thread finishes what is already queued for it.
    if (this.unsubmitted() > 0) this.submitNow()
    setImmediate(() => {
      if (this.cqReady() >= waitCount) return callback(null)
      const result = ioUringEnter(this.fd, this.unsubmitted(), waitCount, enterGetEvents)
      this.afterEnter(result, result < 0 ? errno() : 0, waitCount, retries, callback)
    })
  }

  private afterEnter(
    result: number,
    errnoValue: number,
    waitCount: number,
    retries: number,
    callback: (error: Error | null) => void,
  ): void {
    if (result >= 0) return callback(null)
    if (errnoOutcome('enter', errnoValue) !== 'retry') {
      return callback(enterFailureFor(errnoValue, `ring fd ${this.fd}, waiting for ${waitCount}`))
    }
    // EAGAIN, EBUSY: the kernel needs CQ space or memory that reaping frees, so return if anything is ready.
    // EINTR: nothing is wrong; wait again.
    if (errnoValue !== EINTR && this.cqReady() > 0) return callback(null)
    if (retries < enterRetriesMax) return this.enterAndWait(waitCount, retries + 1, callback)
    return callback(new Error(`io_uring_enter: ${errnoName(errnoValue)} ${enterRetriesMax} times in a row (enterRetriesMax)`))
  }

  private cqReady(): number {
    return (Atomics.load(this.cqRing, this.cqTailIndex) - Atomics.load(this.cqRing, this.cqHeadIndex)) >>> 0
  }

  /** Prepare the write + linked fdatasync for the rest of `durable`, or return false when there is no room. */
  private prepDurable(durable: DurableWrite): boolean {
    if (!this.hasRoomFor(2)) return false
    const rest = durable.buffer.subarray(durable.bytesWritten)
    // Submitted from the JavaScript thread (a wait is already in flight, or the ring waits on this thread):
    // keep a large copy into the page cache off it.
    const fromThisThread = this.waiting || this.wait === 'thread'
    const flags = sqeFlagIoLink | (fromThisThread && rest.byteLength > inlineWriteBytesMax ? sqeFlagAsync : 0)
    const writeUserData = this.nextDurableUserData++
    const fsyncUserData = this.nextDurableUserData++
    durable.writeResult = null
    durable.fsyncResult = null
    this.writeSqe(opWrite, flags, durable.fd, durable.fileOffset + durable.bytesWritten, address(rest), rest.byteLength, 0, writeUserData)
    this.writeSqe(opFsync, 0, durable.fd, 0, 0n, 0, fsyncDatasync, fsyncUserData)
    this.flushSq()
    this.operations.set(writeUserData, { kind: 'write', durable, buffer: rest })
    this.operations.set(fsyncUserData, { kind: 'fsync', durable })
    this.durableOperations += 2
    return true
  }

  /** Get prepared SQEs to the kernel and make sure a wait is outstanding while durable writes are in flight. */
  private kick(): void {
    if (this.closed) return
    if (!this.waiting) {
      if (this.durableOperations > 0) this.startLoopWait()
      return
    }
    if (this.unsubmitted() === 0) return
    // A wait is in flight and will not see new SQEs: submit now, without waiting.
    this.submitNow()
  }

  /** io_uring_enter(to_submit) from this thread, never waiting. */
  private submitNow(): void {
    const result = ioUringEnter(this.fd, this.unsubmitted(), 0, 0)
    if (result >= 0) return
    const errnoValue = errno()
    // A 'retry' errno needs nothing here: the outstanding wait returns when something completes, and the next
    // wait submits these.
    if (errnoOutcome('enter', errnoValue) === 'retry') return
    throw enterFailureFor(errnoValue, `ring fd ${this.fd}, submitting`)
  }

  private startLoopWait(): void {
    assert(!this.waiting, 'startLoopWait: a wait is already in flight')
    this.waiting = true
    // On the threadpool, return at the first completion; on this thread, which blocks, once all are in.
    const waitCount = this.wait === 'threadpool' ? 1 : Math.min(this.operations.size, this.cqEntries)
    this.enterAndWait(waitCount, 0, (error) => {
      this.waiting = false
      // The ring itself is broken (its fd closed underneath it, or a kernel refusing it): no operation in flight
      // can be trusted to complete, and their buffers may still be read. Fail loudly.
      if (error !== null) throw error
      const actions = this.completeDurable(this.reapCompletions())
      // Every action runs, even after one throws (a callback, or a RingBugError for a write that met a bug), so
      // that the other writes of this reap still call back; the first thrown escapes, uncaught, after the kick.
      let firstThrown: unknown = null
      for (const action of actions) {
        try {
          action()
        } catch (thrown) {
          firstThrown ??= thrown
        }
      }
      this.kick()
      if (firstThrown !== null) throw firstThrown
    })
  }

  /** Apply reaped CQEs to their durable writes; return the callbacks and resubmissions to run, in order. */
  private completeDurable(completions: Completion[]): Array<() => void> {
    const actions: Array<() => void> = []
    for (const completion of completions) {
      const operation = this.operations.get(completion.userData)
      assert(operation !== undefined, `CQE for unknown userData ${completion.userData}`)
      assert(operation.kind !== 'low', 'low-level CQE reaped by the writeDurable loop')
      this.operations.delete(completion.userData) // Releases the buffer: the kernel is done with it.
      this.durableOperations -= 1
      const durable = operation.durable
      if (operation.kind === 'write') durable.writeResult = completion.result
      else durable.fsyncResult = completion.result
      if (durable.writeResult === null || durable.fsyncResult === null) continue
      const action = this.decide(durable)
      if (action !== null) actions.push(action)
    }
    while (this.pendingWrites.length > 0 && this.prepDurable(this.pendingWrites[0]!)) this.pendingWrites.shift()
    return actions
  }

  /** Both CQEs of one write + fsync pair are in: finish, fail, or resubmit the rest. */
  private decide(durable: DurableWrite): (() => void) | null {
    const writeResult = durable.writeResult!
    const fsyncResult = durable.fsyncResult!
    const remaining = durable.buffer.byteLength - durable.bytesWritten
    const offset = durable.fileOffset + durable.bytesWritten
    if (writeResult < 0) return this.failure(durable, 'write', -writeResult, offset)
    assert(writeResult <= remaining, `write CQE reports ${writeResult} bytes of ${remaining} asked`)
    if (writeResult < remaining) {
      // A short write fails the link: the fsync was canceled (-ECANCELED) or, if the kernel ran it, covers
      // only part of the data. Either way the rest goes again with a new linked fsync.
      if (fsyncResult < 0 && fsyncResult !== -ECANCELED) return this.failure(durable, 'fsync', -fsyncResult, offset)
      durable.bytesWritten += writeResult
      durable.zeroProgressWrites = writeResult === 0 ? durable.zeroProgressWrites + 1 : 0
      if (durable.zeroProgressWrites >= zeroProgressWritesMax) {
        const error = new RingIoError(
          'write',
          EIO,
          `fd ${durable.fd} at offset ${offset}: ${zeroProgressWritesMax} writes in a row wrote nothing`,
        )
        return () => durable.callback(error)
      }
      this.shortWrites += 1
      return () => {
        try {
          this.shortWriteHook?.(durable.fd, durable.bytesWritten, durable.buffer.byteLength - durable.bytesWritten)
        } finally {
          // Even when the hook throws: the write must still finish and call back once.
          if (this.pendingWrites.length > 0 || !this.prepDurable(durable)) this.pendingWrites.unshift(durable)
        }
      }
    }
    // Includes -ECANCELED after a complete write: nothing should cancel it, so it is reported, not retried.
    if (fsyncResult < 0) return this.failure(durable, 'fsync', -fsyncResult, offset)
    durable.bytesWritten += writeResult
    return () => durable.callback(null)
  }

  /**
   * The action for a failed CQE of `durable`: call back with the RingIoError, or, for a programmer error, throw
   * the RingBugError from where actions run (never from the reaping loop) and never call back.
   */
  private failure(durable: DurableWrite, operation: 'write' | 'fsync', errnoValue: number, offset: number): () => void {
    const error = failureFor(operation, errnoValue, durable.fd, offset)
    if (error instanceof RingBugError) {
      return () => {
        throw error
      }
    }
    return () => durable.callback(error)
  }
}

/** Set up a tiny ring and close it: whether io_uring works here, and if not, why. */
export function probeIoUring(): { available: true } | { available: false; errno: number; reason: string } {
  let ring: Ring
  try {
    ring = Ring.setup(2)
  } catch (error) {
    if (error instanceof RingSetupError) return { available: false, errno: error.errno, reason: error.reason }
    throw error
  }
  ring.close()
  return { available: true }
}

/** At load: `fields` ([name, offset, bytes], in the kernel's order) follow one another and fill `structBytes`. */
function assertLayout(
  struct: string,
  structBytes: number,
  fields: ReadonlyArray<readonly [name: string, offset: number, bytes: number]>,
): void {
  let end = 0
  for (const [name, offset, bytes] of fields) {
    assert.equal(offset, end, `${struct}.${name} is at ${offset}, but the field before it ends at ${end}`)
    end = offset + bytes
  }
  assert.equal(end, structBytes, `${struct} is ${structBytes} bytes, but its fields end at ${end}`)
}

function assertFd(caller: string, fd: number): void {
  if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new RangeError(`${caller}: fd must be a non-negative integer, got ${fd}`)
  }
}

function assertWriteArguments(caller: string, fd: number, buffer: Uint8Array, fileOffset: number): void {
  assertFd(caller, fd)
  if (!(buffer instanceof Uint8Array)) throw new TypeError(`${caller}: buffer must be a Uint8Array`)
  if (buffer.byteLength === 0 || buffer.byteLength > writeBytesMax) {
    throw new RangeError(`${caller}: buffer must hold 1 to ${writeBytesMax} bytes (writeBytesMax), got ${buffer.byteLength}`)
  }
  if (!Number.isSafeInteger(fileOffset) || fileOffset < 0) {
    throw new RangeError(`${caller}: fileOffset must be a non-negative safe integer, got ${fileOffset}`)
  }
}
