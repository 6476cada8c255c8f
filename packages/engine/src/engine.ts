// The façade: what application code calls. It checks arguments, routes each key to its shard, and
// turns shard answers into promises. It never touches a file descriptor: the directory lock and the
// manifest belong to @ringkv/workers, the log to the shard workers.
//
// One process opens a database (open: the directory lock, one thread per shard); any of its threads may then
// use it, each through an Engine of its own: share() gives a DatabaseShare to post to another thread, and
// attach() there makes it an Engine with the same API, whose clients talk to the shards' workers directly
// (shard-client.ts), not through the opener's thread. The README's "Clients in several threads" says what a
// handle may do and what happens to it when the database closes or its thread ends.

import os from 'node:os'
import path from 'node:path'
import { isMainThread } from 'node:worker_threads'
import {
  DatabaseDirectory,
  EngineError,
  databaseShareKind,
  databaseSlotClosed,
  databaseStateBytes,
  recordKindDelete,
  recordKindPut,
  segmentBytesDefault,
  shardDirectory,
  shardsMax,
  prepareBackupTarget,
  syncDirectory,
  type AutoCheckpoint,
  type BackendChoice,
  type DatabaseShare,
  type RecoveryReport,
  type ShardShare,
} from '@ringkv/workers'
import {
  argumentError,
  iteratorOptions,
  keyBytes,
  keyRange,
  positiveIntegerOption,
  valueBytes,
  type IteratorOptions,
  type RangeOptions,
} from './input.js'
import { EngineIterator, MappedIterator, type Entry, type IteratorOwner } from './iterator.js'
import { shardOf } from './routing.js'
import { ShardClient, type ShardStats, type WriteOperation } from './shard-client.js'
import { ShardThread } from './shard-thread.js'

// libuv's threadpool is one per process, shared by the main thread and every shard's worker thread. The
// io_uring backend's appends do not use it (a shard waits on its rings on its own thread), but the fs
// backend runs each log's write and fdatasync there, and both backends zero-fill each log's next space
// there: up to 4 operations at once per fs shard (2 logs, an append and a fill each), 2 per io_uring
// shard. With libuv's default of 4 threads, shards would wait for each other; 64 serve 16 fs shards (or the
// fills of 32 io_uring shards) without waiting, and past that operations queue: slower, never incorrect.
// The threads start together with the pool; their stacks are address space until used (measured: 60 more
// threads, +0.5 MB RSS).
// libuv reads the size once, when the pool first starts, and this raises it only if the application has
// not set it, so it takes effect only if nothing has used the pool yet. Measured on Node 20: it does when
// ringkv is loaded with require() (require(esm)); it does not when ringkv is loaded with import, because
// loading ES modules has already started the pool with 4 threads. There, only UV_THREADPOOL_SIZE set in
// the environment before the process starts counts.
export const threadpoolSizeDefault = 64
if (isMainThread && process.env.UV_THREADPOOL_SIZE === undefined) {
  process.env.UV_THREADPOOL_SIZE = String(threadpoolSizeDefault)
}

/**
 * The shard count of a new directory when `shards` is not given: one shard per two cores, at least one.
 * A shard's worker needs a core, and so does the main thread, which encodes every write and settles every
 * promise for all shards. Measured on a 2-core machine whose disk does not overlap two cache flushes (each
 * shard's fdatasync is one), by `node bench/scripts/shards.mjs` (5 paired rounds): 2 shards made 0.84x the
 * durable puts/s of 1 shard with 1 client, 0.35x with 16, 0.45x with 256, and 0.98x with 4096. On more
 * cores the rule is a reasoned default, not a measurement: measure with that script on your machine.
 */
export function shardsDefault(): number {
  return Math.min(shardsMax, Math.max(1, Math.floor(os.availableParallelism() / 2)))
}

