// One client's side of one shard: the connection to its worker (a MessagePort: protocol.ts), the writes and
// reads gathered in the current chunk, and the bound on bytes in flight. The thread that opened the
// database has one per shard; so has each handle in another thread (engine.ts: share, attach): the same code,
// each talking to the shard's worker directly. It owns those queues and promises:
// - writes made in the same tick travel to the worker as one write message, cut into several once a
//   message holds `chunkBytes` (so that the worker seals and commits one while the next is encoded);
//   reads made in the same tick travel as one read message;
// - a write's promise resolves only when the worker says its batch is durable. The writes of one message
//   are one request to the worker, acknowledged or failed together, so they share one promise: callers of
//   put() and delete() in one chunk get the same Promise object (no promise and no closures per write);
// - at most `bytesInFlightMax` record bytes per shard are queued or in flight, across every client of every
//   thread (the shard's flow slots: protocol.ts); past that, callers wait (backpressure) instead of memory
//   growing: in order within one thread, in no set order between threads. One request larger than the
//   bound still goes, alone.

import assert from 'node:assert/strict'
import { MessageChannel, type MessagePort } from 'node:worker_threads'
import {
  EngineError,
  OrderedReader,
  forEachPackedAnswer,
  encodeRecord,
  flowBytes,
  flowSlotBytesInFlight,
  flowSlotWaiters,
  packKeys,
  reservedStateBytes,
  recordBytes,
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
  databaseSlotClosed,
  latencyBucketCount,
  latencyBucketFloor,
  type BackendName,
  type BackupResult,
  type ChannelAnswer,
  type ChannelMessage,
  type ChannelRequest,
  type CheckpointResult,
  type ErrorDescription,
  type IteratePage,
  type IteratorPage,
  type KeyRange,
  type InPlaceRead,
  type OrderedViewShare,
  type RecoveryReport,
  type ShardResponse,
  type ShardShare,
} from '@ringkv/workers'

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
  /** Record bytes queued or in flight to the shard, from every thread's clients (bounded by bytesInFlightMax). */
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

/** Atomics.waitAsync (ES2024; in Node 20's V8, not in this project's ES2022 lib types). */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(array: Int32Array, index: number, value: number): { async: false; value: string } | { async: true; value: Promise<string> }
  }
).waitAsync

export class ShardClient {
  readonly shard: number
  readonly backend: BackendName
  readonly backendReason: string
  readonly recovery: RecoveryReport
  private readonly port: MessagePort
  private readonly stats: Float64Array
  private readonly flow: Int32Array
  /** This connection's part of the shard's flow count. */
  private readonly reserved: Int32Array
  private readonly orderedView: OrderedViewShare | undefined
  /** The shard's ordered view, read in place (undefined: none shared, or the client is closed). */
  private reader: OrderedReader | undefined
  private pagesReadInPlace = 0
  private closed = false
  /** The connection closed under this client: the worker stopped, or was ended with the database. */
  private disconnected = false

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
  private readonly blocked: Blocked[] = []
  /** A wait for the flow slot to go down is armed (Atomics.waitAsync). */
  private waitingForRoom = false
  private nextRequestId = 1
  private readonly answers = new Map<number, (response: ShardResponse<unknown>) => void>()
  /** The port keeps the thread alive: only while requests are in flight or writers wait. */
  private portReferenced = true
  private idleWaiters: (() => void)[] = []
  private failure: EngineError | undefined

  /**
   * A client over `link`'s connection. `database` is the database's state slot (protocol.ts): set once the
   * opener closes the database, after which a closed connection means ENGINE_CLOSED rather than a failure.
   */
  constructor(
    link: ShardShare,
    private readonly bytesInFlightMax: number,
    private readonly database: Int32Array,
  ) {
    this.shard = link.shard
    this.backend = link.backend
    this.backendReason = link.backendReason
    this.recovery = link.recovery
    this.port = link.port
    this.stats = new Float64Array(link.stats)
    this.flow = new Int32Array(link.flow)
    this.reserved = new Int32Array(link.reserved)
    this.orderedView = link.orderedView
    this.reader = link.orderedView === undefined ? undefined : OrderedReader.from(link.orderedView)
    this.port.on('message', (message: ChannelAnswer) => {
      const answer = this.answers.get(message.id)
      this.answers.delete(message.id)
      answer?.(message.response)
    })
    this.port.on('close', () => this.disconnect())
    this.refreshReference()
  }

  /**
   * The shard for a handle in another thread, with a new connection to it (its port, to be transferred there).
   * The worker listens on that port once this client's connect request reaches it; what is sent on it
   * before waits for that.
   */
  share(): ShardShare {
    if (this.disconnected) throw errorFrom(this.lostConnection())
    const channel = new MessageChannel()
    const reserved = new SharedArrayBuffer(reservedStateBytes)
    void this.send({ type: 'connect', port: channel.port2, reserved }, [channel.port2])
    return {
      shard: this.shard,
      port: channel.port1,
      reserved,
      stats: this.stats.buffer as SharedArrayBuffer,
      flow: this.flow.buffer as SharedArrayBuffer,
      orderedView: this.orderedView,
      backend: this.backend,
      backendReason: this.backendReason,
      recovery: this.recovery,
    }
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
    if (this.failure !== undefined) return Promise.reject(this.failure)
    if (this.blocked.length > 0 || !this.reserve(bytes)) return this.block([{ kind, key, value }], bytes)
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
    if (this.blocked.length > 0 || !this.reserve(bytes)) return this.block(operations, bytes)
    const promise = this.joinChunk(bytes)
    this.enqueueWrite(operations)
    return promise
  }

