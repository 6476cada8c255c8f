// Everything that crosses a thread boundary: between a client of the database (the façade in the thread that
// opened it, or a handle in another of the application's threads) and a shard worker, and between the opener
// and those other threads (a DatabaseShare). The request and response messages, and the layout of the
// shared-memory slots. Nothing else crosses, and nothing in this file does any work beyond describing and
// (de)serialising those shapes.
//
// Transport:
// - Lifecycle: one Piscina pool of exactly one thread per shard (the worker is pinned to its shard), owned by
//   the thread that opened the database. Only `open` and `close` are Piscina tasks.
// - Everything else goes over a connection: a MessagePort whose other end the shard's worker listens on.
//   The opener's connection comes with `open`; each handle's with `connect`, sent over a connection that
//   already exists. A request is a ChannelMessage, its answer a ChannelAnswer with the same id; requests of one
//   connection are taken in the order sent. Write requests stay unanswered until the batch holding them is
//   durable, so a connection has many requests in flight at once, and a shard many connections.

import type { EngineErrorCode, IoFailure } from './errors.js'
import type { MessagePort } from 'node:worker_threads'
import type { WasmMemory } from './table/layout.js'

export type BackendChoice = 'auto' | 'io_uring' | 'fs'
export type BackendName = 'io_uring' | 'fs' | 'simulated'

export interface OpenRequest {
  type: 'open'
  /** The opener's connection (see the top): the worker answers what arrives on it. */
  port: MessagePort
  /** That connection's reservation slot (flow slots, below). */
  reserved: SharedArrayBuffer
  /** The shard's flow slots (below). */
  flow: SharedArrayBuffer
  /** The shard's own directory (…/shard-000). */
  directory: string
  shard: number
  backend: BackendChoice
  /** A batch (one write + one fdatasync) carries at most this many record bytes, unless one request is larger. */
  batchBytesMax: number
  recovery: 'strict' | 'truncate'
  /** Intent segment size in bytes. */
  segmentBytes: number
  /** Stats slots the worker writes and the façade reads (layout below). */
  stats: SharedArrayBuffer
  /** When the shard checkpoints by itself (false: only when asked). */
  autoCheckpoint: AutoCheckpoint | false
}

/**
 * The automatic checkpoint policy of a shard: a checkpoint starts once the intent log holds at least
 * max(logBytes, liveRatio x live bytes) of batches after the current checkpoint.
 */
export interface AutoCheckpoint {
  logBytes: number
  liveRatio: number
}

/** What recovery did when the shard opened (log/recovery.ts decides; this is what the caller sees). */
export interface RecoveryReport {
  batchesReplayed: number
  recordsReplayed: number
  /** Intent log bytes of the replayed batches, as they lie in their segments (whole sectors: format/sectors.ts). */
  bytesReplayed: number
  /** Intent log bytes written in this life of their segment, cut from the tail as the unacknowledged in-flight batch (0 for a clean log). */
  tailBytesDropped: number
  /** What was dropped from the tail and why, when anything was. */
  tailReason: string | undefined
  /** Whether the last thing in the completion log is a close record (a clean shutdown). */
  cleanShutdown: boolean
  /**
   * Set when recovery 'truncate' dropped damaged data: exactly what was lost. Damage to the log: the
   * batches from firstBatchDropped on (0 when none). Damage to the checkpoint: the blocks of it that did
   * not hold and were not loaded (the log after it is replayed in full).
   */
  repaired:
    | {
        firstBatchDropped: number
        batchesDropped: number
        intentBytesDropped: number
        checkpointBlocksDropped: number
        reason: string
      }
    | undefined
  /** The sequence of the checkpoint the table was loaded from (0: none; the logs were replayed from batch 1). */
  checkpointSequence: number
  /** Records loaded from that checkpoint. */
  checkpointRecords: number
  durationMs: number
}

export interface OpenResponse {
  backend: BackendName
  /** Why this backend runs (e.g. why io_uring could not be set up). */
  backendReason: string
  recovery: RecoveryReport
  /** The shard's ordered view, for the façade to read short ranges without a message (undefined: a table without one). */
  orderedView: OrderedViewShare | undefined
}

