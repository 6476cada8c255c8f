// Advisory whole-file locks, so that two engines never open one data directory.
//
// Owns nothing but the flock call. Promises: `lockFile` never blocks. flock locks belong to the open file
// description, so a second open() of the same file, in this process or another, is refused while the first
// holds the lock; closing the fd (every dup of it) releases it.

import { EBADF, EINTR, EINVAL, ENOLCK, EWOULDBLOCK, errnoName } from './errno.js'
import { errno, flock, lockExclusive, lockNonBlocking } from './native.js'

/** flock(fd, LOCK_EX | LOCK_NB): true when this fd now holds the lock, false when another holds it. */
export function lockFile(fd: number): boolean {
  if (!Number.isInteger(fd) || fd < 0) throw new RangeError(`lockFile: fd must be a non-negative integer, got ${fd}`)
  for (let attempt = 0; attempt < lockAttemptsMax; attempt++) {
    if (flock(fd, lockExclusive | lockNonBlocking) === 0) return true
    const errnoValue = errno()
    switch (errnoValue) {
      case EWOULDBLOCK: // The lock is held by another open file description.
        return false
      case EINTR: // A signal arrived; LOCK_NB makes the retry immediate.
        continue
      case EBADF: // fd is not an open file descriptor: a programmer error upstream.
      case EINVAL: // The operation is invalid for this fd.
      case ENOLCK: // The kernel is out of memory for lock records.
      default: // Unexpected: named with its number below.
        throw new Error(`lockFile: flock(${fd}) failed with ${errnoName(errnoValue)} (errno ${errnoValue})`)
    }
  }
  throw new Error(`lockFile: flock(${fd}) interrupted ${lockAttemptsMax} times in a row`)
}

/** EINTR retries before lockFile gives up: a signal storm, not a held lock. */
const lockAttemptsMax = 16
