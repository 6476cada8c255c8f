// RingLevel: a ringkv database behind abstract-level's API, so that it works wherever Level's does
// (sublevels, encodings, hooks, events, deferred open come from abstract-level). It owns one engine per
// open, and maps abstract-level's private API (`_get`, `_batch`, `_iterator`, …) onto the engine's calls.
//
// What it promises, as its manifest declares (abstract-level's README, "Private API For Implementors"):
// - keys and values are bytes (`view`); abstract-level transcodes every other encoding (utf8, json, buffer);
// - permanence: every write has been fdatasync'd when its promise resolves (the engine's promise);
// - implicit snapshots: an iterator sees, per shard, every write acknowledged before it was made and none
//   made after; there are no explicit snapshots (db.snapshot() throws LEVEL_NOT_SUPPORTED). Level asks the
//   same of get(), getMany() and has(), but the engine sends a tick's reads after that tick's writes, so a
//   read may see a write made after it in the same tick (engine issue, reported; the suite does not test it);
// - createIfMissing and errorIfExists, checked here before the engine opens (it always creates).
// Unlike LevelDB, batch() is atomic per shard only: a crash in the middle of a batch keeps, for each
// shard, all or none of that shard's operations. Keys and values returned may be views into a larger
// buffer that belongs to that read alone.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { AbstractLevel } from 'abstract-level'
import type {
  AbstractDatabaseOptions,
  AbstractIteratorOptions,
  AbstractKeyIteratorOptions,
  AbstractValueIteratorOptions,
} from 'abstract-level'
import { open, type BatchOperation, type Engine, type OpenOptions } from '@ringkv/engine'
import { asLevel } from './errors.js'
import { engineRange, RingIterator, RingKeyIterator, RingValueIterator, type PrivateRangeOptions } from './iterators.js'

/**
 * The file the engine writes when it creates a database (packages/workers/src/directory.ts, manifestName):
 * a database exists at a location if and only if this file does.
 */
const databaseManifestName = 'ringkv.json'

/** Keys deleted per batch by a clear() with a limit. */
const clearBatchKeysMax = 1000

export type RingLevelOptions<K, V> = AbstractDatabaseOptions<K, V> & OpenOptions

/** What abstract-level hands to `_open`: the constructor's options merged with open()'s. */
interface PrivateOpenOptions {
  createIfMissing: boolean
  errorIfExists: boolean
}

/** One operation as abstract-level hands it to `_batch`: encoded, its type 'put' or 'del'. */
type PrivateBatchOperation = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array }

export class RingLevel<KDefault = string, VDefault = string> extends AbstractLevel<Uint8Array, KDefault, VDefault> {
  readonly location: string
  private readonly engineOptions: OpenOptions
  private engine: Engine | undefined

  constructor(location: string, options: RingLevelOptions<KDefault, VDefault> = {}) {
    if (typeof location !== 'string' || location.length === 0) {
      throw new TypeError("The first argument 'location' must be a non-empty string")
    }
    // The engine's options are the constructor's alone (a directory's shard count is fixed when it is
    // created); the rest are abstract-level's, which it also passes to open() and its postopen hooks.
    const { shards, backend, recovery, batchBytesMax, bytesInFlightMax, segmentBytes, autoCheckpoint, ...levelOptions } = options
    super(
      {
        encodings: { view: true },
        permanence: true,
        seek: true,
        has: true,
        implicitSnapshots: true,
        explicitSnapshots: false,
        createIfMissing: true,
        errorIfExists: true,
      },
      levelOptions,
    )
    this.location = location
    this.engineOptions = { shards, backend, recovery, batchBytesMax, bytesInFlightMax, segmentBytes, autoCheckpoint }
  }

  async _open(options: PrivateOpenOptions): Promise<void> {
    const exists = fs.existsSync(path.join(this.location, databaseManifestName))
    // abstract-level raises these as LEVEL_DATABASE_NOT_OPEN with this error as its cause.
    if (!exists && !options.createIfMissing) throw new Error(`${this.location} does not exist (createIfMissing is false)`)
    if (exists && options.errorIfExists) throw new Error(`${this.location} exists (errorIfExists is true)`)
    this.engine = await asLevel(open(this.location, this.engineOptions))
  }

  async _close(): Promise<void> {
    // If closing fails abstract-level deems the database open again; the engine, closed either way, then
    // refuses every call with ENGINE_CLOSED (LEVEL_DATABASE_NOT_OPEN).
    await asLevel(this.opened().close())
    this.engine = undefined
  }

  async _get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return asLevel(this.opened().get(key))
  }

  async _getMany(keys: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    return asLevel(this.opened().getMany(keys))
  }

  async _has(key: Uint8Array): Promise<boolean> {
    return asLevel(this.opened().has(key))
  }

  async _hasMany(keys: Uint8Array[]): Promise<boolean[]> {
    const values = await asLevel(this.opened().getMany(keys))
    return values.map((value) => value !== undefined)
  }

  async _put(key: Uint8Array, value: Uint8Array): Promise<void> {
    return asLevel(this.opened().put(key, value))
  }

  async _del(key: Uint8Array): Promise<void> {
    return asLevel(this.opened().delete(key))
  }

  async _batch(operations: PrivateBatchOperation[]): Promise<void> {
    const engineOperations = operations.map((operation): BatchOperation =>
      operation.type === 'put' ? { type: 'put', key: operation.key, value: operation.value } : { type: 'delete', key: operation.key },
    )
    return asLevel(this.opened().batch(engineOperations))
  }

  /**
   * Without a limit, the engine's clear(). With one, the engine has none: the keys are read in order (the
   * limit's end of the range) and deleted in batches, from one snapshot.
   */
  async _clear(options: PrivateRangeOptions): Promise<void> {
    const engine = this.opened()
    const range = engineRange(options)
    if (options.limit === -1) return asLevel(engine.clear(range))
    const keys = engine.keys({ ...range, reverse: options.reverse, limit: options.limit })
    try {
      for (;;) {
        const page = await asLevel(keys.nextv(clearBatchKeysMax))
        if (page.length === 0) break
        await asLevel(engine.batch(page.map((key): BatchOperation => ({ type: 'delete', key }))))
      }
    } finally {
      await keys.close()
    }
  }

  _iterator(options: PrivateRangeOptions & AbstractIteratorOptions<Uint8Array, Uint8Array>): RingIterator<this> {
    const range = engineRange(options)
    const source = this.opened().iterator({ ...range, reverse: options.reverse, limit: options.limit })
    return new RingIterator(this, options, source, range)
  }

  _keys(options: PrivateRangeOptions & AbstractKeyIteratorOptions<Uint8Array>): RingKeyIterator<this> {
    const range = engineRange(options)
    const source = this.opened().keys({ ...range, reverse: options.reverse, limit: options.limit })
    return new RingKeyIterator(this, options, source, range)
  }

  _values(options: PrivateRangeOptions & AbstractValueIteratorOptions<Uint8Array, Uint8Array>): RingValueIterator<this> {
    const range = engineRange(options)
    const source = this.opened().values({ ...range, reverse: options.reverse, limit: options.limit })
    return new RingValueIterator(this, options, source, range)
  }

  /** The engine: abstract-level calls the private API only while the database is open. */
  private opened(): Engine {
    assert(this.engine !== undefined, 'the private API is called only while the database is open')
    return this.engine
  }
}
