// A shard's open iterators, and the snapshot each one reads. The façade merges the shards' pages into one
// ordered stream (engine/src/iterator.ts); this is one shard's side of it.
//
// The snapshot: an iterator sees the shard's table as it was when the shard took the iterator's first
// request, whatever batches are applied after. The table keeps one version of each key, so the iterator
// keeps the rest: before a durable batch is applied to the table, `capture` records, for each open
// iterator whose range holds a key the batch changes, that key's value as it was (or that it was absent),
// once per key: its before-image. A page is then read from the table as it is now and corrected by the
// before-images that fall in its span. So:
// - an iterator costs nothing while no batch changes a key in its range, and a page without before-images
//   in its span goes out as the table packed it;
// - while it is open, each batch costs one lookup per changed key that an iterator's range holds;
// - its memory is the before-images it holds: at most `snapshotBytesMax` for all of a shard's iterators
//   together. Past that, the iterator holding the most is expired (its next read fails with
//   ITERATOR_EXPIRED), so an iterator left open under heavy writes cannot pin memory without bound. The
//   façade also closes an iterator that is garbage collected, and all of them when the database closes.
//
// Positions are keys: a page starts after the last key the one before it gave (or at a seek's target), so
// the table may change between two pages without the iterator losing its place.

import { EngineError } from './errors.js'
import { forEachRecord } from './format/record.js'
import {
  forEachPackedAnswer,
  forEachPackedEntry,
  lastPackedKey,
  packEntries,
  packKeys,
  type IteratorOpen,
  type KeyRange,
} from './protocol.js'
import type { Table } from './table/table.js'

/** Before-images all of a shard's iterators may hold together, by default. */
export const snapshotBytesMaxDefault = 64 * 1024 * 1024
/** What a before-image costs besides its key and value bytes: the Map entry and the string, roughly. */
const beforeImageOverheadBytes = 64

/** A page of an iterator: `count` entries packed as protocol.ts says, and whether the iterator is done. */
export interface IteratorPage {
  packed: Uint8Array
  count: number
  done: boolean
}

interface OpenIterator {
  readonly id: number
  readonly range: KeyRange
  readonly reverse: boolean
  readonly values: boolean
  /** Entries still to give: the limit less those given. */
  remaining: number
  /** The next page starts after this key, or at it when `positionInclusive` (a seek); undefined: at the range's start. */
  position: Uint8Array | undefined
  positionInclusive: boolean
  /** Keys changed since the snapshot, as latin1 strings (one char per byte: they order as the bytes do), to their value then (null: absent then). */
  readonly before: Map<string, Uint8Array | null>
  beforeBytes: number
  /** before's keys in the iterator's order, made when a page needs them. */
  sorted: string[] | undefined
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1')
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b)
}

/** Whether `key` is within `range`. */
export function inRange(range: KeyRange, key: Uint8Array): boolean {
  if (range.low !== undefined) {
    const order = compareBytes(key, range.low)
    if (order < 0 || (order === 0 && range.lowExclusive)) return false
  }
  if (range.high !== undefined) {
    const order = compareBytes(key, range.high)
    if (order > 0 || (order === 0 && range.highExclusive)) return false
  }
  return true
}

/** The part of `range` a walk in `reverse` or not has still to cover from `position` (after it, or from it when inclusive). */
export function rangeFrom(range: KeyRange, reverse: boolean, position: Uint8Array | undefined, inclusive: boolean): KeyRange {
  if (position === undefined) return range
  const bound = reverse ? range.high : range.low
  const order = bound === undefined ? (reverse ? -1 : 1) : compareBytes(position, bound)
  // The position narrows the range only when it is past the range's own start.
  const narrows = reverse ? order < 0 || (order === 0 && !inclusive) : order > 0 || (order === 0 && !inclusive)
  if (!narrows) return range
  return reverse ? { ...range, high: position, highExclusive: !inclusive } : { ...range, low: position, lowExclusive: !inclusive }
}

