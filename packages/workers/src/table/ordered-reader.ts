// Reading a shard's ordered view from the façade's thread, without a message: what makes a short range
// (an iterator whose whole answer fits in one page, like "the next 10 after X") cost microseconds instead
// of a round trip to the shard's thread (tens to hundreds of microseconds on this kind of VM).
//
// The shard's table lives in a shared WebAssembly memory (wasm-table.ts). Only the shard's thread writes
// it; this reader walks the B+-tree's nodes and entries there (assembly/ordered.ts lays them out;
// layout.ts is this side's copy, checked against the module when it loads), the way rangeList does.
//
// Consistency is a seqlock over the view state (protocol.ts): the shard bumps the sequence word to odd
// before the first durable batch waits to go into its table (before any of that batch's writers is
// answered), and to even once every waiting batch is applied and the root published. A read:
//   1. loads the sequence (Atomics.load); odd: the table is behind what was acknowledged, or changing: no
//      answer (the caller asks the shard, which applies first);
//   2. walks and copies out the entries with plain loads, which may see a change half made: every address,
//      count and length is checked against the memory and the layout, every loop is bounded, so a torn
//      read ends in "no answer", never in a fault or a hang;
//   3. reads the sequence again, with Atomics.add(0) (a read-don't-modify-write: ordered after the loads
//      before it, which a plain load is not; Boehm, "Can seqlocks get along with programming language
//      memory models?", 2012); unchanged: nothing changed during the walk, and the copy is the view as of
//      one moment between batches, holding every write acknowledged before step 1 (its batch was applied
//      when the sequence went even) and none whose batch was not yet durable (the table holds only
//      durable data). Changed: no answer.
// So a write acknowledged before the read is in it (read-your-writes holds), and nothing it returns was
// not durable (the durability contract's second rule).

import { keyBytesMax, valueBytesMax } from '../format/record.js'
import { viewSlotRoot, viewSlotSequence, type KeyRange, type OrderedViewShare } from '../protocol.js'
import { entryHeaderBytes, entryKeyLengthMask, orderedLayout, type WasmMemory } from './layout.js'

const {
  leafPrefixes,
  leafEntries,
  innerPrefixes,
  innerSeparators,
  innerChildren,
  leafCapacity,
  innerCapacity,
  nodeMarker,
  separatorMarker,
} = orderedLayout
/** Deeper than any tree (assembly/ordered.ts depthMax). */
const depthMax = 16
/** Leaves a walk may cross to find its first entry: they are never empty (but the root), so one is enough; torn reads aside. */
const emptyLeavesMax = 2

/** A read that saw the view change under it: thrown inside the walk, answered as "no answer". */
class TornRead extends Error {}
const torn = new TornRead('the ordered view changed during the read')

/**
 * A range read in place: the entries Table.readRange would answer, copied out (each key and value a view
 * into one buffer of the page's own; values empty when not asked for), whether the range holds more
 * after them, and the view's sequence they were read at (even).
 */
export interface InPlaceRead {
  keys: Uint8Array[]
  values: Uint8Array[]
  more: boolean
  sequence: number
}

export class OrderedReader {
  private readonly state: Int32Array
  private buffer: ArrayBufferLike | undefined
  private bytes: Uint8Array = new Uint8Array(0)
  private view: DataView = new DataView(new ArrayBuffer(0))
  // The search key of the walk in progress, and its prefix (its first 8 bytes, big-endian, as two u32).
  private key: Uint8Array = new Uint8Array(0)
  private keyHigh = 0
  private keyLow = 0
  private exact = false

  constructor(
    private readonly memory: WasmMemory,
    state: SharedArrayBuffer,
  ) {
    this.state = new Int32Array(state)
  }

  static from(share: OrderedViewShare): OrderedReader {
    return new OrderedReader(share.memory, share.state)
  }

  /**
   * The entries within `range` in key order (`reverse`: descending), those Table.readRange gives (at most
   * `limit`, about `budgetBytes` as it counts them, with or without `values`), read now from the shared
   * memory and copied out; or
   * undefined when it cannot be read consistently now (the shard has acknowledged writes not yet in its
   * table, or changed it during the walk): ask the shard instead.
   */
  read(range: KeyRange, reverse: boolean, limit: number, budgetBytes: number, values: boolean): InPlaceRead | undefined {
    const sequence = Atomics.load(this.state, viewSlotSequence)
    if ((sequence & 1) !== 0) return undefined
    let answer: Omit<InPlaceRead, 'sequence'> | undefined
    try {
      answer = this.walk(Atomics.load(this.state, viewSlotRoot) >>> 0, range, reverse, limit, budgetBytes, values)
    } catch (error) {
      // A torn read: out of the memory (a RangeError from the DataView) or against the layout.
      if (!(error instanceof TornRead || error instanceof RangeError)) throw error
      answer = undefined
    }
    if (answer === undefined || Atomics.add(this.state, viewSlotSequence, 0) !== sequence) return undefined
    return { ...answer, sequence }
  }

