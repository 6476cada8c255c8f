// The façade's side of one shard: a Piscina pool of exactly one thread (so the worker is pinned to its
// shard and keeps its state), the writes and reads gathered in the current chunk, and the bound on bytes
// in flight. It owns those queues and promises:
// - writes made in the same tick travel to the worker as one write message, cut into several once a
//   message holds `chunkBytes` (so that the worker seals and commits one while the next is encoded);
//   reads made in the same tick travel as one read message;
// - a write's promise resolves only when the worker says its batch is durable. The writes of one message
//   are one request to the worker, acknowledged or failed together, so they share one promise: callers of
//   put() and delete() in one chunk get the same Promise object (no promise and no closures per write);
// - at most `bytesInFlightMax` record bytes are queued or in flight; past that, callers wait in order
//   (backpressure) instead of memory growing. One request larger than the bound still goes, alone.

import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { Piscina } from 'piscina'
import {
  EngineError,
  OrderedReader,
  forEachPackedAnswer,
  encodeRecord,
  packKeys,
  recordBytes,
  statsBytes,
  statsSlotBatches,
  statsSlotBytes,
  statsSlotLatencyFirst,
  statsSlotLatencyTotal,
  statsSlotRecords,
  statsSlotLiveEntries,
  statsSlotLiveBytes,
  statsSlotLogDiskBytes,
  statsSlotCheckpointDiskBytes,
  statsSlotCheckpoints,
  statsSlotCheckpointFailures,
  statsSlotCheckpointSequence,
  statsSlotSegmentsReused,
  statsSlotIteratorsOpen,
  statsSlotIteratorSnapshotBytes,
  statsSlotCheckpointDurationMs,
  statsSlotCheckpointBytes,
  statsSlotCheckpointStepMsMax,
  statsSlotCheckpointBatchLatencyMaxUs,
  latencyBucketCount,
  latencyBucketFloor,
  type BackendChoice,
  type BackendName,
  type AutoCheckpoint,
  type BackupResult,
  type CheckpointResult,
  type ErrorDescription,
  type IteratePage,
  type IteratorPage,
  type KeyRange,
  type OpenResponse,
  type InPlaceRead,
  type RecoveryReport,
  type ShardRequest,
  type ShardResponse,
} from '@ringkv/workers'

const workerPath = pathToFileURL(createRequire(import.meta.url).resolve('@ringkv/workers/worker')).href

/** Write tasks a shard's worker runs at once (each stays open until its batch is durable). */
export const tasksPerShardMax = 4096
/**
 * A write message is sent as soon as it holds this many record bytes, without waiting for the end of
 * the tick. Measured with 4096 clients awaiting 16 B / 100 B puts on one shard: with one message per
 * tick, each batch was the whole closed loop, so the main thread, the worker and the disk took turns
 * (about 470k puts/s); cut at 64 KiB (about 500 records) they overlap (about 0.8–1M puts/s). 16 KiB did
 * as well there but made twice as many, smaller batches at 256 clients, and fewer puts/s.
 */
export const chunkBytes = 64 * 1024
/** A chunk's buffer: a chunk is posted once it holds chunkBytes, so the slack takes the record that crosses it. */
const writeBufferBytes = chunkBytes + 1024
assert(writeBufferBytes > chunkBytes && chunkBytes % 4096 === 0, 'a chunk buffer has room past chunkBytes')

