// The public face of @ringkv/wal-native: rings, errno names and file locks. Nothing about keys or records.

export {
  Ring,
  RingIoError,
  RingSetupError,
  probeIoUring,
  enterRetriesMax,
  inlineWriteBytesMax,
  pendingWritesMax,
  ringEntriesMax,
  writeBytesMax,
  zeroProgressWritesMax,
} from './ring.js';
export type { Completion, RingOptions, RingWait } from './ring.js';
export { lockFile } from './lock.js';
export { errnoName } from './errno.js';
