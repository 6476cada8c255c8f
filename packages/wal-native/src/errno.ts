// Errno numbers (Linux, x86_64 and asm-generic) that the ring can meet, each with the kernel's meaning, and what
// the ring does with each one.
//
// Owns: the number -> name table, and `errnoCases`, the decision table from (operation, errno) to an outcome.
// Promises: `errnoName` names every number in the table and gives a stable, number-carrying name (`ERRNO_<n>`)
// for anything else, so an unexpected errno is never silently renamed; `errnoOutcome` answers from
// `errnoCases` alone, and 'unexpected' for anything not in it. The table is checked when this module loads:
// one row per (operation, errno), every errno named here, and only io_uring_enter retried.

import assert from 'node:assert/strict'

export const EPERM = 1 // Operation not permitted: io_uring_disabled sysctl, a seccomp filter, or flock on a bad fd kind.
export const ENOENT = 2 // No such file or directory.
export const EINTR = 4 // Interrupted system call: a signal arrived while io_uring_enter waited; retry.
export const EIO = 5 // I/O error: the device failed a write or a flush; the page cache state is now unknown.
export const ENXIO = 6 // No such device or address: the ring is being torn down.
export const EBADF = 9 // Bad file descriptor: closed, or not open for the operation (a write to an O_RDONLY fd).
export const EAGAIN = 11 // Try again (== EWOULDBLOCK): no memory for a request right now, or a lock is held.
export const EWOULDBLOCK = EAGAIN // Operation would block: flock(LOCK_NB) found the lock held.
export const ENOMEM = 12 // Out of memory: kernel allocation, or RLIMIT_MEMLOCK for ring memory before Linux 5.12.
export const EACCES = 13 // Permission denied.
export const EFAULT = 14 // Bad address: a buffer or params pointer the kernel cannot read or write.
export const EBUSY = 16 // Device or resource busy: CQ overflow backlog, io_uring_enter cannot submit now; retry.
export const EEXIST = 17 // File exists: io_uring_enter from a task other than the SINGLE_ISSUER submitter.
export const ENODEV = 19 // No such device: the file (or its file system) does not support the operation.
export const EISDIR = 21 // Is a directory.
export const EINVAL = 22 // Invalid argument: bad SQE, bad flags, unaligned O_DIRECT buffer, bad entries.
export const ENFILE = 23 // File table overflow: the system is out of file descriptors.
export const EMFILE = 24 // Too many open files: this process is out of file descriptors.
export const EFBIG = 27 // File too large: past RLIMIT_FSIZE or the file system's maximum file size.
export const ENOSPC = 28 // No space left on device.
export const ESPIPE = 29 // Illegal seek: a positioned write to a pipe or socket.
export const EROFS = 30 // Read-only file system.
export const EPIPE = 32 // Broken pipe.
export const ENOLCK = 37 // No record locks available: the kernel could not allocate a lock record.
export const ENOSYS = 38 // Function not implemented: the kernel has no io_uring (older than 5.1, or compiled out).
export const EBADR = 53 // Invalid request descriptor: CQ overflow entries were lost (no IORING_FEAT_NODROP).
export const ETIME = 62 // Timer expired.
export const EOVERFLOW = 75 // Value too large for defined data type: offset + length overflows loff_t.
export const EBADFD = 77 // File descriptor in bad state: the ring is disabled (IORING_SETUP_R_DISABLED).
export const EOPNOTSUPP = 95 // Operation not supported: an opcode this file or kernel does not handle.
export const EDQUOT = 122 // Disk quota exceeded.
export const ECANCELED = 125 // Operation canceled: a linked request whose predecessor failed or was short.

