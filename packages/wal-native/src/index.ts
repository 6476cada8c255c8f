// The public face of @ringkv/wal-native: rings and their errors, errno names and what the ring does with each
// errno, and file locks. Nothing about keys or records.

export {
  Ring,
  RingBugError,
  RingIoError,
  RingSetupError,
  probeIoUring,
  enterRetriesMax,
  inlineWriteBytesMax,
  pendingWritesMax,
  ringEntriesMax,
  writeBytesMax,
  zeroProgressWritesMax,
} from './ring.js'
export type { Completion, RingOptions, RingWait } from './ring.js'
export { lockFile } from './lock.js'
export { errnoCases, errnoName, errnoOutcome } from './errno.js'
export type { ErrnoCase, ErrnoOutcome, RingOperation } from './errno.js'
