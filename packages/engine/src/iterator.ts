// Reading in order across shards. Each shard reads pages of its own keys in order from its ordered view
// (workers/src/iterators.ts); an iterator here merges the shards' streams into one (a k-way merge on the
// main thread), fetching pages from each shard as it needs them and one page ahead:
// - the first page is read from every shard when the iterator is made, so each shard's snapshot is taken
//   then: the iterator sees every write acknowledged before it was made, and none made after, per shard.
//   There is no snapshot across shards: a write acknowledged on one shard while the iterator is being made
//   can be seen there and not another write, on another shard, acknowledged before it;
// - that first page is read in place when it can be (ShardClient.readInPlace: from the shard's memory, on
//   this thread, no message), and when it holds the shard's whole answer (the range ends in it, or the
//   limit does) the shard is never asked at all and keeps no snapshot: a range query of 10 costs no
//   message. Otherwise the page is asked of the shard, which takes the snapshot then;
// - pages start small (a range query of 10 costs one message per shard) and grow to `pageEntriesMax`
//   entries or `pageBytesMax` bytes: a scan of a million entries is a few hundred messages, never the whole
//   range at once;
// - `limit` and `reverse` go down to the shards: no shard sends more than the limit;
// - keys and values are views into the page they came in (a page is at most pageBytesMax, or one entry).

import {
  EngineError,
  rangeFrom,
  type InPlaceRead,
  type IteratePage,
  type IteratorOpen,
  type IteratorPage,
  type KeyRange,
} from '@ringkv/workers'
import type { ShardClient } from './shard-client.js'
import { argumentError, keyBytes } from './input.js'

/** A page holds at most this many entries and bytes (one larger entry comes alone). */
export const pageEntriesMax = 16 * 1024
export const pageBytesMax = 1024 * 1024
/** The first page of each shard, before the iterator has shown what it reads. */
const firstPageEntries = 64
const firstPageBytes = 64 * 1024

export type Entry = [key: Uint8Array, value: Uint8Array]

/** The state an engine shares with its iterators: they fail once it closes. */
export interface IteratorOwner {
  readonly closed: boolean
}

/** One shard's stream: the entries of its current page not given yet, a page read ahead, the page being fetched. */
class ShardStream {
  keys: Uint8Array[] = []
  values: Uint8Array[] = []
  index = 0
  /** A page that came while the current one was still being given out. */
  ahead: IteratorPage | undefined
  /** The shard sent its last page for this iterator. */
  shardDone = false
  fetching: Promise<void> | undefined
  /** A seek's target, sent with the stream's next fetch. */
  seek: Uint8Array | undefined
  /** The shard holds this iterator (it was asked for a page): close() tells it to forget it. */
  opened = false
  /**
   * The stream's whole answer, read in place when the iterator was made (the shard was never asked): the
   * view's sequence then, and the entries, all of the range's on this shard (`more` false) or the first
   * `limit` of them. A seek is answered from them, or from the view if it has not changed since.
   */
  inPlace: InPlaceRead | undefined
  pageEntries = firstPageEntries
  pageBytes = firstPageBytes

  constructor(readonly client: ShardClient) {}

  get buffered(): number {
    return this.keys.length - this.index
  }
}

// Closes a shard's side of an iterator that was dropped without close(): its snapshot goes with it.
const dropped = new FinalizationRegistry<{ clients: readonly ShardClient[]; id: number }>(({ clients, id }) => {
  for (const client of clients) void client.closeIterator(id)
})

let nextIteratorId = 1

/**
 * An ordered iterator over the whole database: next() gives the next entry (undefined at the end),
 * nextv(n) up to n of them, all() the rest; seek() moves it; close() ends it. Level's shape.
 */
export class EngineIterator {
  readonly id = nextIteratorId++
  private readonly streams: ShardStream[]
  private readonly open: IteratorOpen
  private given = 0
  /** Why the iterator can read no more: closed, or failed (a shard's error, an expired snapshot). */
  private closed: EngineError | undefined
  /** close() was called: the shards were told to forget it. */
  private ended = false
  /** Bumped by seek(): pages fetched for an earlier generation are dropped. */
  private generation = 0
  private readonly dropToken = {}

