// @ringkv/engine: a durable key-value store. Every write's promise resolves only after an fdatasync
// covering it has succeeded.

export {
  open,
  attach,
  Engine,
  shardsDefault,
  threadpoolSizeDefault,
  type OpenOptions,
  type BatchOperation,
  type EngineStats,
} from './engine.js'
export { shardOf } from './routing.js'
export type { ArgumentError, ArgumentErrorCode, IteratorOptions, RangeOptions } from './input.js'
export { EngineIterator, MappedIterator, pageBytesMax, pageEntriesMax, type Entry } from './iterator.js'
export { chunkBytes, type ShardStats } from './shard-client.js'
export { threadLingerMs } from './shard-thread.js'
export { EngineError, type EngineErrorCode, type IoFailure, type RecoveryReport, type DatabaseShare } from '@ringkv/workers'
