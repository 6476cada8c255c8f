// Everything that crosses the thread boundary between the façade (main thread) and a shard worker:
// the request and response messages, and the layout of the shared-memory stats slots. Nothing else
// crosses, and nothing in this file does any work beyond describing and (de)serialising those shapes.
//
// Transport: one Piscina pool of exactly one thread per shard (the worker is pinned to its shard).
// A request is one Piscina task; its response is the task's result. Write requests stay in flight until
// the batch holding them is durable, so a shard has many tasks in flight at once.

import type { EngineErrorCode, IoFailure } from './errors.js'
import type { RecoveryReport } from './recovery.js'

export type BackendChoice = 'auto' | 'io_uring' | 'fs'
export type BackendName = 'io_uring' | 'fs' | 'simulated'

export interface OpenRequest {
  type: 'open'
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
}

export interface OpenResponse {
  backend: BackendName
  /** Why this backend runs (e.g. why io_uring could not be set up). */
  backendReason: string
  recovery: RecoveryReport
}

/**
 * Records for the log, encoded by the façade (record.ts format, CRCs zero: the worker seals them).
 * All of one request lands in one log batch: a request is atomic on its shard.
 */
export interface WriteRequest {
  type: 'write'
  records: Uint8Array
  recordCount: number
}

/** Keys packed as (u32 length, bytes)…; the answer is packed values (see table.ts). */
export interface ReadRequest {
  type: 'read'
  keys: Uint8Array
  count: number
}

export interface CloseRequest {
  type: 'close'
}

export type ShardRequest = OpenRequest | WriteRequest | ReadRequest | CloseRequest

/** A failure as it crosses the boundary: the façade turns it back into an EngineError. */
export interface ErrorDescription {
  code: EngineErrorCode
  message: string
  io?: IoFailure
  details?: Record<string, unknown>
}

export type ShardResponse<Value> = { ok: true; value: Value } | { ok: false; error: ErrorDescription }

// Stats slots: a Float64Array over a SharedArrayBuffer, written only by the worker, read by the façade
// without locks (a stats read may see one batch half-counted; it never sees a torn double).
export const statsSlotBatches = 0
export const statsSlotRecords = 1
export const statsSlotBytes = 2
/** Latency histogram of a batch's write + fdatasync, in microseconds: see latencyBucket. */
export const statsSlotLatencyFirst = 3
export const latencySubBuckets = 8
export const latencyBucketCount = 32 * latencySubBuckets
export const statsSlotCount = statsSlotLatencyFirst + latencyBucketCount
export const statsBytes = statsSlotCount * Float64Array.BYTES_PER_ELEMENT

/** Log-linear bucket of a latency: 8 linear steps per power of two (at most 12.5% error). */
export function latencyBucket(microseconds: number): number {
  const value = Math.max(1, Math.floor(microseconds))
  const exponent = Math.min(31, 31 - Math.clz32(value))
  const step = Math.floor(((value / 2 ** exponent) - 1) * latencySubBuckets)
  return exponent * latencySubBuckets + Math.min(latencySubBuckets - 1, step)
}

/** The lowest latency a bucket holds, in microseconds. */
export function latencyBucketFloor(bucket: number): number {
  const exponent = Math.floor(bucket / latencySubBuckets)
  return 2 ** exponent * (1 + (bucket % latencySubBuckets) / latencySubBuckets)
}