  constructor(
    private readonly owner: IteratorOwner,
    clients: readonly ShardClient[],
    range: KeyRange,
    reverse: boolean,
    private readonly limit: number,
    values: boolean,
  ) {
    this.open = { ...range, reverse, limit, values }
    this.streams = clients.map((client) => new ShardStream(client))
    // Each shard's snapshot is taken now, not at the first next(): read in place, or by the shard when it
    // takes this first request.
    if (limit > 0) for (const stream of this.streams) this.start(stream)
    else for (const stream of this.streams) stream.shardDone = true
    const opened = this.streams.filter((stream) => stream.opened).map((stream) => stream.client)
    if (opened.length > 0) dropped.register(this, { clients: opened, id: this.id }, this.dropToken)
  }

  /** The stream's first page: in place when that is its whole answer, else asked of the shard. */
  private start(stream: ShardStream): void {
    const page = stream.client.readInPlace(this.open, this.open.reverse, this.limit, stream.pageEntries, stream.pageBytes, this.open.values)
    if (page === undefined) {
      this.fetch(stream, true)
      return
    }
    stream.shardDone = true
    stream.keys = page.keys
    stream.values = page.values
    stream.inPlace = page
  }

  /** The next entry in order, or undefined at the end. */
  async next(): Promise<Entry | undefined> {
    const entries = await this.nextv(1)
    return entries[0]
  }

  /** Up to `size` next entries (fewer only at the end). */
  async nextv(size: number): Promise<Entry[]> {
    if (!(Number.isInteger(size) && size >= 0) && size !== Number.POSITIVE_INFINITY) {
      throw argumentError(RangeError, 'INVALID_ARGUMENT', `size must be an integer >= 0, got ${String(size)}`)
    }
    this.check()
    const entries: Entry[] = []
    const reverse = this.open.reverse
    while (entries.length < size && this.given < this.limit) {
      // Every stream that may still have entries needs one in hand to be compared.
      for (const stream of this.streams) {
        while (stream.buffered === 0) {
          if (stream.ahead !== undefined) {
            this.load(stream, stream.ahead)
            continue
          }
          if (stream.shardDone) break
          if (stream.fetching === undefined) this.fetch(stream, false)
          await stream.fetching
          this.check()
        }
      }
      let best: ShardStream | undefined
      for (const stream of this.streams) {
        if (stream.buffered === 0) continue
        if (best === undefined) {
          best = stream
          continue
        }
        const order = Buffer.compare(stream.keys[stream.index]!, best.keys[best.index]!)
        if (reverse ? order > 0 : order < 0) best = stream
      }
      if (best === undefined) break
      // Take from the best stream while it stays ahead of every other's head (one shard: the whole page).
      const others = this.streams.filter((stream) => stream !== best && stream.buffered > 0)
      const heads = others.map((other) => other.keys[other.index]!)
      const { keys, values } = best
      const end = Math.min(keys.length, best.index + size - entries.length, best.index + this.limit - this.given)
      let index = best.index
      do {
        entries.push([keys[index]!, values[index]!])
        index++
      } while (index < end && aheadOfAll(keys[index]!, heads, reverse))
      this.given += index - best.index
      best.index = index
    }
    return entries
  }

  /** Every entry left; then the iterator is closed (as Level's all() does). */
  async all(): Promise<Entry[]> {
    try {
      return await this.nextv(Number.POSITIVE_INFINITY)
    } finally {
      await this.close()
    }
  }

  /**
   * Moves the iterator to the first key >= `target` (in reverse: <= target) within its range; the next
   * entry is read from there, in the same snapshot. Entries already given count against the limit.
   */
  seek(target: string | Uint8Array): void {
    const bytes = keyBytes(target, 'target')
    this.check()
    this.generation++
    const copy = bytes === target ? new Uint8Array(bytes) : bytes
    for (const stream of this.streams) {
      stream.keys = []
      stream.values = []
      stream.index = 0
      stream.ahead = undefined
      stream.fetching = undefined
      stream.shardDone = this.given >= this.limit
      if (stream.inPlace !== undefined) this.seekInPlace(stream, copy)
      else stream.seek = copy
    }
  }

