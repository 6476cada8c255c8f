// @ringkv/workers: what runs in a shard's worker thread (the shard: its table, its two logs, recovery, and
// the storage under them) and what the façade needs to reach one: the protocol (protocol.ts, everything
// that crosses the thread boundary), the database directory, the record encoder and the error type.
//
// Layout (the arrows point down; nothing imports upward):
//   worker.ts       the thread's entry point (Piscina)  -> shard.ts
//   shard.ts        one shard: storage + log + table    -> log/, checkpoint/, table/, storage/
//   log/            group commit (log.ts), segment files (segment-writer.ts), recovery (recovery.ts)
//   checkpoint/     a checkpoint of the table (checkpoint-writer.ts), a backup of the shard (backup.ts)
//   table/          the shard's key -> value table (table.ts interface, wasm-table.ts), its ordered view,
//                   and the reader of that view the façade runs on its own thread (ordered-reader.ts)
//   iterators.ts    a shard's open iterators and the snapshot each reads
//   storage/        the backends under the log: io_uring (uring.ts), node:fs (fs.ts)
//   format/         on-disk bytes: records and batches, completion records, segment names, the checksum
//   protocol.ts     messages and shared-memory slots that cross threads; errors.ts, directory.ts
//   inspect.ts      a read-only look into a directory (manifest, files, recovery's findings): the CLI's
//   testing/        test doubles (simulated and held storage, the seeded simulator): not published

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
} from './format/record.js'
export { DatabaseDirectory, prepareBackupTarget, readDatabaseManifest, shardDirectory, shardsMax, type Manifest } from './directory.js'
export { inspectDatabase, type DatabaseInspection, type ShardInspection } from './inspect.js'
export { Shard, segmentBytesDefault, type ShardOptions } from './shard.js'
export { snapshotBytesMaxDefault, rangeFrom, type IteratorPage } from './iterators.js'
export { OrderedReader, type InPlaceRead } from './table/ordered-reader.js'
export type { RangeRead } from './table/table.js'
export { completionRecordBytes } from './format/completion.js'
export { segmentName, segmentNumbers, type LogKind } from './format/segment-files.js'
export type { Storage, StorageFile } from './storage/storage.js'
export { syncDirectory } from './storage/storage.js'