export class ShardIterators {
  private readonly open = new Map<number, OpenIterator>()
  /** Iterators expired for holding too much, by id: their next read fails with this. */
  private readonly expired = new Map<number, EngineError>()
  private beforeBytes = 0

  constructor(
    private readonly table: Table,
    private readonly shard: number,
    private readonly snapshotBytesMax = snapshotBytesMaxDefault,
  ) {}

  /** Open iterators (those with a snapshot to keep). */
  get size(): number {
    return this.open.size
  }

  /** Before-image bytes held by all of them. */
  get snapshotBytes(): number {
    return this.beforeBytes
  }

  /**
   * Called with each durable batch just before the table applies it: keeps the before-image of each key it
   * changes, for each open iterator whose range holds the key and has none for it yet.
   */
  capture(body: Uint8Array, recordCount: number): void {
    if (this.open.size === 0) return
    const keys: Uint8Array[] = []
    const names: string[] = []
    const wanting: OpenIterator[][] = []
    forEachRecord(body, recordCount, 'trust', (record) => {
      let name: string | undefined
      let those: OpenIterator[] | undefined
      for (const iterator of this.open.values()) {
        if (!inRange(iterator.range, record.key)) continue
        name ??= latin1(record.key)
        if (iterator.before.has(name)) continue
        ;(those ??= []).push(iterator)
      }
      if (those === undefined) return
      keys.push(record.key)
      names.push(name!)
      wanting.push(those)
    })
    if (keys.length === 0) return
    // One lookup for the whole batch: the values as they are before it applies.
    const answers = this.table.getPacked(packKeys(keys), keys.length)
    let index = 0
    forEachPackedAnswer(answers, keys.length, (value) => {
      const name = names[index]!
      const image = value === undefined ? null : value.slice()
      const bytes = beforeImageOverheadBytes + name.length + (image?.length ?? 0)
      for (const iterator of wanting[index]!) {
        if (iterator.before.has(name)) continue // the batch changes the key twice: the first image holds
        iterator.before.set(name, image)
        iterator.sorted = undefined
        iterator.beforeBytes += bytes
        this.beforeBytes += bytes
      }
      index++
    })
    while (this.beforeBytes > this.snapshotBytesMax) this.expireLargest()
  }

  /**
   * The next page of iterator `id`, of at most `entries` entries and about `bytes` bytes: opened with
   * `open` on its first request (its snapshot is the table now), moved to `seek` first when given (with
   * the entries it may still give).
   */
  read(
    id: number,
    open: IteratorOpen | undefined,
    seek: { target: Uint8Array; remaining: number } | undefined,
    entries: number,
    bytes: number,
  ): IteratorPage {
    const expired = this.expired.get(id)
    if (expired !== undefined) throw expired
    let iterator = this.open.get(id)
    if (open !== undefined) {
      if (iterator !== undefined) throw new RangeError(`iterator ${id} is already open`)
      iterator = {
        id,
        range: open,
        reverse: open.reverse,
        values: open.values,
        remaining: open.limit,
        position: undefined,
        positionInclusive: false,
        before: new Map(),
        beforeBytes: 0,
        sorted: undefined,
      }
      this.open.set(id, iterator)
    }
    if (iterator === undefined) throw new EngineError('ITERATOR_CLOSED', `shard ${this.shard}: iterator ${id} is not open`)
    if (seek !== undefined) {
      iterator.position = seek.target
      iterator.positionInclusive = true
      iterator.remaining = seek.remaining
    }
    if (!(Number.isInteger(entries) && entries >= 1)) throw new RangeError(`entries must be a positive integer, got ${entries}`)
    const empty: IteratorPage = { packed: new Uint8Array(0), count: 0, done: true }
    for (;;) {
      if (iterator.remaining <= 0) return empty
      const limit = Math.min(entries, iterator.remaining)
      const span = rangeFrom(iterator.range, iterator.reverse, iterator.position, iterator.positionInclusive)
      const page = this.table.readRange(span, iterator.reverse, limit, bytes, iterator.values)
      const result =
        iterator.before.size === 0
          ? { ...page, last: lastPackedKey(page.packed, page.count, iterator.values) }
          : this.correct(iterator, span, page, limit)
      // The position is kept as a copy: the page's buffer leaves this thread.
      iterator.position = result.last === undefined ? undefined : new Uint8Array(result.last)
      iterator.positionInclusive = false
      if (result.count > 0) {
        iterator.remaining -= result.count
        return { packed: result.packed, count: result.count, done: !result.more || iterator.remaining <= 0 }
      }
      // Every entry of the page was added after the snapshot: go on from the page's end.
      if (!result.more) return empty
    }
  }

