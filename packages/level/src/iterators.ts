// RingLevel's iterators: abstract-level's entry, key and value iterators over the engine's. The engine
// iterator is made when the Level iterator is, so its per-shard snapshot is taken then (implicit
// snapshots). abstract-level counts what was given, checks the limit and decodes; these only read.
//
// Two Level rules the engine's iterators do not follow, applied here:
// - range bounds: gte wins over gt and lte over lt (the engine lets gt and lt win);
// - seek(target) with a target outside the range ends the iterator, until the next seek (the engine would
//   move to the range's nearest key instead), as abstract-level's README says of iterator.seek().

import { AbstractIterator, AbstractKeyIterator, AbstractValueIterator } from 'abstract-level'
import type { AbstractIteratorOptions, AbstractKeyIteratorOptions, AbstractValueIteratorOptions } from 'abstract-level'
import type { RangeOptions } from '@ringkv/engine'
import { asLevel, levelError } from './errors.js'

/** The options abstract-level hands to `_iterator`, `_keys`, `_values` and `_clear`: bounds already encoded. */
export interface PrivateRangeOptions {
  gt?: Uint8Array
  gte?: Uint8Array
  lt?: Uint8Array
  lte?: Uint8Array
  reverse: boolean
  /** An integer >= 0, or -1 for no limit. */
  limit: number
}

/** Level's bounds as the engine's: at most one bound per side, Level's choice where both are given. */
export function engineRange(options: PrivateRangeOptions): RangeOptions {
  const range: RangeOptions = {}
  if (options.gte !== undefined) range.gte = options.gte
  else if (options.gt !== undefined) range.gt = options.gt
  if (options.lte !== undefined) range.lte = options.lte
  else if (options.lt !== undefined) range.lt = options.lt
  return range
}

/** Whether `key` lies within `range` (one bound per side, as engineRange gives), in byte order. */
function inRange(key: Uint8Array, range: RangeOptions): boolean {
  const compare = (bound: string | Uint8Array): number => Buffer.compare(key, bound as Uint8Array)
  if (range.gte !== undefined && compare(range.gte) < 0) return false
  if (range.gt !== undefined && compare(range.gt) <= 0) return false
  if (range.lte !== undefined && compare(range.lte) > 0) return false
  if (range.lt !== undefined && compare(range.lt) >= 0) return false
  return true
}

/** What the engine's iterators have in common: EngineIterator (entries) and MappedIterator (keys, values). */
interface EngineSource<T> {
  next(): Promise<T | undefined>
  nextv(size: number): Promise<T[]>
  all(): Promise<T[]>
  seek(target: Uint8Array): void
  close(): Promise<void>
}

/**
 * The reading shared by the three iterator classes (abstract-level's key and value iterators do not extend
 * its entry iterator, so they cannot share a base class): an engine iterator, plus the state of Level's
 * seek rule.
 */
class Cursor<T> {
  /** The last seek's target was outside the range: nothing more until the next seek. */
  private seekedOutside = false

  constructor(
    private readonly source: EngineSource<T>,
    private readonly range: RangeOptions,
  ) {}

  async next(): Promise<T | undefined> {
    if (this.seekedOutside) return undefined
    return asLevel(this.source.next())
  }

  async nextv(size: number): Promise<T[]> {
    if (this.seekedOutside) return []
    return asLevel(this.source.nextv(size))
  }

  async all(): Promise<T[]> {
    if (this.seekedOutside) return []
    return asLevel(this.source.all())
  }

  seek(target: Uint8Array): void {
    this.seekedOutside = !inRange(target, this.range)
    if (this.seekedOutside) return
    try {
      this.source.seek(target)
    } catch (error) {
      throw levelError(error)
    }
  }

  close(): Promise<void> {
    return asLevel(this.source.close())
  }
}

type Entry = [key: Uint8Array, value: Uint8Array]

export class RingIterator<Database> extends AbstractIterator<Database, Uint8Array, Uint8Array> {
  private readonly cursor: Cursor<Entry>

  constructor(db: Database, options: AbstractIteratorOptions<Uint8Array, Uint8Array>, source: EngineSource<Entry>, range: RangeOptions) {
    super(db, options)
    this.cursor = new Cursor(source, range)
  }

  async _next(): Promise<Entry | undefined> {
    return this.cursor.next()
  }

  async _nextv(size: number): Promise<Entry[]> {
    return this.cursor.nextv(size)
  }

  async _all(): Promise<Entry[]> {
    return this.cursor.all()
  }

  _seek(target: Uint8Array): void {
    this.cursor.seek(target)
  }

  async _close(): Promise<void> {
    return this.cursor.close()
  }
}

export class RingKeyIterator<Database> extends AbstractKeyIterator<Database, Uint8Array> {
  private readonly cursor: Cursor<Uint8Array>

  constructor(db: Database, options: AbstractKeyIteratorOptions<Uint8Array>, source: EngineSource<Uint8Array>, range: RangeOptions) {
    super(db, options)
    this.cursor = new Cursor(source, range)
  }

  async _next(): Promise<Uint8Array | undefined> {
    return this.cursor.next()
  }

  async _nextv(size: number): Promise<Uint8Array[]> {
    return this.cursor.nextv(size)
  }

  async _all(): Promise<Uint8Array[]> {
    return this.cursor.all()
  }

  _seek(target: Uint8Array): void {
    this.cursor.seek(target)
  }

  async _close(): Promise<void> {
    return this.cursor.close()
  }
}

export class RingValueIterator<Database> extends AbstractValueIterator<Database, Uint8Array, Uint8Array> {
  private readonly cursor: Cursor<Uint8Array>

  constructor(
    db: Database,
    options: AbstractValueIteratorOptions<Uint8Array, Uint8Array>,
    source: EngineSource<Uint8Array>,
    range: RangeOptions,
  ) {
    super(db, options)
    this.cursor = new Cursor(source, range)
  }

  async _next(): Promise<Uint8Array | undefined> {
    return this.cursor.next()
  }

  async _nextv(size: number): Promise<Uint8Array[]> {
    return this.cursor.nextv(size)
  }

  async _all(): Promise<Uint8Array[]> {
    return this.cursor.all()
  }

  _seek(target: Uint8Array): void {
    this.cursor.seek(target)
  }

  async _close(): Promise<void> {
    return this.cursor.close()
  }
}