export interface OpenOptions {
  /** Shards (worker threads, logs). Default: the directory's recorded count, or `shardsDefault()` for a new one. */
  shards?: number
  /** 'auto' (default): io_uring where it can be set up, else node:fs. Or force one. */
  backend?: BackendChoice
  /** 'strict' (default): damage to acknowledged data fails the open. 'truncate': keep the intact prefix. */
  recovery?: 'strict' | 'truncate'
  /** Record bytes one group commit gathers at most. Default 4 MiB. */
  batchBytesMax?: number
  /** Record bytes per shard queued or in flight before callers wait. Default 64 MiB. */
  bytesInFlightMax?: number
  /** Size of one intent log segment file. Default 64 MiB; a batch larger than this gets a segment of its own. */
  segmentBytes?: number
  /**
   * When a shard checkpoints by itself (its table to a checkpoint file, then the log segments it covers
   * are removed): once its intent log holds at least max(logBytes, liveRatio x its live bytes) of batches
   * after its last checkpoint. Default { logBytes: segmentBytes, liveRatio: 0 }. false: only `compact()`.
   * The README's "Checkpoints and disk space" section says what bound on disk each choice gives.
   */
  autoCheckpoint?: { logBytes?: number; liveRatio?: number } | false
}

export type BatchOperation =
  { type: 'put'; key: string | Uint8Array; value: string | Uint8Array } | { type: 'delete'; key: string | Uint8Array }

export interface EngineStats {
  shards: ShardStats[]
}

const backends: readonly BackendChoice[] = ['auto', 'io_uring', 'fs']
const bytesMax = 1024 * 1024 * 1024
const segmentBytesMin = 64 * 1024

function closedError(): EngineError {
  return new EngineError('ENGINE_CLOSED', 'the engine is closed')
}

/** The connections attach() has made clients of, in this thread. */
const attachedPorts = new WeakSet<object>()

/** What only the engine that opened the database holds: the directory lock and the shards' threads. */
interface Opener {
  lock: DatabaseDirectory
  threads: ShardThread[]
}

export class Engine {
  private closed = false
  private closing: Promise<void> | undefined
  /** What iterators see of the engine: they fail once it closes. */
  private readonly owner: IteratorOwner = Object.defineProperty({} as IteratorOwner, 'closed', { get: () => this.isClosed })

  private constructor(
    readonly directory: string,
    private readonly clients: ShardClient[],
    private readonly bytesInFlightMax: number,
    /** The database's state slot (protocol.ts), shared with every handle. */
    private readonly state: Int32Array,
    /** Undefined for a handle made by attach(). */
    private readonly opener: Opener | undefined,
  ) {}