  /**
   * A seek on a stream read in place (the shard holds no snapshot of it): from the entries read then when
   * they are the shard's whole range; else read in place again, which is the same snapshot if the view has
   * not changed since (the same sequence). If it has, the snapshot is gone: the stream fails with
   * ITERATOR_EXPIRED, as one whose before-images grew too large does.
   */
  private seekInPlace(stream: ShardStream, target: Uint8Array): void {
    const held = stream.inPlace!
    const reverse = this.open.reverse
    const remaining = this.limit - this.given
    if (stream.shardDone) return
    stream.shardDone = true
    // The first held entry at or past the target (held keys are in the iterator's order).
    const from = held.keys.findIndex((key) => {
      const order = Buffer.compare(key, target)
      return reverse ? order <= 0 : order >= 0
    })
    const start = from === -1 ? held.keys.length : from
    if (!held.more || held.keys.length - start >= remaining) {
      stream.keys = held.keys.slice(start)
      stream.values = held.values.slice(start)
      return
    }
    const range = rangeFrom(this.open, reverse, target, true)
    const page = stream.client.readInPlace(range, reverse, remaining, pageEntriesMax, pageBytesMax, this.open.values)
    if (page !== undefined && page.sequence === held.sequence) {
      stream.keys = page.keys
      stream.values = page.values
      return
    }
    this.closed ??= new EngineError(
      'ITERATOR_EXPIRED',
      `the iterator read shard ${stream.client.shard} in place when it was made, and a seek needs entries past those it read ` +
        'after that shard changed: its snapshot there is gone; make a new iterator',
    )
  }

  /** Ends the iterator and releases its snapshots on the shards. */
  async close(): Promise<void> {
    if (this.ended) return
    this.ended = true
    dropped.unregister(this.dropToken)
    await Promise.all(this.streams.filter((stream) => stream.opened).map((stream) => stream.client.closeIterator(this.id)))
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Entry> {
    return new Batches(
      (size) => this.nextv(size),
      () => this.close(),
    )
  }

  private check(): void {
    if (this.closed !== undefined) throw this.closed
    // Made only when used: an Error captures a stack, which costs more than a short range query.
    if (this.ended) throw (this.closed = new EngineError('ITERATOR_CLOSED', 'the iterator is closed'))
    if (this.owner.closed) {
      this.closed = new EngineError('ITERATOR_CLOSED', 'the iterator was closed with its database')
      throw this.closed
    }
  }

  /** Fetches the stream's next page (the first one opens the shard's side of the iterator). */
  private fetch(stream: ShardStream, first: boolean): void {
    const generation = this.generation
    const seek = stream.seek
    stream.seek = undefined
    if (first) stream.opened = true
    const request: IteratePage = {
      id: this.id,
      entries: Math.min(stream.pageEntries, this.limit - this.given),
      bytes: stream.pageBytes,
      ...(first ? { open: this.open } : {}),
      ...(seek === undefined ? {} : { seek, remaining: this.limit - this.given }),
    }
    stream.fetching = stream.client.iterate(request).then(
      (page) => {
        if (generation !== this.generation) return // a seek came after: this page is not wanted
        stream.fetching = undefined
        stream.shardDone = page.done
        if (stream.buffered === 0 && stream.ahead === undefined) this.load(stream, page)
        else stream.ahead = page
      },
      (error: unknown) => {
        if (generation !== this.generation) return
        stream.fetching = undefined
        this.closed ??= error instanceof EngineError ? error : new EngineError('SHARD_FAILED', String(error), { cause: error })
      },
    )
    stream.pageEntries = Math.min(pageEntriesMax, stream.pageEntries * 4)
    stream.pageBytes = Math.min(pageBytesMax, stream.pageBytes * 4)
  }

  /** Makes `page` the stream's current page, and reads the next one ahead while it is given out. */
  private load(stream: ShardStream, page: IteratorPage): void {
    const keys: Uint8Array[] = []
    const values: Uint8Array[] = []
    const packed = page.packed
    const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength)
    const withValues = this.open.values
    const empty = new Uint8Array(0)
    let offset = 0
    for (let index = 0; index < page.count; index++) {
      const keyLength = view.getUint32(offset, true)
      keys.push(packed.subarray(offset + 4, offset + 4 + keyLength))
      offset += 4 + keyLength
      if (!withValues) {
        values.push(empty)
        continue
      }
      const valueLength = view.getUint32(offset, true)
      values.push(packed.subarray(offset + 4, offset + 4 + valueLength))
      offset += 4 + valueLength
    }
    stream.keys = keys
    stream.values = values
    stream.index = 0
    if (stream.ahead === page) stream.ahead = undefined
    if (!stream.shardDone && stream.fetching === undefined && this.given < this.limit && this.closed === undefined) {
      this.fetch(stream, false)
    }
  }
}