/**
 * A shard table's memory, shared, and the view state beside it (Int32 slots below): an OrderedReader on the
 * façade's thread reads the ordered view through them (table/ordered-reader.ts says how, and when it may not).
 */
export interface OrderedViewShare {
  memory: WasmMemory
  state: SharedArrayBuffer
}

/** The view's sequence word: odd while the shard has durable batches not yet in its table, or is applying them. */
export const viewSlotSequence = 0
/** The ordered view's root node address, as of the last even sequence. */
export const viewSlotRoot = 1
export const viewStateBytes = 2 * Int32Array.BYTES_PER_ELEMENT

/**
 * Records for the log, encoded by the façade (format/record.ts, CRCs zero: the worker seals them).
 * All of one request lands in one log batch: a request is atomic on its shard.
 */
export interface WriteRequest {
  type: 'write'
  records: Uint8Array
  recordCount: number
}

/** Keys packed as (u32 length, bytes)… (packKeys); the answer is packed values (packAnswers). */
export interface ReadRequest {
  type: 'read'
  keys: Uint8Array
  count: number
}

/** A range of keys in bytewise order; a missing bound does not limit that side. */
export interface KeyRange {
  low: Uint8Array | undefined
  /** Whether `low` itself is left out (gt) or in (gte). */
  lowExclusive: boolean
  high: Uint8Array | undefined
  highExclusive: boolean
}

/** What an iterator reads: its range, its direction, how many entries at most (Infinity: all), and whether values too. */
export interface IteratorOpen extends KeyRange {
  reverse: boolean
  limit: number
  values: boolean
}

/**
 * The next page of iterator `id` (ids are the façade's, one per iterator): answered with an IteratorPage
 * (iterators.ts) of at most `entries` entries and about `bytes` bytes. The first request carries `open`,
 * and the shard takes the iterator's snapshot then; `seek` moves it first (to the first key >= the target,
 * or <= in reverse, within its range).
 */
export interface IteratePage {
  id: number
  open?: IteratorOpen
  seek?: Uint8Array
  /** With seek: the entries the iterator may still give (pages read ahead before a seek are dropped). */
  remaining?: number
  entries: number
  bytes: number
}

/**
 * The iterator requests of one tick, as one message (as a tick's reads are): first the iterators to forget
 * (their snapshots go), then the pages, in order. Answered at once, one answer per page, each its own
 * success or failure.
 */
export interface IterateRequest {
  type: 'iterate'
  closes: number[]
  pages: IteratePage[]
}

/**
 * Deletes every key in `range` durably: answered once the deletes are durable. It takes effect after every
 * write the shard took before it (they land, then the keys they put are deleted too).
 */
export interface ClearRequest {
  type: 'clear'
  range: KeyRange
}

export interface CloseRequest {
  type: 'close'
}

/**
 * Checkpoints the shard now (after the checkpoint in progress, if any) and retires the log segments it
 * covers; answered once that checkpoint is current and durable.
 */
export interface CheckpointRequest {
  type: 'checkpoint'
}

/** What a checkpoint that was made current wrote, and what it cost the shard's thread: a checkpoint's answer. */
export interface CheckpointResult {
  sequence: number
  records: number
  /** The file's size. */
  bytes: number
  durationMs: number
  /** The longest the checkpoint held the shard's thread at once (one step: walk a piece, checksum it). */
  stepMsMax: number
}

/**
 * Backs the shard up into `directory` (checkpoint/backup.ts): answered with a BackupResult once every file of
 * the backup is durable.
 */
export interface BackupRequest {
  type: 'backup'
  directory: string
}

/** What a shard's backup holds: every batch up to `sequence`, in `files` files, `bytes` of them copied (the rest linked). */
export interface BackupResult {
  sequence: number
  files: number
  bytes: number
}

/**
 * Opens another connection to the shard: the worker answers what arrives on `port` from now on (messages sent
 * there before are kept and answered too). Answered ok once it listens. Iterator ids are the connection's own.
 */
export interface ConnectRequest {
  type: 'connect'
  port: MessagePort
  /** The connection's reservation slot (flow slots, below). */
  reserved: SharedArrayBuffer
}