  static async open(directory: string, options: OpenOptions = {}): Promise<Engine> {
    if (typeof directory !== 'string' || directory.length === 0) {
      throw argumentError(TypeError, 'INVALID_ARGUMENT', 'directory must be a non-empty string')
    }
    if (typeof options !== 'object' || options === null) throw argumentError(TypeError, 'INVALID_OPTION', 'options must be an object')
    const shards = options.shards === undefined ? undefined : positiveIntegerOption(options.shards, 'options.shards', shardsMax)
    const backend = options.backend ?? 'auto'
    if (!backends.includes(backend)) {
      throw argumentError(RangeError, 'INVALID_OPTION', `options.backend must be one of ${backends.join(', ')}, got ${String(backend)}`)
    }
    const recovery = options.recovery ?? 'strict'
    if (recovery !== 'strict' && recovery !== 'truncate') {
      throw argumentError(RangeError, 'INVALID_OPTION', `options.recovery must be 'strict' or 'truncate', got ${String(recovery)}`)
    }
    const batchBytesMax = positiveIntegerOption(options.batchBytesMax ?? 4 * 1024 * 1024, 'options.batchBytesMax', bytesMax)
    const bytesInFlightMax = positiveIntegerOption(options.bytesInFlightMax ?? 64 * 1024 * 1024, 'options.bytesInFlightMax', bytesMax)

    const segmentBytes = positiveIntegerOption(options.segmentBytes ?? segmentBytesDefault, 'options.segmentBytes', bytesMax)
    if (segmentBytes < segmentBytesMin) {
      throw argumentError(RangeError, 'INVALID_OPTION', `options.segmentBytes must be at least ${segmentBytesMin}, got ${segmentBytes}`)
    }

    let autoCheckpoint: AutoCheckpoint | false = false
    if (options.autoCheckpoint !== false) {
      const given = options.autoCheckpoint ?? {}
      if (typeof given !== 'object' || given === null) {
        throw argumentError(TypeError, 'INVALID_OPTION', 'options.autoCheckpoint must be an object or false')
      }
      const logBytes = positiveIntegerOption(given.logBytes ?? segmentBytes, 'options.autoCheckpoint.logBytes', Number.MAX_SAFE_INTEGER)
      const liveRatio = given.liveRatio ?? 0
      if (typeof liveRatio !== 'number' || !Number.isFinite(liveRatio) || liveRatio < 0) {
        throw argumentError(
          RangeError,
          'INVALID_OPTION',
          `options.autoCheckpoint.liveRatio must be a finite number >= 0, got ${String(liveRatio)}`,
        )
      }
      autoCheckpoint = { logBytes, liveRatio }
    }

    const absolute = path.resolve(directory)
    const lock = DatabaseDirectory.open(absolute, shards, shardsDefault())
    const threads = Array.from({ length: lock.shards }, (_, shard) => new ShardThread(shard))
    const opened = await Promise.allSettled(
      threads.map((thread) =>
        thread.open({ directory: shardDirectory(absolute, thread.shard), backend, batchBytesMax, recovery, segmentBytes, autoCheckpoint }),
      ),
    )
    const links = opened.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []))
    const failed = opened.find((result): result is PromiseRejectedResult => result.status === 'rejected')
    if (failed !== undefined) {
      for (const link of links) link.port.close()
      await Promise.allSettled(threads.map((thread) => thread.close()))
      lock.release()
      throw failed.reason
    }
    const state = new Int32Array(new SharedArrayBuffer(databaseStateBytes))
    const clients = links.map((link) => new ShardClient(link, bytesInFlightMax, state))
    return new Engine(absolute, clients, bytesInFlightMax, state, { lock, threads })
  }

  /**
   * The database as another of this process's threads can use it: post the share there (postMessage or
   * workerData, transferring `share.transferList`) and call attach() on it in that thread. Each share holds
   * connections of its own, so it serves one thread; call share() again for the next. Works on a handle too.
   */
  share(): DatabaseShare {
    if (this.isClosed) throw closedError()
    const shards: ShardShare[] = this.clients.map((client) => client.share())
    return {
      kind: databaseShareKind,
      directory: this.directory,
      bytesInFlightMax: this.bytesInFlightMax,
      state: this.state.buffer as SharedArrayBuffer,
      shards,
      transferList: shards.map((shard) => shard.port),
    }
  }

  /**
   * An Engine over a share() posted to this thread: the same API, talking to the shards directly. Its close()
   * closes this handle only (its writes in flight settle first); once the opener closes the database, its
   * calls fail with ENGINE_CLOSED.
   */
  static attach(share: DatabaseShare): Engine {
    if (typeof share !== 'object' || share === null || share.kind !== databaseShareKind || !Array.isArray(share.shards)) {
      throw argumentError(TypeError, 'INVALID_ARGUMENT', 'share must be what Engine.share() returned, posted to this thread')
    }
    // Two clients on one connection would take each other's answers (request ids are each client's own).
    if (share.shards.some((shard) => attachedPorts.has(shard.port))) {
      throw argumentError(TypeError, 'INVALID_ARGUMENT', 'share was already attached: call share() once per handle')
    }
    for (const shard of share.shards) attachedPorts.add(shard.port)
    const state = new Int32Array(share.state)
    const clients = share.shards.map((shard) => new ShardClient(shard, share.bytesInFlightMax, state))
    return new Engine(share.directory, clients, share.bytesInFlightMax, state, undefined)
  }

  /** The shard count (fixed for the directory's life). */
  get shards(): number {
    return this.clients.length
  }

  /** What recovery did on open, per shard. */
  get recovery(): RecoveryReport[] {
    return this.clients.map((client) => client.recovery)
  }

  /** Whether calls fail with ENGINE_CLOSED: this engine, or the database it is a handle of, was closed. */
  get isClosed(): boolean {
    if (!this.closed && Atomics.load(this.state, databaseSlotClosed) === 1) this.closed = true
    return this.closed
  }

  put(key: string | Uint8Array, value: string | Uint8Array): Promise<void> {
    try {
      const keyData = keyBytes(key)
      const valueData = valueBytes(value)
      if (this.isClosed) return Promise.reject(closedError())
      return this.route(keyData).writeOne(recordKindPut, keyData, valueData)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  delete(key: string | Uint8Array): Promise<void> {
    try {
      const keyData = keyBytes(key)
      if (this.isClosed) return Promise.reject(closedError())
      return this.route(keyData).writeOne(recordKindDelete, keyData, undefined)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  get(key: string | Uint8Array): Promise<Uint8Array | undefined> {
    try {
      const checked = keyBytes(key)
      // Reads wait for the end of the tick (one message per shard), and a caller may reuse its buffer
      // before then (Node's streams do): keep the bytes it has now. A string's encoding is already ours.
      const keyData = checked === key ? new Uint8Array(checked) : checked
      if (this.isClosed) return Promise.reject(closedError())
      return this.route(keyData).read(keyData)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /**
   * Reads several keys at once: the values in the order of `keys`, undefined where a key holds none. The
   * keys of one call travel to each shard as one message (as every read of one tick does), and each
   * answer is what that shard held when it read them: there is no snapshot across shards.
   */
  getMany(keys: readonly (string | Uint8Array)[]): Promise<(Uint8Array | undefined)[]> {
    try {
      if (!Array.isArray(keys)) throw argumentError(TypeError, 'INVALID_ARGUMENT', 'keys must be an array')
      // Checked whole before anything is queued: one bad key fails the call, and reads nothing.
      const checked = keys.map((key: unknown, index) => {
        const bytes = keyBytes(key, `keys[${index}]`)
        // Kept as they are now: the caller may reuse its buffers before the reads leave (see get).
        return bytes === key ? new Uint8Array(bytes) : bytes
      })
      if (this.isClosed) return Promise.reject(closedError())
      return Promise.all(checked.map((key) => this.route(key).read(key)))
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Whether `key` holds a value, as get() would find it (durable data only). */
  async has(key: string | Uint8Array): Promise<boolean> {
    return (await this.get(key)) !== undefined
  }

  /**
   * Writes several keys. Resolves once every operation is durable. The operations that fall on one shard
   * land in one log batch, so they survive a crash all together or not at all; across shards there is
   * no such guarantee.
   */
  async batch(operations: readonly BatchOperation[]): Promise<void> {
    if (!Array.isArray(operations)) throw argumentError(TypeError, 'INVALID_ARGUMENT', 'operations must be an array')
    const perShard = new Map<number, WriteOperation[]>()
    operations.forEach((operation, index) => {
      const name = `operations[${index}]`
      if (typeof operation !== 'object' || operation === null)
        throw argumentError(TypeError, 'INVALID_ARGUMENT', `${name} must be an object`)
      const key = keyBytes(operation.key, `${name}.key`)
      let write: WriteOperation
      if (operation.type === 'put') write = { kind: recordKindPut, key, value: valueBytes(operation.value, `${name}.value`) }
      else if (operation.type === 'delete') write = { kind: recordKindDelete, key, value: undefined }
      else {
        const type = String((operation as { type: unknown }).type)
        throw argumentError(TypeError, 'INVALID_ARGUMENT', `${name}.type must be 'put' or 'delete', got ${type}`)
      }
      const shard = shardOf(key, this.clients.length)
      const list = perShard.get(shard)
      if (list === undefined) perShard.set(shard, [write])
      else list.push(write)
    })
    if (this.isClosed) throw closedError()
    await Promise.all([...perShard].map(([shard, writes]) => this.clients[shard]!.write(writes)))
  }

  /**
   * Checkpoints every shard now and removes the log segments the checkpoints cover: resolves once every
   * shard's checkpoint is durable and current, and holds every write acknowledged before the call. A shard
   * whose checkpoint fails (an I/O error) rejects with IO_ERROR; its previous checkpoint and its log stay
   * as they were, and it goes on taking writes unless its log failed too.
   */
  async compact(): Promise<void> {
    if (this.isClosed) throw closedError()
    await Promise.all(this.clients.map((client) => client.checkpoint()))
  }

  /**
   * Writes a backup of the database into `target` (a directory that does not exist or is empty, and is not
   * the database nor inside it: else BACKUP_TARGET_INVALID) while the database stays open and writable. The
   * backup opens as an ordinary ringkv directory and holds every write acknowledged before the call, and
   * per shard a consistent prefix of the writes after it. Each shard checkpoints, then hard-links its
   * checkpoint where the file system allows (else copies it) and copies the log after it; every file and
   * directory of the backup is durable when this resolves.
   */
  async backup(target: string): Promise<void> {
    if (this.isClosed) throw closedError()
    if (typeof target !== 'string' || target.length === 0) {
      throw argumentError(TypeError, 'INVALID_ARGUMENT', 'target must be a non-empty string')
    }
    const absolute = path.resolve(target)
    prepareBackupTarget(this.directory, absolute, this.clients.length)
    await Promise.all(this.clients.map((client) => client.backup(shardDirectory(absolute, client.shard))))
    syncDirectory(absolute)
  }

  /**
   * An iterator over the entries in `options`' range, in key order (bytewise; `reverse`: descending), at most
   * `limit` of them: `for await (const [key, value] of db.iterator())`, or next(), nextv(n), all(), seek(),
   * close(). Each shard's snapshot is taken when the iterator is made (see iterator.ts): per shard it sees
   * every write acknowledged before, and none after. There is no snapshot across shards.
   */
  iterator(options?: IteratorOptions): EngineIterator {
    const { range, reverse, limit } = iteratorOptions(options)
    if (this.isClosed) throw closedError()
    return new EngineIterator(this.owner, this.clients, range, reverse, limit, true)
  }

  /** The keys of iterator(options), without reading values out of the shards. */
  keys(options?: IteratorOptions): MappedIterator<Uint8Array> {
    const { range, reverse, limit } = iteratorOptions(options)
    if (this.isClosed) throw closedError()
    return new MappedIterator(new EngineIterator(this.owner, this.clients, range, reverse, limit, false), (entry: Entry) => entry[0])
  }

  /** The values of iterator(options), in their keys' order. */
  values(options?: IteratorOptions): MappedIterator<Uint8Array> {
    const { range, reverse, limit } = iteratorOptions(options)
    if (this.isClosed) throw closedError()
    return new MappedIterator(new EngineIterator(this.owner, this.clients, range, reverse, limit, true), (entry: Entry) => entry[1])
  }

  /**
   * Deletes every key in `options`' range (all of them without one), on every shard, durably: resolves once
   * every shard's deletes are durable. Per shard, it takes effect after every write made before the call;
   * a write made while it runs may or may not survive it. Deletes are written in batches of up to 4,096
   * keys, so a crash in the middle leaves a prefix of the range deleted, per shard.
   */
  async clear(options?: RangeOptions): Promise<void> {
    const range = keyRange(options)
    if (this.isClosed) throw closedError()
    await Promise.all(this.clients.map((client) => client.clear(range)))
  }

  stats(): EngineStats {
    if (this.isClosed) throw closedError()
    return { shards: this.clients.map((client) => client.snapshot()) }
  }

  /**
   * Waits for every write already issued here, then closes. The opener's engine closes the database: every
   * handle's calls fail with ENGINE_CLOSED from then on, the writes the shards have taken (from any thread)
   * are answered, the workers stop, and rings, files and the lock are released. A handle's close() closes
   * only that handle.
   */
  close(): Promise<void> {
    if (this.closing === undefined) {
      if (this.opener !== undefined) Atomics.store(this.state, databaseSlotClosed, 1)
      this.closed = true
      const opener = this.opener
      this.closing = (async () => {
        try {
          await Promise.all(this.clients.map((client) => client.close()))
          if (opener !== undefined) await Promise.all(opener.threads.map((thread) => thread.close()))
        } finally {
          opener?.lock.release()
        }
      })()
    }
    return this.closing
  }

  private route(key: Uint8Array): ShardClient {
    return this.clients[shardOf(key, this.clients.length)]!
  }
}

export function open(directory: string, options?: OpenOptions): Promise<Engine> {
  return Engine.open(directory, options)
}

/** Engine.attach: a handle, in this thread, on a database another thread opened and shared. */
export function attach(share: DatabaseShare): Engine {
  return Engine.attach(share)
}