/** Whether `key` comes before every one of `heads` in the iterator's order. */
function aheadOfAll(key: Uint8Array, heads: readonly Uint8Array[], reverse: boolean): boolean {
  for (const head of heads) {
    const order = Buffer.compare(key, head)
    if (reverse ? order <= 0 : order >= 0) return false
  }
  return true
}

/** An iterator that gives one part of each entry (its key, or its value): what keys() and values() return. */
export class MappedIterator<T> {
  constructor(
    private readonly entries: EngineIterator,
    private readonly part: (entry: Entry) => T,
  ) {}

  async next(): Promise<T | undefined> {
    const entry = await this.entries.next()
    return entry === undefined ? undefined : this.part(entry)
  }

  async nextv(size: number): Promise<T[]> {
    return (await this.entries.nextv(size)).map(this.part)
  }

  async all(): Promise<T[]> {
    return (await this.entries.all()).map(this.part)
  }

  seek(target: string | Uint8Array): void {
    this.entries.seek(target)
  }

  close(): Promise<void> {
    return this.entries.close()
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return new Batches(
      async (size) => (await this.entries.nextv(size)).map(this.part),
      () => this.entries.close(),
    )
  }
}

/** Entries `for await` takes from an iterator at once. */
const batchEntries = 1000

/**
 * What `for await` walks: entries taken from an iterator a batch at a time (nextv), each handed out as an
 * already settled promise; the iterator is closed at the end, on a break, or on an error. (An async
 * generator costs a generator resumption and more promises per entry: a scan ran about half as fast.)
 */
class Batches<T> implements AsyncIterableIterator<T> {
  private batch: T[] = []
  private index = 0
  private finished = false
  private refilling: Promise<IteratorResult<T, undefined>> | undefined

  constructor(
    private readonly take: (size: number) => Promise<T[]>,
    private readonly end: () => Promise<void>,
  ) {}

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.index < this.batch.length) return Promise.resolve({ value: this.batch[this.index++]!, done: false })
    // A next() while a batch is on its way waits for it (for await never does this; a caller may).
    if (this.refilling !== undefined) return this.refilling.then(() => this.next())
    this.refilling = this.refill().finally(() => (this.refilling = undefined))
    return this.refilling
  }

  async return(): Promise<IteratorResult<T, undefined>> {
    this.finished = true
    this.batch = []
    this.index = 0
    await this.end()
    return { value: undefined, done: true }
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this
  }

  private async refill(): Promise<IteratorResult<T, undefined>> {
    if (this.finished) return { value: undefined, done: true }
    try {
      this.batch = await this.take(batchEntries)
    } catch (error) {
      this.finished = true
      await this.end()
      throw error
    }
    this.index = 0
    if (this.batch.length === 0) return this.return()
    return { value: this.batch[this.index++]!, done: false }
  }
}