  /** Queues writes that found no room: they go, in order, once the shard's count lets them (unblock). */
  private block(operations: WriteOperation[], bytes: number): Promise<undefined> {
    return new Promise<undefined>((resolve, reject) => {
      // Keep the caller's bytes as they are now: a caller may reuse its Uint8Array after the call.
      // new Uint8Array(bytes) copies; a Buffer's slice() would not (it is a view, like subarray).
      const copies = operations.map((operation) => ({
        kind: operation.kind,
        key: new Uint8Array(operation.key),
        value: operation.value === undefined ? undefined : new Uint8Array(operation.value),
      }))
      this.blocked.push({ operations: copies, bytes, settler: { resolve, reject } })
      this.waitForRoom()
    })
  }

  /** Queues a read for the end of the tick: `key` is read then, so it must be the caller's own copy. */
  read(key: Uint8Array): Promise<Uint8Array | undefined> {
    return new Promise((resolve, reject) => {
      this.readKeys.push(key)
      this.readSettlers.push({ resolve, reject })
      this.schedulePost()
    })
  }

  /** The record bytes queued or in flight to the shard, from every client of every thread. */
  get bytesInFlight(): number {
    return Atomics.load(this.flow, flowSlotBytesInFlight)
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
   * it covers. Not waited for by close(): closing the database stops it (ENGINE_CLOSED).
   */
  async checkpoint(): Promise<CheckpointResult | undefined> {
    if (this.failure !== undefined) throw this.failure
    const response = await this.send({ type: 'checkpoint' })
    if (!response.ok) throw errorFrom(response.error)
    return response.value as CheckpointResult | undefined
  }

  /** Backs the shard up into `directory` (a shard directory of the backup), like checkpoint(). */
  async backup(directory: string): Promise<BackupResult> {
    if (this.failure !== undefined) throw this.failure
    const response = await this.send({ type: 'backup', directory })
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
    const response = await this.send({ type: 'clear', range })
    if (!response.ok) throw errorFrom(response.error)
  }

  /** Posts what is queued to the worker, waits until nothing is queued or in flight, then closes the connection. */
  async close(): Promise<void> {
    if (this.closed) return
    this.reader = undefined
    this.post()
    if (this.answers.size > 0 || this.blocked.length > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
    }
    this.closed = true
    this.port.close()
  }

  /**
   * Reserves `bytes` in the shard's flow slots if they fit under the bound (or nothing is in flight). This
   * connection's slot goes first: a thread terminated between the two updates leaves the shard's count low by
   * one request (the worker gives back what the connection's slot says), never high, which could make every
   * writer wait forever. New writes call it only when no blocked write waits before them.
   */
  private reserve(bytes: number): boolean {
    const counted = flowBytes(bytes)
    Atomics.add(this.reserved, 0, counted)
    for (;;) {
      const inFlight = Atomics.load(this.flow, flowSlotBytesInFlight)
      if (inFlight > 0 && inFlight + counted > this.bytesInFlightMax) {
        Atomics.sub(this.reserved, 0, counted)
        return false
      }
      if (Atomics.compareExchange(this.flow, flowSlotBytesInFlight, inFlight, inFlight + counted) === inFlight) return true
    }
  }

  /** Makes room for `bytes` in the current chunk; returns the chunk's promise. */
  private joinChunk(bytes: number): Promise<undefined> {
    this.makeRoom(bytes)
    this.chunk ??= new Chunk()
    return this.chunk.promise
  }

  /** Sends the current chunk first if `bytes` would not fit in it. */
  private makeRoom(bytes: number): void {
    if (this.writeCount > 0 && this.writeUsed + bytes > this.writeBuffer.length) this.postWrites()
    if (bytes > this.writeBuffer.length) {
      // One request larger than a chunk travels alone, in a buffer of its own size.
      this.writeBuffer = new Uint8Array(bytes)
      this.writeView = new DataView(this.writeBuffer.buffer)
    }
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
    const request: ChannelRequest = { type: 'iterate', closes: this.iteratorCloses, pages: this.pages }
    const settlers = this.pageSettlers
    const closed = this.closeSettlers
    this.pages = []
    this.pageSettlers = []
    this.iteratorCloses = []
    this.closeSettlers = []
    void this.send(request).then((response) => {
      for (const done of closed) done()
      if (!response.ok) {
        const error = errorFrom(response.error)
        for (const settler of settlers) settler.reject(error)
        return
      }
      ;(response.value as ShardResponse<IteratorPage>[]).forEach((answer, index) => {
        if (answer.ok) settlers[index]!.resolve(answer.value)
        else settlers[index]!.reject(errorFrom(answer.error))
      })
    })
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
    if (oversized) {
      this.writeBuffer = new Uint8Array(writeBufferBytes)
      this.writeView = new DataView(this.writeBuffer.buffer)
    }
    // Their bytes were reserved when queued; the worker gives them back when it answers.
    this.writeUsed = 0
    this.writeCount = 0
    this.chunk = undefined
    this.chunkLate = []
    void this.send({ type: 'write', records, recordCount }, [records.buffer as ArrayBuffer]).then((response) => {
      if (!response.ok) {
        const error = errorFrom(response.error)
        if (error.code === 'IO_ERROR' || error.code === 'SHARD_FAILED') this.failure ??= error
        for (const settler of settlers) settler.reject(error)
      } else {
        for (const settler of settlers) settler.resolve(undefined)
      }
      this.unblock()
    })
  }

  private postReads(): void {
    const packed = packKeys(this.readKeys)
    const count = this.readKeys.length
    const settlers = this.readSettlers
    this.readKeys = []
    this.readSettlers = []
    void this.send({ type: 'read', keys: packed, count }, [packed.buffer]).then((response) => {
      if (!response.ok) {
        const error = errorFrom(response.error)
        for (const settler of settlers) settler.reject(error)
        return
      }
      let index = 0
      forEachPackedAnswer(response.value as Uint8Array, count, (value) => settlers[index++]!.resolve(value))
    })
  }

  /** Lets blocked writers in, in order, while they fit under the bound; else waits for the shard to answer some. */
  private unblock(): void {
    while (this.blocked.length > 0) {
      const next = this.blocked[0]!
      if (this.failure !== undefined) {
        this.blocked.shift()
        next.settler.reject(this.failure)
        continue
      }
      if (!this.reserve(next.bytes)) break
      this.blocked.shift()
      this.makeRoom(next.bytes)
      this.chunkLate.push(next.settler)
      this.enqueueWrite(next.operations)
    }
    if (this.blocked.length > 0) this.waitForRoom()
    this.settleIdle()
  }

  /**
   * Waits (without blocking the thread) until the shard's flow slot goes down, then lets blocked writers in:
   * the bytes in flight may be another thread's, whose answers this client never sees.
   */
  private waitForRoom(): void {
    this.refreshReference()
    if (this.waitingForRoom) return
    this.waitingForRoom = true
    Atomics.add(this.flow, flowSlotWaiters, 1)
    const seen = Atomics.load(this.flow, flowSlotBytesInFlight)
    const woken = (): void => {
      Atomics.sub(this.flow, flowSlotWaiters, 1)
      this.waitingForRoom = false
      this.unblock()
    }
    // The worker notifies only once it sees a waiter: room it gave back before the count above would
    // wake no one, so look again at what `seen` leaves before waiting for it to change.
    const next = this.blocked[0]
    if (next === undefined || seen === 0 || seen + flowBytes(next.bytes) <= this.bytesInFlightMax) return queueMicrotask(woken)
    const wait = waitAsync(this.flow, flowSlotBytesInFlight, seen)
    if (wait.async) void wait.value.then(woken)
    else queueMicrotask(woken)
  }

  /** Keeps the thread alive while requests are in flight or writers wait, and only then. */
  private refreshReference(): void {
    const busy = this.answers.size > 0 || this.blocked.length > 0
    if (busy === this.portReferenced || this.disconnected) return
    this.portReferenced = busy
    if (busy) this.port.ref()
    else this.port.unref()
  }

  /** The connection closed: every request in flight, every write waiting for room, and every call after, fails. */
  private disconnect(): void {
    this.disconnected = true
    this.reader = undefined
    const answers = [...this.answers.values()]
    this.answers.clear()
    const error = this.lostConnection()
    for (const answer of answers) answer({ ok: false, error })
    this.failure ??= errorFrom(error)
    this.unblock()
    this.settleIdle()
  }

  /** Why a request cannot be answered once the connection closed: the database closed, or the worker stopped. */
  private lostConnection(): ErrorDescription {
    if (Atomics.load(this.database, databaseSlotClosed) === 1 || this.closed)
      return { code: 'ENGINE_CLOSED', message: 'the engine is closed' }
    return { code: 'SHARD_FAILED', message: `shard ${this.shard}'s worker stopped` }
  }

  private send(request: ChannelRequest, transferList?: (ArrayBuffer | MessagePort)[]): Promise<ShardResponse<unknown>> {
    if (this.disconnected) return Promise.resolve({ ok: false, error: this.lostConnection() })
    const id = this.nextRequestId++
    const answered = new Promise<ShardResponse<unknown>>((resolve) => this.answers.set(id, resolve))
    this.port.postMessage({ id, request } satisfies ChannelMessage, transferList)
    this.refreshReference()
    return answered.then((response) => {
      this.settleIdle()
      return response
    })
  }

  /** Wakes close() once nothing is queued, blocked or in flight. */
  private settleIdle(): void {
    this.refreshReference()
    if (
      this.answers.size === 0 &&
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
}