  close(id: number): void {
    const iterator = this.open.get(id)
    this.expired.delete(id)
    if (iterator === undefined) return
    this.beforeBytes -= iterator.beforeBytes
    this.open.delete(id)
  }

  closeAll(): void {
    this.open.clear()
    this.expired.clear()
    this.beforeBytes = 0
  }

  /**
   * A page read from the table now, corrected by the before-images in its span: the span runs from the
   * page's start to its last entry, or to the range's end when the page reached it.
   */
  private correct(
    iterator: OpenIterator,
    span: KeyRange,
    page: { packed: Uint8Array; count: number; more: boolean },
    limit: number,
  ): { packed: Uint8Array; count: number; more: boolean; last: Uint8Array | undefined } {
    const current: [Uint8Array, Uint8Array][] = []
    forEachPackedEntry(page.packed, page.count, iterator.values, (key, value) => current.push([key, value ?? new Uint8Array(0)]))
    const end = page.more ? current[current.length - 1]![0] : undefined
    const spanToEnd: KeyRange =
      end === undefined
        ? span
        : iterator.reverse
          ? { ...span, low: end, lowExclusive: false }
          : { ...span, high: end, highExclusive: false }
    iterator.sorted ??= [...iterator.before.keys()].sort()
    if (iterator.reverse) iterator.sorted.reverse()
    const images = iterator.sorted.filter((name) => inRange(spanToEnd, Buffer.from(name, 'latin1')))
    if (iterator.reverse) iterator.sorted.reverse()
    const merged: [Uint8Array, Uint8Array][] = []
    const sign = iterator.reverse ? -1 : 1
    let index = 0
    for (const name of images) {
      const key = Buffer.from(name, 'latin1')
      while (index < current.length && sign * compareBytes(current[index]![0], key) < 0) merged.push(current[index++]!)
      if (index < current.length && compareBytes(current[index]![0], key) === 0) index++ // the image replaces it
      const image = iterator.before.get(name)!
      if (image !== null) merged.push([key, image])
    }
    while (index < current.length) merged.push(current[index++]!)
    if (merged.length > limit) {
      const kept = merged.slice(0, limit)
      return { packed: packEntries(kept, iterator.values), count: limit, more: true, last: kept[limit - 1]![0] }
    }
    return { packed: packEntries(merged, iterator.values), count: merged.length, more: page.more, last: merged.at(-1)?.[0] ?? end }
  }

  private expireLargest(): void {
    let largest: OpenIterator | undefined
    for (const iterator of this.open.values()) if (largest === undefined || iterator.beforeBytes > largest.beforeBytes) largest = iterator
    if (largest === undefined) return
    const held = largest.beforeBytes
    this.close(largest.id)
    this.expired.set(
      largest.id,
      new EngineError(
        'ITERATOR_EXPIRED',
        `shard ${this.shard}: iterator ${largest.id} was closed: it held ${held} bytes of values changed since it began, ` +
          `over the shard's bound of ${this.snapshotBytesMax} for all its iterators; open a new one`,
        { details: { heldBytes: held, snapshotBytesMax: this.snapshotBytesMax } },
      ),
    )
  }
}