export interface ShardStats {
  shard: number
  backend: BackendName
  backendReason: string
  /** Group commits (one write + one fdatasync each). */
  batches: number
  records: number
  /** Record bytes made durable. */
  bytes: number
  /** Latency of a batch's write + fdatasync, in microseconds (log-linear buckets, ±12.5%). */
  fsyncLatencyUsP50: number
  fsyncLatencyUsP99: number
  /** Their mean, exact (not bucketed); 0 before the first batch. */
  fsyncLatencyUsMean: number
  bytesInFlight: number
  /** Live entries, and their bytes as records (16 + key + value each): what a checkpoint holds. */
  liveEntries: number
  liveBytes: number
  /** Bytes on disk of the log segments (both logs, zero-filled space included) and of checkpoint files. */
  logDiskBytes: number
  checkpointDiskBytes: number
  /** Checkpoints made current since open, and given up (I/O errors). */
  checkpoints: number
  checkpointFailures: number
  /** The batch sequence the current checkpoint covers (0: none). */
  checkpointSequence: number
  /** Log segments made since open by reusing one a checkpoint retired, instead of a new zero-filled file. */
  segmentsReused: number
  /** Iterators open on the shard, and the bytes their snapshots hold (before-images: at most 64 MiB per shard). */
  iteratorsOpen: number
  iteratorSnapshotBytes: number
  /**
   * Iterators that read this shard in place since open (their whole answer on this shard in one page, read
   * from its memory on the caller's thread, without a message: OrderedReader in @ringkv/workers).
   */
  pagesReadInPlace: number
  /**
   * The last checkpoint made since open: how long it took, its size, the longest it held the shard's
   * thread at once (the stall it can cause a write), and the slowest batch (write + fdatasync) while it ran.
   */
  lastCheckpoint: { durationMs: number; bytes: number; stepMsMax: number; batchLatencyUsMax: number } | undefined
}

export interface WriteOperation {
  kind: number
  key: Uint8Array
  value: Uint8Array | undefined
}

interface Settler {
  resolve: (value: undefined) => void
  reject: (error: Error) => void
}

/** The promise every write in one chunk returns, and how to settle it. */
class Chunk implements Settler {
  readonly promise: Promise<undefined>
  resolve!: (value: undefined) => void
  reject!: (error: Error) => void
  constructor() {
    this.promise = new Promise<undefined>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
  }
}

interface ReadSettler {
  resolve: (value: Uint8Array | undefined) => void
  reject: (error: Error) => void
}

interface Blocked {
  operations: WriteOperation[]
  bytes: number
  settler: Settler
}

export function errorFrom(description: ErrorDescription): EngineError {
  return new EngineError(description.code, description.message, {
    cause: description.io,
    details: description.details,
  })
}

export class ShardClient {
  backend: BackendName = 'fs'
  backendReason = ''
  recovery: RecoveryReport | undefined
  private readonly pool: Piscina
  private readonly stats: Float64Array
  /** The shard's ordered view, read in place (undefined: none shared, or the client is closed). */
  private reader: OrderedReader | undefined
  private pagesReadInPlace = 0
  private closed = false
  private readonly statsBuffer: SharedArrayBuffer

  private writeBuffer = new Uint8Array(writeBufferBytes)
  private writeView = new DataView(this.writeBuffer.buffer)
  private writeUsed = 0
  private writeCount = 0
  /** The current chunk's promise, made by its first write. */
  private chunk: Chunk | undefined
  /** Writes that waited for room (backpressure) and joined the current chunk: each has its own promise. */
  private chunkLate: Settler[] = []

  private readKeys: Uint8Array[] = []
  private readSettlers: ReadSettler[] = []

  private pages: IteratePage[] = []
  private pageSettlers: { resolve: (page: IteratorPage) => void; reject: (error: Error) => void }[] = []
  private iteratorCloses: number[] = []
  private closeSettlers: (() => void)[] = []

  private postScheduled = false
  private bytesInFlight = 0
  private readonly blocked: Blocked[] = []
  private tasksInFlight = 0
  private idleWaiters: (() => void)[] = []
  private failure: EngineError | undefined

  constructor(
    readonly shard: number,
    private readonly bytesInFlightMax: number,
  ) {
    this.statsBuffer = new SharedArrayBuffer(statsBytes)
    this.stats = new Float64Array(this.statsBuffer)
    this.pool = new Piscina({
      filename: workerPath,
      name: 'default',
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: tasksPerShardMax,
      // The default, 'sync', parks an idle worker in Atomics.wait, which would stall its completion loop.
      atomics: 'disabled',
      idleTimeout: Number.POSITIVE_INFINITY,
    })
  }