/** The Piscina tasks of a shard's worker: its life. */
export type LifecycleRequest = OpenRequest | CloseRequest

/** What a connection carries. */
export type ChannelRequest = WriteRequest | ReadRequest | CheckpointRequest | BackupRequest | IterateRequest | ClearRequest | ConnectRequest

export type ShardRequest = LifecycleRequest | ChannelRequest

/** A request on a connection; `id` is the sender's, unique among its requests not yet answered. */
export interface ChannelMessage {
  id: number
  request: ChannelRequest
}

/** The answer to the request `id` of the same connection. */
export interface ChannelAnswer {
  id: number
  response: ShardResponse<unknown>
}

/** A failure as it crosses the boundary: the façade turns it back into an EngineError. */
export interface ErrorDescription {
  code: EngineErrorCode
  message: string
  io?: IoFailure
  details?: Record<string, unknown>
}

export type ShardResponse<Value> = { ok: true; value: Value } | { ok: false; error: ErrorDescription }

// Flow slots: the bound on a shard's bytes in flight, across every connection of every thread.
// - The shard's: an Int32Array over a SharedArrayBuffer, shared by every client of the shard and its worker.
//   `flowSlotBytesInFlight`: the record bytes reserved by clients, queued there or sent and not yet answered.
//   `flowSlotWaiters`: clients waiting for it to go down.
// - Each connection's: one Int32 slot (`reserved`), the part of the shard's count that connection reserved.
// A client reserves a write's `flowBytes` in both before queueing it (its own slot first, then the shard's,
// with compareExchange so the shard's never passes the bound unless it was 0); the worker gives them back
// in both when it answers the write request holding it (acknowledged or failed) and wakes the waiters
// (Atomics.notify) if the count says any wait. When a connection closes, its thread exited or was
// terminated, the worker gives back what that connection reserved and never sent (its slot less what the
// worker took from it and has not answered), and takes nothing more from it: nothing stays counted for a
// thread that is gone.
export const flowSlotBytesInFlight = 0
export const flowSlotWaiters = 1
export const flowStateBytes = 2 * Int32Array.BYTES_PER_ELEMENT
export const reservedStateBytes = Int32Array.BYTES_PER_ELEMENT

/**
 * What a write request of `recordBytes` counts in the flow slots: its size, capped so the Int32 slots cannot
 * overflow. A request larger than a write chunk travels alone (shard-client.ts), so a message's count is the
 * sum of its requests' counts.
 */
export function flowBytes(recordBytes: number): number {
  return Math.min(recordBytes, 1 << 28)
}

// A database shared with another thread: what the opener's share() gives, to be posted to that thread
// (postMessage or workerData, with `transferList`) and made into a client there (attach). One share serves one
// thread: its ports move with it.

/** One shard, as a handle reaches it. */
export interface ShardShare {
  shard: number
  /** The handle's own connection to the shard, and that connection's reservation slot. */
  port: MessagePort
  reserved: SharedArrayBuffer
  stats: SharedArrayBuffer
  flow: SharedArrayBuffer
  orderedView: OrderedViewShare | undefined
  backend: BackendName
  backendReason: string
  recovery: RecoveryReport
}

export const databaseShareKind = 'ringkv.share/1'

export interface DatabaseShare {
  kind: typeof databaseShareKind
  directory: string
  bytesInFlightMax: number
  /** The database's state slot (Int32 at `databaseSlotClosed`): 1 once the opener started closing it. */
  state: SharedArrayBuffer
  shards: ShardShare[]
  /** The ports above: what postMessage must transfer. */
  transferList: MessagePort[]
}

export const databaseSlotClosed = 0
export const databaseStateBytes = Int32Array.BYTES_PER_ELEMENT