const names = new Map<number, string>([
  [EPERM, 'EPERM'],
  [ENOENT, 'ENOENT'],
  [EINTR, 'EINTR'],
  [EIO, 'EIO'],
  [ENXIO, 'ENXIO'],
  [EBADF, 'EBADF'],
  [EAGAIN, 'EAGAIN'],
  [ENOMEM, 'ENOMEM'],
  [EACCES, 'EACCES'],
  [EFAULT, 'EFAULT'],
  [EBUSY, 'EBUSY'],
  [EEXIST, 'EEXIST'],
  [ENODEV, 'ENODEV'],
  [EISDIR, 'EISDIR'],
  [EINVAL, 'EINVAL'],
  [ENFILE, 'ENFILE'],
  [EMFILE, 'EMFILE'],
  [EFBIG, 'EFBIG'],
  [ENOSPC, 'ENOSPC'],
  [ESPIPE, 'ESPIPE'],
  [EROFS, 'EROFS'],
  [EPIPE, 'EPIPE'],
  [ENOLCK, 'ENOLCK'],
  [ENOSYS, 'ENOSYS'],
  [EBADR, 'EBADR'],
  [ETIME, 'ETIME'],
  [EOVERFLOW, 'EOVERFLOW'],
  [EBADFD, 'EBADFD'],
  [EOPNOTSUPP, 'EOPNOTSUPP'],
  [EDQUOT, 'EDQUOT'],
  [ECANCELED, 'ECANCELED'],
])

/** 'EIO' for 5; 'ERRNO_<n>' for a number outside the table. */
export function errnoName(errno: number): string {
  return names.get(errno) ?? `ERRNO_${errno}`
}

/** What can fail with an errno inside the ring: io_uring_enter on the ring fd, or a write or fsync CQE. */
export type RingOperation = 'enter' | 'write' | 'fsync'

/**
 * What the ring does with an errno:
 * - 'retry': transient; io_uring_enter is called again (enterRetriesMax times in a row at most).
 * - 'io': an operating error: writeDurable calls back with a RingIoError (which the engine reports as IO_ERROR).
 * - 'bug': a programmer error in ringkv or its caller: the ring throws RingBugError and never calls back.
 * - 'unexpected': not in the table: an error naming the errno and the operation (a RingIoError for a write or
 *   fsync, as today, since nobody has shown it to be a bug; a plain Error for io_uring_enter).
 */
export type ErrnoOutcome = 'retry' | 'io' | 'bug' | 'unexpected'

export interface ErrnoCase {
  readonly operation: RingOperation
  readonly errno: number
  readonly outcome: Exclude<ErrnoOutcome, 'unexpected'>
  /** Why the kernel answers this errno to this operation: it ends the error's message. */
  readonly meaning: string
}