  private walk(
    root: number,
    range: KeyRange,
    reverse: boolean,
    limit: number,
    budgetBytes: number,
    values: boolean,
  ): Omit<InPlaceRead, 'sequence'> {
    this.refresh()
    let leaf: number
    let index: number
    const near = reverse ? range.high : range.low
    const nearExclusive = reverse ? range.highExclusive : range.lowExclusive
    if (near === undefined) {
      // The first (last) leaf: down the tree's left (right) edge.
      let node = root
      for (let depth = 0; !this.isLeaf(node); depth++) {
        if (depth >= depthMax) throw torn
        node = this.child(node, reverse ? this.count(node, innerCapacity) - 1 : 0)
      }
      leaf = node
      index = reverse ? this.count(leaf, leafCapacity) - 1 : 0
    } else {
      this.setKey(near)
      leaf = this.descend(root)
      index = this.lowerBound(leaf)
      if (reverse) {
        if (!(this.exact && !nearExclusive)) index--
      } else if (nearExclusive && this.exact) {
        index++
      }
    }
    // The far bound ends the walk; the near one placed its start.
    const far = reverse ? range.low : range.high
    const farExclusive = reverse ? range.lowExclusive : range.highExclusive
    const pastSign = reverse ? -1 : 1
    // Each listed entry's address, key length and value length.
    const listed: number[] = []
    let count = 0
    let bytes = 0
    let copyBytes = 0
    let more = false
    let emptyLeaves = 0
    for (;;) {
      // Settle on an entry: past a leaf's end (start), on to the next (previous) leaf.
      while (leaf !== 0 && (index < 0 || index >= this.count(leaf, leafCapacity))) {
        leaf = this.view.getUint32(leaf + (reverse ? 8 : 12), true)
        if (leaf === 0) break
        if (!this.isLeaf(leaf)) throw torn
        const leafEntryCount = this.count(leaf, leafCapacity)
        if (leafEntryCount === 0 && ++emptyLeaves > emptyLeavesMax) throw torn
        index = reverse ? leafEntryCount - 1 : 0
      }
      if (leaf === 0) break
      const entry = this.view.getUint32(leaf + leafEntries + 4 * index, true)
      const keyLength = this.entryKeyLength(entry)
      if (far !== undefined) {
        const order = this.compareStored(far, entry + entryHeaderBytes, keyLength) * -pastSign
        if (order > 0 || (order === 0 && farExclusive)) break
      }
      const valueLength = this.view.getUint32(entry + 4, true)
      if (valueLength > valueBytesMax || entry + entryHeaderBytes + keyLength + valueLength > this.bytes.length) throw torn
      const size = values ? 8 + keyLength + valueLength : 4 + keyLength
      if (count === limit || (count > 0 && bytes + size > budgetBytes)) {
        more = true
        break
      }
      listed.push(entry, keyLength, valueLength)
      count++
      bytes += size
      copyBytes += keyLength + (values ? valueLength : 0)
      index += pastSign
    }
    // Copied out while the view is as the walk saw it (the caller checks the sequence after): an entry's key
    // and value lie together, so one copy each.
    const copy = new Uint8Array(copyBytes)
    const keys: Uint8Array[] = []
    const valuesOut: Uint8Array[] = []
    const empty = new Uint8Array(0)
    let offset = 0
    for (let item = 0; item < listed.length; item += 3) {
      const start = listed[item]! + entryHeaderBytes
      const keyLength = listed[item + 1]!
      const valueLength = values ? listed[item + 2]! : 0
      copy.set(this.bytes.subarray(start, start + keyLength + valueLength), offset)
      keys.push(copy.subarray(offset, offset + keyLength))
      valuesOut.push(values ? copy.subarray(offset + keyLength, offset + keyLength + valueLength) : empty)
      offset += keyLength + valueLength
    }
    return { keys, values: valuesOut, more }
  }