// Stats slots: a Float64Array over a SharedArrayBuffer, written only by the worker, read by the façade
// without locks (a stats read may see one batch half-counted; it never sees a torn double).
export const statsSlotBatches = 0
export const statsSlotRecords = 1
export const statsSlotBytes = 2
/** Latency histogram of a batch's write + fdatasync, in microseconds: see latencyBucket. */
export const statsSlotLatencyFirst = 3
export const latencySubBuckets = 8
export const latencyBucketCount = 32 * latencySubBuckets
/** The sum of those latencies, in microseconds: with the batch count, their mean. */
export const statsSlotLatencyTotal = statsSlotLatencyFirst + latencyBucketCount
/** Live entries, and their bytes as records (16 + key + value each), as of the last batch applied. */
export const statsSlotLiveEntries = statsSlotLatencyTotal + 1
export const statsSlotLiveBytes = statsSlotLatencyTotal + 2
/** Bytes on disk of the log segments (both logs) and of the checkpoint files: refreshed every 256 batches and at each checkpoint. */
export const statsSlotLogDiskBytes = statsSlotLatencyTotal + 3
export const statsSlotCheckpointDiskBytes = statsSlotLatencyTotal + 4
/** Checkpoints made current since the shard opened, and checkpoints given up (I/O errors). */
export const statsSlotCheckpoints = statsSlotLatencyTotal + 5
export const statsSlotCheckpointFailures = statsSlotLatencyTotal + 6
/** The current checkpoint's sequence (0: none). */
export const statsSlotCheckpointSequence = statsSlotLatencyTotal + 7
/** The last checkpoint: its duration, its size, the longest it held the shard's thread at once, and the slowest batch while it ran. */
export const statsSlotCheckpointDurationMs = statsSlotLatencyTotal + 8
export const statsSlotCheckpointBytes = statsSlotLatencyTotal + 9
export const statsSlotCheckpointStepMsMax = statsSlotLatencyTotal + 10
export const statsSlotCheckpointBatchLatencyMaxUs = statsSlotLatencyTotal + 11
/** Log segments made by reusing a retired one (both logs), since the shard opened. */
export const statsSlotSegmentsReused = statsSlotLatencyTotal + 12
/** Open iterators, and the bytes of before-images their snapshots hold (iterators.ts). */
export const statsSlotIteratorsOpen = statsSlotLatencyTotal + 13
export const statsSlotIteratorSnapshotBytes = statsSlotLatencyTotal + 14
export const statsSlotCount = statsSlotLatencyTotal + 15
export const statsBytes = statsSlotCount * Float64Array.BYTES_PER_ELEMENT

/** Log-linear bucket of a latency: 8 linear steps per power of two (at most 12.5% error). */
export function latencyBucket(microseconds: number): number {
  const value = Math.max(1, Math.floor(microseconds))
  const exponent = Math.min(31, 31 - Math.clz32(value))
  const step = Math.floor((value / 2 ** exponent - 1) * latencySubBuckets)
  return exponent * latencySubBuckets + Math.min(latencySubBuckets - 1, step)
}

/** The lowest latency a bucket holds, in microseconds. */
export function latencyBucketFloor(bucket: number): number {
  const exponent = Math.floor(bucket / latencySubBuckets)
  return 2 ** exponent * (1 + (bucket % latencySubBuckets) / latencySubBuckets)
}

// Packed keys and answers: how a read request carries its keys and its answer carries the values, one
// buffer each way however many keys. The table takes and returns them as they are (table/table.ts).
//   keys:    repeated (u32 little-endian length, key bytes)
//   answers: repeated (u32 little-endian length, value bytes); a length of 0xFFFFFFFF (`absentLength`)
//            means "no such key" and carries no bytes.

export const absentLength = 0xffff_ffff

/** Packs keys the way `getPacked` takes them: repeated (u32 little-endian length, key bytes). */
export function packKeys(keys: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let bytes = 0
  for (const key of keys) bytes += 4 + key.length
  const packed = new Uint8Array(bytes)
  const view = new DataView(packed.buffer)
  let offset = 0
  for (const key of keys) {
    view.setUint32(offset, key.length, true)
    packed.set(key, offset + 4)
    offset += 4 + key.length
  }
  return packed
}