/** Every errno the ring expects from each operation, and what it does with it. New cases are rows added. */
export const errnoCases: readonly ErrnoCase[] = [
  // io_uring_enter(2) on the ring's own fd. Only these are retried: a CQE's errno is the operation's answer.
  { operation: 'enter', errno: EINTR, outcome: 'retry', meaning: 'a signal interrupted the wait' },
  { operation: 'enter', errno: EAGAIN, outcome: 'retry', meaning: 'the kernel could not allocate requests right now' },
  { operation: 'enter', errno: EBUSY, outcome: 'retry', meaning: 'CQ overflow backlog: reaping makes room' },
  { operation: 'enter', errno: EBADF, outcome: 'bug', meaning: 'the ring fd is not open: closed underneath the ring' },
  { operation: 'enter', errno: EBADFD, outcome: 'bug', meaning: 'the ring is disabled (never set up R_DISABLED here)' },
  { operation: 'enter', errno: EFAULT, outcome: 'bug', meaning: 'an argument points at memory the kernel cannot read' },
  { operation: 'enter', errno: EINVAL, outcome: 'bug', meaning: 'flags or arguments the kernel rejects' },
  { operation: 'enter', errno: EOPNOTSUPP, outcome: 'bug', meaning: 'the fd is not an io_uring' },
  { operation: 'enter', errno: EEXIST, outcome: 'bug', meaning: 'SINGLE_ISSUER violated (never set up here)' },

  // A write CQE (IORING_OP_WRITE) on a regular file.
  { operation: 'write', errno: EIO, outcome: 'io', meaning: 'the device failed' },
  { operation: 'write', errno: ENOSPC, outcome: 'io', meaning: 'the file system is full' },
  { operation: 'write', errno: EDQUOT, outcome: 'io', meaning: "the user's quota is exhausted" },
  {
    operation: 'write',
    errno: EFBIG,
    outcome: 'io',
    meaning: "past RLIMIT_FSIZE or the file system's maximum file size",
  },
  {
    operation: 'write',
    errno: EROFS,
    outcome: 'io',
    meaning: 'the file system is read-only (often remounted so after an I/O error)',
  },
  { operation: 'write', errno: EPERM, outcome: 'io', meaning: 'the file is append-only or immutable' },
  {
    operation: 'write',
    errno: EINVAL,
    outcome: 'io',
    meaning: 'the fd cannot be written this way (O_DIRECT alignment, a file kind without write_iter)',
  },
  { operation: 'write', errno: EOVERFLOW, outcome: 'io', meaning: 'offset + length overflows loff_t' },
  { operation: 'write', errno: ESPIPE, outcome: 'io', meaning: 'a positioned write to a pipe or socket' },
  { operation: 'write', errno: EISDIR, outcome: 'io', meaning: 'the fd is a directory' },
  { operation: 'write', errno: EOPNOTSUPP, outcome: 'io', meaning: 'the file does not support this operation' },
  {
    operation: 'write',
    errno: EBADF,
    outcome: 'bug',
    meaning: 'the fd is closed or not open for writing; the caller must own a writable fd until the callback',
  },
  { operation: 'write', errno: EFAULT, outcome: 'bug', meaning: 'the buffer is at an address the kernel cannot read' },

  // An fsync CQE (IORING_OP_FSYNC with IORING_FSYNC_DATASYNC), linked after a write.
  {
    operation: 'fsync',
    errno: EIO,
    outcome: 'io',
    meaning: 'write-back failed: the data written since the last good fsync is in an unknown state',
  },
  { operation: 'fsync', errno: ENOSPC, outcome: 'io', meaning: 'delayed allocation found no space at write-back' },
  { operation: 'fsync', errno: EDQUOT, outcome: 'io', meaning: 'delayed allocation exceeded the quota at write-back' },
  { operation: 'fsync', errno: EROFS, outcome: 'io', meaning: 'the file system went read-only' },
  {
    operation: 'fsync',
    errno: EINVAL,
    outcome: 'io',
    meaning: 'the fd does not support synchronization (a pipe, a socket)',
  },
  {
    operation: 'fsync',
    errno: EBADF,
    outcome: 'bug',
    meaning: 'the fd was closed before the fsync ran; the caller must own it until the callback',
  },
]

const casesByKey = new Map<string, ErrnoCase>()
for (const row of errnoCases) {
  const key = `${row.operation} ${row.errno}`
  assert(!casesByKey.has(key), `errnoCases: two rows for ${row.operation} ${errnoName(row.errno)}`)
  assert(names.has(row.errno), `errnoCases: errno ${row.errno} has no name in errno.ts`)
  assert(row.outcome !== 'retry' || row.operation === 'enter', 'errnoCases: only io_uring_enter is retried')
  casesByKey.set(key, row)
}

/** The row for this errno from this operation, or undefined: an unexpected errno. */
export function errnoCase(operation: RingOperation, errno: number): ErrnoCase | undefined {
  return casesByKey.get(`${operation} ${errno}`)
}

/** What the ring does when `operation` fails with `errno`. */
export function errnoOutcome(operation: RingOperation, errno: number): ErrnoOutcome {
  return errnoCase(operation, errno)?.outcome ?? 'unexpected'
}