  async open(
    directory: string,
    backend: BackendChoice,
    batchBytesMax: number,
    recovery: 'strict' | 'truncate',
    segmentBytes: number,
    autoCheckpoint: AutoCheckpoint | false,
  ): Promise<void> {
    const response = (await this.send({
      type: 'open',
      directory,
      shard: this.shard,
      backend,
      batchBytesMax,
      recovery,
      segmentBytes,
      stats: this.statsBuffer,
      autoCheckpoint,
    })) as ShardResponse<OpenResponse>
    if (!response.ok) throw errorFrom(response.error)
    this.backend = response.value.backend
    this.backendReason = response.value.backendReason
    this.recovery = response.value.recovery
    this.reader = response.value.orderedView === undefined ? undefined : OrderedReader.from(response.value.orderedView)
  }

  /**
   * An iterator's answer on this shard, read in place from the shard's ordered view (OrderedReader): no
   * message, and no snapshot kept on the shard. Given only when the page is the whole answer (the range
   * ends in it, or it holds `limit` entries); undefined when it is not, or cannot be read so now: ask the shard.
   */
  readInPlace(
    range: KeyRange,
    reverse: boolean,
    limit: number,
    pageEntries: number,
    budgetBytes: number,
    values: boolean,
  ): InPlaceRead | undefined {
    const page = this.reader?.read(range, reverse, Math.min(limit, pageEntries), budgetBytes, values)
    if (page === undefined || (page.more && page.keys.length < limit)) return undefined
    this.pagesReadInPlace++
    return page
  }

  /** Queues one record (a put or a delete); resolves once the batch holding it is durable. */
  writeOne(kind: number, key: Uint8Array, value: Uint8Array | undefined): Promise<undefined> {
    const bytes = recordBytes(key.length, value === undefined ? 0 : value.length)
    if (this.failure !== undefined || !this.hasRoomFor(bytes)) return this.write([{ kind, key, value }])
    const promise = this.joinChunk(bytes)
    this.writeUsed = encodeRecord(this.writeBuffer, this.writeView, this.writeUsed, kind, key, value)
    this.writeCount += 1
    this.afterEnqueue()
    return promise
  }

