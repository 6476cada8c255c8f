// Reading in order across shards. Each shard reads pages of its own keys in order from its ordered view
// (workers/src/iterators.ts); an iterator here merges the shards' streams into one (a k-way merge on the
// main thread), fetching pages from each shard as it needs them and one page ahead:
// - the first page is asked of every shard when the iterator is made, so each shard's snapshot is taken
//   then: the iterator sees every write acknowledged before it was made, and none made after, per shard.
//   There is no snapshot across shards: a write acknowledged on one shard while the iterator is being made
//   can be seen there and not another write, on another shard, acknowledged before it;
// - pages start small (a range query of 10 costs one message per shard) and grow to `pageEntriesMax`
//   entries or `pageBytesMax` bytes: a scan of a million entries is a few hundred messages, never the whole
//   range at once;
// - `limit` and `reverse` go down to the shards: no shard sends more than the limit;
// - keys and values are views into the page they came in (a page is at most pageBytesMax, or one entry).

import { EngineError, type IteratePage, type IteratorOpen, type IteratorPage, type KeyRange } from '@ringkv/workers'
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
  private closed: EngineError | undefined
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
    dropped.register(this, { clients, id: this.id }, this.dropToken)
    // Each shard's snapshot is taken when it takes this first request: now, not at the first next().
    if (limit > 0) for (const stream of this.streams) this.fetch(stream, true)
    else for (const stream of this.streams) stream.shardDone = true
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
      do {
        entries.push([best.keys[best.index]!, best.values[best.index]!])
        best.index++
        this.given++
      } while (
        entries.length < size &&
        this.given < this.limit &&
        best.buffered > 0 &&
        others.every((other) => {
          const order = Buffer.compare(best.keys[best.index]!, other.keys[other.index]!)
          return reverse ? order > 0 : order < 0
        })
      )
    }
    return entries
  }

  /** Every entry left. */
  all(): Promise<Entry[]> {
    return this.nextv(Number.POSITIVE_INFINITY)
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
      stream.seek = copy
      stream.shardDone = this.given >= this.limit
    }
  }

  /** Ends the iterator and releases its snapshots on the shards. */
  async close(): Promise<void> {
    if (this.closed !== undefined) return
    this.closed = new EngineError('ITERATOR_CLOSED', 'the iterator is closed')
    dropped.unregister(this.dropToken)
    await Promise.all(this.streams.map((stream) => stream.client.closeIterator(this.id)))
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Entry, void, undefined> {
    try {
      for (;;) {
        const entries = await this.nextv(1000)
        if (entries.length === 0) return
        yield* entries
      }
    } finally {
      await this.close()
    }
  }

  private check(): void {
    if (this.closed !== undefined) throw this.closed
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

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for await (const entry of this.entries) yield this.part(entry)
  }
}