  /** Takes the memory's current buffer: the shard may have grown it since the last read. */
  private refresh(): void {
    const buffer = this.memory.buffer
    if (buffer === this.buffer) return
    this.buffer = buffer
    this.bytes = new Uint8Array(buffer)
    this.view = new DataView(buffer)
  }

  private setKey(key: Uint8Array): void {
    this.key = key
    const byte = (index: number): number => (index < key.length ? key[index]! : 0)
    this.keyHigh = ((byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3)) >>> 0
    this.keyLow = ((byte(4) << 24) | (byte(5) << 16) | (byte(6) << 8) | byte(7)) >>> 0
  }

  /** A node's marker checked, whether it is a leaf. */
  private isLeaf(node: number): boolean {
    if ((this.view.getUint32(node, true) & entryKeyLengthMask) !== nodeMarker) throw torn
    return this.bytes[node + 6] !== 0
  }

  private count(node: number, capacity: number): number {
    const count = this.view.getUint16(node + 4, true)
    if (count > capacity) throw torn
    return count
  }

  private child(node: number, index: number): number {
    if (index < 0) throw torn
    return this.view.getUint32(node + innerChildren + 4 * index, true)
  }

  private entryKeyLength(entry: number): number {
    const length = this.view.getUint32(entry, true) & entryKeyLengthMask
    if (length > keyBytesMax) throw torn
    return length
  }

  /** Down to the leaf whose range holds the search key (assembly/ordered.ts descend). */
  private descend(root: number): number {
    let node = root
    for (let depth = 0; !this.isLeaf(node); depth++) {
      if (depth >= depthMax) throw torn
      // The last child whose separator is <= the key (childIndex).
      let low = 1
      let high = this.count(node, innerCapacity)
      while (low < high) {
        const middle = (low + high) >>> 1
        if (this.compareSeparator(node, middle) >= 0) low = middle + 1
        else high = middle
      }
      node = this.child(node, low - 1)
    }
    return node
  }

  /** The first index in the leaf whose key is >= the search key; `exact` tells whether it is equal (lowerBound). */
  private lowerBound(leaf: number): number {
    const count = this.count(leaf, leafCapacity)
    let low = 0
    let high = count
    while (low < high) {
      const middle = (low + high) >>> 1
      if (this.compareEntry(leaf, middle) > 0) low = middle + 1
      else high = middle
    }
    this.exact = low < count && this.compareEntry(leaf, low) === 0
    return low
  }

  /** The search key against an inner node's separator `index` (>= 1): prefixes first, then the bytes (compareSeparator). */
  private compareSeparator(node: number, index: number): number {
    const order = this.comparePrefix(node + innerPrefixes + 8 * index)
    if (order !== 0) return order
    const separator = this.view.getUint32(node + innerSeparators + 4 * index, true)
    if ((this.view.getUint32(separator, true) & entryKeyLengthMask) !== separatorMarker) throw torn
    const length = this.view.getUint32(separator + 4, true)
    if (length > keyBytesMax) throw torn
    return this.compareStored(this.key, separator + 8, length)
  }

  /** The search key against a leaf's entry `index` (compareEntry). */
  private compareEntry(leaf: number, index: number): number {
    const order = this.comparePrefix(leaf + leafPrefixes + 8 * index)
    if (order !== 0) return order
    const entry = this.view.getUint32(leaf + leafEntries + 4 * index, true)
    return this.compareStored(this.key, entry + entryHeaderBytes, this.entryKeyLength(entry))
  }

  /** The search key's prefix against one stored as a u64 (little-endian in memory). */
  private comparePrefix(address: number): number {
    const high = this.view.getUint32(address + 4, true)
    if (this.keyHigh !== high) return this.keyHigh < high ? -1 : 1
    const low = this.view.getUint32(address, true)
    return this.keyLow === low ? 0 : this.keyLow < low ? -1 : 1
  }

  /** Bytewise order of `key` against the `length` bytes at `address`: -1, 0 or 1. */
  private compareStored(key: Uint8Array, address: number, length: number): number {
    const bytes = this.bytes
    if (address + length > bytes.length) throw torn
    const shorter = Math.min(key.length, length)
    for (let index = 0; index < shorter; index++) {
      const stored = bytes[address + index]!
      if (key[index] !== stored) return key[index]! < stored ? -1 : 1
    }
    return key.length < length ? -1 : key.length > length ? 1 : 0
  }
}