/** Reads packed keys (u32 length, bytes) one by one; shared by every table and by the façade's tests. */
export function forEachPackedKey(keys: Uint8Array, count: number, visit: (key: Uint8Array) => void): void {
  const view = new DataView(keys.buffer, keys.byteOffset, keys.byteLength)
  let offset = 0
  for (let index = 0; index < count; index++) {
    const length = view.getUint32(offset, true)
    offset += 4
    if (offset + length > keys.length) throw new RangeError(`packed key ${index} runs past its buffer`)
    visit(keys.subarray(offset, offset + length))
    offset += length
  }
  if (offset !== keys.length) throw new RangeError('packed keys carry bytes after the last key')
}

/** Packs answers (undefined = absent) the way `getPacked` returns them. */
export function packAnswers(answers: readonly (Uint8Array | undefined)[]): Uint8Array {
  let bytes = 0
  for (const answer of answers) bytes += 4 + (answer === undefined ? 0 : answer.length)
  const packed = new Uint8Array(bytes)
  const view = new DataView(packed.buffer)
  let offset = 0
  for (const answer of answers) {
    if (answer === undefined) {
      view.setUint32(offset, absentLength, true)
      offset += 4
    } else {
      view.setUint32(offset, answer.length, true)
      packed.set(answer, offset + 4)
      offset += 4 + answer.length
    }
  }
  return packed
}

/**
 * Reads `count` packed answers as `getPacked` returns them, one by one: undefined for an absent key, else
 * a view into `answers` (not a copy).
 */
export function forEachPackedAnswer(answers: Uint8Array, count: number, visit: (value: Uint8Array | undefined) => void): void {
  const view = new DataView(answers.buffer, answers.byteOffset, answers.byteLength)
  let offset = 0
  for (let index = 0; index < count; index++) {
    const length = view.getUint32(offset, true)
    offset += 4
    if (length === absentLength) {
      visit(undefined)
    } else {
      visit(answers.subarray(offset, offset + length))
      offset += length
    }
  }
}

// Packed entries: how an iterator's answer carries its entries, one buffer however many.
//   with values: repeated (u32 little-endian key length, key bytes, u32 value length, value bytes)
//   keys only:   repeated (u32 little-endian key length, key bytes)

/** Packs entries as a range read answers them (table/table.ts readRange). */
export function packEntries(entries: readonly (readonly [Uint8Array, Uint8Array])[], values: boolean): Uint8Array {
  let bytes = 0
  for (const [key, value] of entries) bytes += 4 + key.length + (values ? 4 + value.length : 0)
  const packed = new Uint8Array(bytes)
  const view = new DataView(packed.buffer)
  let offset = 0
  for (const [key, value] of entries) {
    view.setUint32(offset, key.length, true)
    packed.set(key, offset + 4)
    offset += 4 + key.length
    if (!values) continue
    view.setUint32(offset, value.length, true)
    packed.set(value, offset + 4)
    offset += 4 + value.length
  }
  return packed
}

/** The last key of `count` packed entries (a view into `packed`), undefined when there are none. */
export function lastPackedKey(packed: Uint8Array, count: number, values: boolean): Uint8Array | undefined {
  if (count === 0) return undefined
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength)
  let offset = 0
  for (let index = 0; index < count - 1; index++) {
    offset += 4 + view.getUint32(offset, true)
    if (values) offset += 4 + view.getUint32(offset, true)
  }
  return packed.subarray(offset + 4, offset + 4 + view.getUint32(offset, true))
}

/**
 * Reads `count` packed entries one by one: views into `packed` (not copies); without values, the value
 * given is undefined.
 */
export function forEachPackedEntry(
  packed: Uint8Array,
  count: number,
  values: boolean,
  visit: (key: Uint8Array, value: Uint8Array | undefined) => void,
): void {
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength)
  let offset = 0
  for (let index = 0; index < count; index++) {
    const keyLength = view.getUint32(offset, true)
    const key = packed.subarray(offset + 4, offset + 4 + keyLength)
    offset += 4 + keyLength
    if (!values) {
      visit(key, undefined)
      continue
    }
    const valueLength = view.getUint32(offset, true)
    visit(key, packed.subarray(offset + 4, offset + 4 + valueLength))
    offset += 4 + valueLength
  }
  if (offset !== packed.length) throw new RangeError('packed entries carry bytes after the last entry')
}
