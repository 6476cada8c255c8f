// @ringkv/workers: a shard (table, write-ahead log, recovery) and the pieces the façade needs to reach
// one: the protocol, the directory layout, the record encoder and the error type.

export { EngineError, type EngineErrorCode, type IoFailure } from './errors.js'
export * from './protocol.js'
export {
  recordHeaderBytes,
  recordKindPut,
  recordKindDelete,
  keyBytesMax,
  valueBytesMax,
  recordBytes,
  encodeRecord,
  batchHeaderBytes,
} from './record.js'
export { absentLength, forEachPackedAnswer, forEachPackedKey, packKeys } from './table.js'
export { DatabaseDirectory, shardDirectory, shardsMax } from './directory.js'
export type { RecoveryReport } from './recovery.js'
export { Shard, segmentBytesDefault, type ShardOptions } from './shard.js'
export { segmentName, segmentNumbers, completionRecordBytes } from './completion.js'
export type { Storage, StorageFile } from './storage.js'