  /** Queues writes that must land in one log batch; resolves once that batch is durable. */
  write(operations: WriteOperation[]): Promise<undefined> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    let bytes = 0
    for (const operation of operations) bytes += recordBytes(operation.key.length, operation.value?.length ?? 0)
    if (!this.hasRoomFor(bytes)) {
      return new Promise<undefined>((resolve, reject) => {
        // Keep the caller's bytes as they are now: a caller may reuse its Uint8Array after the call.
        // new Uint8Array(bytes) copies; a Buffer's slice() would not (it is a view, like subarray).
        const copies = operations.map((operation) => ({
          kind: operation.kind,
          key: new Uint8Array(operation.key),
          value: operation.value === undefined ? undefined : new Uint8Array(operation.value),
        }))
        this.blocked.push({ operations: copies, bytes, settler: { resolve, reject } })
      })
    }
    const promise = this.joinChunk(bytes)
    this.enqueueWrite(operations)
    return promise
  }

  /** Queues a read for the end of the tick: `key` is read then, so it must be the caller's own copy. */
  read(key: Uint8Array): Promise<Uint8Array | undefined> {
    return new Promise((resolve, reject) => {
      this.readKeys.push(key)
      this.readSettlers.push({ resolve, reject })
      this.schedulePost()
    })
  }

  snapshot(): ShardStats {
    let total = 0
    for (let bucket = 0; bucket < latencyBucketCount; bucket++) total += this.stats[statsSlotLatencyFirst + bucket]!
    const percentile = (fraction: number): number => {
      if (total === 0) return 0
      const rank = Math.ceil(total * fraction)
      let seen = 0
      for (let bucket = 0; bucket < latencyBucketCount; bucket++) {
        seen += this.stats[statsSlotLatencyFirst + bucket]!
        if (seen >= rank) return latencyBucketFloor(bucket)
      }
      return latencyBucketFloor(latencyBucketCount - 1)
    }
    return {
      shard: this.shard,
      backend: this.backend,
      backendReason: this.backendReason,
      batches: this.stats[statsSlotBatches]!,
      records: this.stats[statsSlotRecords]!,
      bytes: this.stats[statsSlotBytes]!,
      fsyncLatencyUsP50: percentile(0.5),
      fsyncLatencyUsP99: percentile(0.99),
      fsyncLatencyUsMean: this.stats[statsSlotBatches]! === 0 ? 0 : this.stats[statsSlotLatencyTotal]! / this.stats[statsSlotBatches]!,
      bytesInFlight: this.bytesInFlight,
      liveEntries: this.stats[statsSlotLiveEntries]!,
      liveBytes: this.stats[statsSlotLiveBytes]!,
      logDiskBytes: this.stats[statsSlotLogDiskBytes]!,
      checkpointDiskBytes: this.stats[statsSlotCheckpointDiskBytes]!,
      checkpoints: this.stats[statsSlotCheckpoints]!,
      checkpointFailures: this.stats[statsSlotCheckpointFailures]!,
      checkpointSequence: this.stats[statsSlotCheckpointSequence]!,
      segmentsReused: this.stats[statsSlotSegmentsReused]!,
      iteratorsOpen: this.stats[statsSlotIteratorsOpen]!,
      iteratorSnapshotBytes: this.stats[statsSlotIteratorSnapshotBytes]!,
      pagesReadInPlace: this.pagesReadInPlace,
      lastCheckpoint:
        this.stats[statsSlotCheckpoints]! === 0
          ? undefined
          : {
              durationMs: this.stats[statsSlotCheckpointDurationMs]!,
              bytes: this.stats[statsSlotCheckpointBytes]!,
              stepMsMax: this.stats[statsSlotCheckpointStepMsMax]!,
              batchLatencyUsMax: this.stats[statsSlotCheckpointBatchLatencyMaxUs]!,
            },
    }
  }

  /**
   * Checkpoints the shard as of every batch durable when the worker takes the request, and retires the log
   * it covers. Not counted as a task in flight: close() does not wait for it, it stops it (ENGINE_CLOSED).
   */
  async checkpoint(): Promise<CheckpointResult | undefined> {
    if (this.failure !== undefined) throw this.failure
    let response: ShardResponse<unknown>
    try {
      response = (await this.pool.run({ type: 'checkpoint' } satisfies ShardRequest)) as ShardResponse<unknown>
    } catch (error) {
      throw new EngineError('SHARD_FAILED', `shard ${this.shard}'s worker failed`, { cause: error })
    }
    if (!response.ok) throw errorFrom(response.error)
    return response.value as CheckpointResult | undefined
  }

  /** Backs the shard up into `directory` (a shard directory of the backup); not counted as a task in flight, like checkpoint(). */
  async backup(directory: string): Promise<BackupResult> {
    if (this.failure !== undefined) throw this.failure
    let response: ShardResponse<unknown>
    try {
      response = (await this.pool.run({ type: 'backup', directory } satisfies ShardRequest)) as ShardResponse<unknown>
    } catch (error) {
      throw new EngineError('SHARD_FAILED', `shard ${this.shard}'s worker failed`, { cause: error })
    }
    if (!response.ok) throw errorFrom(response.error)
    return response.value as BackupResult
  }

  /**
   * The next page of an iterator, as the shard reads it (workers/src/iterators.ts). The pages asked for in
   * one tick travel as one message, as reads do.
   */
  iterate(page: IteratePage): Promise<IteratorPage> {
    return new Promise((resolve, reject) => {
      this.pages.push(page)
      this.pageSettlers.push({ resolve, reject })
      this.schedulePost()
    })
  }

  /** Forgets an iterator's snapshot on the shard, with the next message of pages; never fails (a closed shard holds none). */
  closeIterator(id: number): Promise<void> {
    if (this.closed) return Promise.resolve()
    return new Promise((resolve) => {
      this.iteratorCloses.push(id)
      this.closeSettlers.push(resolve)
      this.schedulePost()
    })
  }

  /** Deletes every key of `range` on this shard, after every write queued before it; resolves once durable. */
  async clear(range: KeyRange): Promise<void> {
    // The writes queued now go first: the shard starts the clear once they are answered.
    this.post()
    const response = await this.send({ type: 'clear', range }).catch((error: unknown) => {
      throw new EngineError('SHARD_FAILED', `shard ${this.shard}'s worker failed`, { cause: error })
    })
    if (!response.ok) throw errorFrom(response.error)
  }

  /** Posts what is queued to the worker, waits until nothing is queued or in flight, closes the shard and its thread. */
  async close(): Promise<void> {
    this.reader = undefined
    this.post()
    if (this.tasksInFlight > 0 || this.blocked.length > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
    }
    try {
      await this.send({ type: 'close' })
    } finally {
      this.closed = true
      await this.pool.destroy()
    }
  }

  /** Whether `bytes` more may go now: nobody waits before them, and they fit under the bound. */
  private hasRoomFor(bytes: number): boolean {
    return this.blocked.length === 0 && (this.bytesInFlight === 0 || this.bytesInFlight + bytes <= this.bytesInFlightMax)
  }

  /** Makes room for `bytes` in the current chunk and counts them in flight; returns the chunk's promise. */
  private joinChunk(bytes: number): Promise<undefined> {
    this.makeRoom(bytes)
    this.chunk ??= new Chunk()
    return this.chunk.promise
  }

  /** Sends the current chunk first if `bytes` would not fit in it; counts them in flight. */
  private makeRoom(bytes: number): void {
    if (this.writeCount > 0 && this.writeUsed + bytes > this.writeBuffer.length) this.postWrites()
    if (bytes > this.writeBuffer.length) {
      // One request larger than a chunk travels alone, in a buffer of its own size.
      this.writeBuffer = new Uint8Array(bytes)
      this.writeView = new DataView(this.writeBuffer.buffer)
    }
    this.bytesInFlight += bytes
  }

  private enqueueWrite(operations: WriteOperation[]): void {
    for (const operation of operations) {
      this.writeUsed = encodeRecord(this.writeBuffer, this.writeView, this.writeUsed, operation.kind, operation.key, operation.value)
    }
    this.writeCount += operations.length
    this.afterEnqueue()
  }

  /** Sends the chunk once it is full enough; otherwise at the end of the tick. */
  private afterEnqueue(): void {
    if (this.writeUsed >= chunkBytes) this.postWrites()
    else this.schedulePost()
  }

  private schedulePost(): void {
    if (this.postScheduled) return
    this.postScheduled = true
    setImmediate(() => this.post())
  }

  private post(): void {
    this.postScheduled = false
    if (this.pages.length > 0 || this.iteratorCloses.length > 0) this.postPages()
    if (this.readKeys.length > 0) this.postReads()
    if (this.writeCount > 0) this.postWrites()
  }

  private postPages(): void {
    const request: ShardRequest = { type: 'iterate', closes: this.iteratorCloses, pages: this.pages }
    const settlers = this.pageSettlers
    const closed = this.closeSettlers
    this.pages = []
    this.pageSettlers = []
    this.iteratorCloses = []
    this.closeSettlers = []
    const fail = (error: EngineError): void => {
      for (const settler of settlers) settler.reject(error)
    }
    this.send(request).then(
      (response) => {
        for (const done of closed) done()
        if (!response.ok) return fail(errorFrom(response.error))
        ;(response.value as ShardResponse<IteratorPage>[]).forEach((answer, index) => {
          if (answer.ok) settlers[index]!.resolve(answer.value)
          else settlers[index]!.reject(errorFrom(answer.error))
        })
      },
      (error: unknown) => {
        for (const done of closed) done()
        fail(new EngineError('SHARD_FAILED', `shard ${this.shard}'s worker failed`, { cause: error }))
      },
    )
  }

  private postWrites(): void {
    // Reads and iterators made before these writes go first, so that none of them sees a later write.
    if (this.pages.length > 0 || this.iteratorCloses.length > 0) this.postPages()
    if (this.readKeys.length > 0) this.postReads()
    assert(this.writeCount > 0 && this.writeUsed <= this.writeBuffer.length, 'a write message holds records, within its buffer')
    // What travels is a copy of the records, right-sized and transferred; the chunk buffer stays for the next
    // chunk (encodeRecord writes every byte it covers). A new chunk-sized buffer per message instead cost a
    // 65 KiB allocation per message: one per put at c=1.
    // A buffer grown for one large request travels as it is, and the next chunk gets a standard one.
    const oversized = this.writeBuffer.length > writeBufferBytes
    const records = oversized ? this.writeBuffer.subarray(0, this.writeUsed) : this.writeBuffer.slice(0, this.writeUsed)
    const recordCount = this.writeCount
    const settlers: Settler[] = this.chunkLate
    if (this.chunk !== undefined) settlers.push(this.chunk)
    const bytes = this.writeUsed
    if (oversized) {
      this.writeBuffer = new Uint8Array(writeBufferBytes)
      this.writeView = new DataView(this.writeBuffer.buffer)
    }
    this.writeUsed = 0
    this.writeCount = 0
    this.chunk = undefined
    this.chunkLate = []
    const settle = (error: EngineError | undefined): void => {
      this.bytesInFlight -= bytes
      if (error !== undefined) {
        this.failure ??= error.code === 'IO_ERROR' || error.code === 'SHARD_FAILED' ? error : undefined
        for (const settler of settlers) settler.reject(error)
      } else {
        for (const settler of settlers) settler.resolve(undefined)
      }
      this.unblock()
    }
    this.send({ type: 'write', records, recordCount }, [records.buffer as ArrayBuffer]).then(
      (response) => settle(response.ok ? undefined : errorFrom(response.error)),
      (error: unknown) => settle(new EngineError('SHARD_FAILED', `shard ${this.shard}'s worker failed`, { cause: error })),
    )
  }

  private postReads(): void {
    const packed = packKeys(this.readKeys)
    const count = this.readKeys.length
    const settlers = this.readSettlers
    this.readKeys = []
    this.readSettlers = []
    this.send({ type: 'read', keys: packed, count }, [packed.buffer]).then(
      (response) => {
        if (!response.ok) {
          const error = errorFrom(response.error)
          for (const settler of settlers) settler.reject(error)
          return
        }
        let index = 0
        forEachPackedAnswer(response.value as Uint8Array, count, (value) => settlers[index++]!.resolve(value))
      },
      (error: unknown) => {
        const failure = new EngineError('SHARD_FAILED', `shard ${this.shard}'s worker failed`, { cause: error })
        for (const settler of settlers) settler.reject(failure)
      },
    )
  }

  /** Lets blocked writers in, in order, while they fit under the bound. */
  private unblock(): void {
    while (this.blocked.length > 0) {
      const next = this.blocked[0]!
      if (this.failure !== undefined) {
        this.blocked.shift()
        next.settler.reject(this.failure)
        continue
      }
      if (this.bytesInFlight > 0 && this.bytesInFlight + next.bytes > this.bytesInFlightMax) break
      this.blocked.shift()
      this.makeRoom(next.bytes)
      this.chunkLate.push(next.settler)
      this.enqueueWrite(next.operations)
    }
  }

  private send(request: ShardRequest, transferList?: ArrayBuffer[]): Promise<ShardResponse<unknown>> {
    this.tasksInFlight++
    const task = this.pool.run(request, transferList === undefined ? {} : { transferList })
    const done = (): void => {
      this.tasksInFlight--
      if (
        this.tasksInFlight === 0 &&
        this.blocked.length === 0 &&
        this.writeCount === 0 &&
        this.readKeys.length === 0 &&
        this.pages.length === 0 &&
        this.iteratorCloses.length === 0
      ) {
        const waiters = this.idleWaiters
        this.idleWaiters = []
        for (const waiter of waiters) waiter()
      }
    }
    task.then(done, done)
    return task as Promise<ShardResponse<unknown>>
  }
}
