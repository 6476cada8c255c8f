// The shard's ordered view: a B+-tree of the table's entry addresses in key order (bytewise; a key that is
// a prefix of another sorts first; the empty key first of all), beside the hash index, which stays the
// point-lookup path. It holds exactly the table's live entries: table.ts inserts an entry's address when
// a put adds its key, swaps the address when an overwrite moves the entry to another block, and removes it
// when a delete does. So it holds only durable data, as the table does.
//
// Why a B+-tree, and this one (measured on a million keys of 16 B / 100 B: see the README's "Reading in
// order"): its leaves are arrays walked in order, so a scan reads memory in sequence; it costs about 17
// bytes per entry (an adaptive radix tree over the same keys cost more in node headers and needs the key
// bytes at every level); an overwrite that keeps its entry's block (the common case) touches it not at all.
//
// Nodes and separators are blocks of the table's arena (table.ts), marked so that a walk of the arena
// (a checkpoint) skips them, and freed to the arena's free lists like entries.
//
//   leaf node (leafBytes = 784)
//   | offset | size      | field                                                                  |
//   |--------|-----------|------------------------------------------------------------------------|
//   | 0      | 4         | nodeMarker (0xFFFFFE) and size class (bits 24..31)                     |
//   | 4      | 2         | entry count                                                            |
//   | 6      | 1         | 1: a leaf                                                              |
//   | 8      | 4         | the previous leaf in key order (0: none)                               |
//   | 12     | 4         | the next leaf (0: none)                                                |
//   | 16     | 8 x 64    | each entry's key prefix: its first 8 bytes, big-endian, zero-padded    |
//   | 528    | 4 x 64    | each entry's address                                                   |
//
//   inner node (innerBytes = 976): child i holds keys >= separator i (i >= 1) and < separator i + 1
//   | 0      | 4         | nodeMarker and size class                                              |
//   | 4      | 2         | child count                                                            |
//   | 6      | 1         | 0: inner                                                               |
//   | 16     | 8 x 60    | separator i's key prefix (slot 0 unused)                               |
//   | 496    | 4 x 60    | separator i's block address (slot 0 unused)                            |
//   | 736    | 4 x 60    | child i's address                                                      |
//
//   separator block: the shortest key between the last key left of it and the first right of it (a prefix
//   of that first key), owned by one inner node: an entry may move or go; the separator stays right
//   | 0      | 4         | separatorMarker (0xFFFFFD) and size class                              |
//   | 4      | 4         | key length                                                             |
//   | 8      | k         | key bytes                                                              |
//
// A search compares prefixes first, as integers, and reads a key (an entry's or a separator's) only when
// the prefixes are equal. A leaf that fills splits in two halves, except the last leaf when the key goes
// at its end (keys that arrive in order): it stays full and the new leaf starts with that key alone, so
// that ordered loads fill their leaves. A leaf that empties is unlinked; one that falls under a quarter is
// merged with a sibling when both fit in three quarters. An inner node that empties is unlinked; a root
// with one child gives way to it.
//
// Room: a put of a new key can split a leaf and, above it, one inner node per level. reserveBatch
// (table.ts) makes room for what a batch can take before it applies anything, so that a split never runs
// out of room half way: first by a bound from the batch's size and the tree's shape (treeTallyBound), and,
// when that does not fit the memory limit, by counting the splits the batch's new keys can really cause
// (treeTallySplit, with each leaf's pending inserts counted in its header's byte 7, cleared after).

import { allocateBlock, freeBlock, sizeClassBytes, sizeClassOf, entryHeaderBytes } from './table'

export const nodeMarker: u32 = 0xfffffe
export const separatorMarker: u32 = 0xfffffd

const leafCapacity: u32 = 64
const innerCapacity: u32 = 60
const leafPrefixes: usize = 16
const leafEntries: usize = leafPrefixes + usize(leafCapacity) * 8
const leafBytes: u64 = u64(leafEntries) + u64(leafCapacity) * 4
const innerPrefixes: usize = 16
const innerSeparators: usize = innerPrefixes + usize(innerCapacity) * 8
const innerChildren: usize = innerSeparators + usize(innerCapacity) * 4
const innerBytes: u64 = u64(innerChildren) + u64(innerCapacity) * 4
/** Deeper than any tree: 2^32 entries in leaves half full under nodes half full is 7 levels. */
const depthMax: u32 = 16

let leafClass: u32 = 0
let innerClass: u32 = 0
let root: usize = 0
let leafNodes: u64 = 0
let innerNodes: u64 = 0
/** Inner levels above the leaves (0: the root is a leaf). */
let innerLevels: u32 = 0
/** The longest key ever put in the tree: no separator is longer (they are prefixes of keys). */
let keyLengthLongest: u32 = 0

// The path of the last descent: each inner node, and the child taken from it.
const pathNodes: usize = memory.data(depthMax * 4)
const pathSlots: usize = memory.data(depthMax * 4)
let pathDepth: u32 = 0
// An inner node's arrays plus one, while it splits.
const splitPrefixes: usize = memory.data((innerCapacity + 1) * 8)
const splitSeparators: usize = memory.data((innerCapacity + 1) * 4)
const splitChildren: usize = memory.data((innerCapacity + 1) * 4)

/**
 * Tallies, per size class (`tally`: a u32 per class, as reserveBatch counts), the blocks the tree can take
 * when `puts` puts whose longest key is `keyLengthMax` all add new keys: a bound from the tree's shape.
 * Leaves: a leaf splits once, and then its halves need 31 more keys to fill; a split at the end of the
 * last leaf leaves that leaf full, but happens once per 63 keys: at most every leaf there is now, plus one
 * per 8 puts (a margin over the one per 31 and two per 63 of the argument), and never more than the puts. Inner nodes:
 * each split needs a full node, which then needs 30 more children; each split adds one child above it: at
 * most (30 x inner nodes + leaf splits) / 29 + 1 splits, and as many new nodes again for new roots (x 2);
 * never more than the levels above each leaf split. Only a leaf split makes a separator (an inner split
 * moves one up), no longer than the longest key.
 */
export function treeTallyBound(tally: usize, puts: u64, keyLengthMax: u32): void {
  if (puts == 0) return
  const leafSplits = min<u64>(puts, leafNodes + puts / 8 + 2)
  const innerBlocks = min<u64>(leafSplits * u64(innerLevels + 1), 2 * ((30 * innerNodes + leafSplits) / 29 + 1))
  tallyAdd(tally, leafClass, leafSplits)
  tallyAdd(tally, innerClass, innerBlocks)
  tallyAdd(tally, separatorClass(max<u32>(keyLengthMax, keyLengthLongest)), leafSplits)
}

/**
 * The exact count's step for one new key: whether the leaf it goes to could split, counting the batch's
 * earlier new keys for that leaf (in the leaf's byte 7, which treeTallyClear zeroes). Tallies that split's
 * blocks: a leaf, an inner node per level and a new root, and their separators.
 */
export function treeTallySplit(tally: usize, key: usize, length: u32): void {
  const leaf = descend(key, length, keyPrefix(key, length))
  const pending = u32(load<u8>(leaf, 7))
  if (pending < 255) store<u8>(leaf, u8(pending + 1), 7)
  if (count(leaf) + pending < leafCapacity) return
  tallyAdd(tally, leafClass, 1)
  tallyAdd(tally, innerClass, u64(innerLevels) + 1)
  tallyAdd(tally, separatorClass(max<u32>(length, keyLengthLongest)), 1)
}

/** Zeroes what treeTallySplit counted in the key's leaf. */
export function treeTallyClear(key: usize, length: u32): void {
  store<u8>(descend(key, length, keyPrefix(key, length)), 0, 7)
}

@inline function tallyAdd(tally: usize, sizeClass: u32, blocks: u64): void {
  const address = tally + (usize(sizeClass) << 2)
  store<u32>(address, u32(min<u64>(u64(load<u32>(address)) + blocks, 0xffffffff)))
}

@inline function separatorClass(keyLength: u32): u32 {
  return sizeClassOf(u64(8) + keyLength)
}

/** The root node: src/table/ordered-reader.ts descends from it, on another thread, between batches. */
export function treeRoot(): usize {
  return root
}

/**
 * The layout above, field by field, for src/table/layout.ts to check its copy against when the module
 * loads: 0 leaf prefixes, 1 leaf entries, 2 inner prefixes, 3 inner separators, 4 inner children, 5 leaf
 * capacity, 6 inner capacity, 7 the node marker, 8 the separator marker.
 */
export function treeLayout(field: u32): u32 {
  switch (field) {
    case 0: return u32(leafPrefixes)
    case 1: return u32(leafEntries)
    case 2: return u32(innerPrefixes)
    case 3: return u32(innerSeparators)
    case 4: return u32(innerChildren)
    case 5: return leafCapacity
    case 6: return innerCapacity
    case 7: return nodeMarker
    case 8: return separatorMarker
    default: return 0xffffffff
  }
}

/** Sets up an empty tree: one empty leaf, the root. The caller has made room for one leaf. */
export function treeInit(): void {
  leafClass = sizeClassOf(leafBytes)
  innerClass = sizeClassOf(innerBytes)
  assert(sizeClassBytes(leafClass) == leafBytes && sizeClassBytes(innerClass) == innerBytes, 'tree nodes fill their size class')
  root = newNode(true)
  leafNodes = 1
}

// ---- keys --------------------------------------------------------------------------------------

/** Bytewise order of two keys: -1, 0 or 1. */
export function compareBytes(a: usize, aLength: u32, b: usize, bLength: u32): i32 {
  const length = usize(min<u32>(aLength, bLength))
  const words = length & ~(7 as usize)
  let index: usize = 0
  for (; index < words; index += 8) {
    const x = load<u64>(a + index)
    const y = load<u64>(b + index)
    if (x != y) return bswap<u64>(x) < bswap<u64>(y) ? -1 : 1
  }
  for (; index < length; index++) {
    const x = load<u8>(a + index)
    const y = load<u8>(b + index)
    if (x != y) return x < y ? -1 : 1
  }
  return aLength < bLength ? -1 : aLength > bLength ? 1 : 0
}

/** A key's first 8 bytes as a big-endian integer, zero-padded: prefixes in integer order are keys in order. */
export function keyPrefix(key: usize, length: u32): u64 {
  if (length >= 8) return bswap<u64>(load<u64>(key))
  let prefix: u64 = 0
  for (let index: u32 = 0; index < length; index++) prefix |= u64(load<u8>(key + index)) << (56 - (u64(index) << 3))
  return prefix
}

@inline function entryKeyLength(entry: usize): u32 {
  return load<u32>(entry) & 0xffffff
}

// The key (key, length, prefix) against a leaf's entry `index`.
@inline function compareEntry(key: usize, length: u32, prefix: u64, leaf: usize, index: u32): i32 {
  const stored = load<u64>(leaf + leafPrefixes + (usize(index) << 3))
  if (prefix != stored) return prefix < stored ? -1 : 1
  const entry = usize(load<u32>(leaf + leafEntries + (usize(index) << 2)))
  return compareBytes(key, length, entry + entryHeaderBytes, entryKeyLength(entry))
}

// The key against an inner node's separator `index` (>= 1).
@inline function compareSeparator(key: usize, length: u32, prefix: u64, node: usize, index: u32): i32 {
  const stored = load<u64>(node + innerPrefixes + (usize(index) << 3))
  if (prefix != stored) return prefix < stored ? -1 : 1
  const separator = usize(load<u32>(node + innerSeparators + (usize(index) << 2)))
  return compareBytes(key, length, separator + 8, load<u32>(separator, 4))
}

// ---- nodes ---------------------------------------------------------------------------------------

@inline function count(node: usize): u32 {
  return load<u16>(node, 4)
}

@inline function setCount(node: usize, value: u32): void {
  store<u16>(node, u16(value), 4)
}

@inline function isLeaf(node: usize): bool {
  return load<u8>(node, 6) != 0
}

@inline function child(node: usize, index: u32): usize {
  return usize(load<u32>(node + innerChildren + (usize(index) << 2)))
}

@inline function nextLeaf(leaf: usize): usize {
  return usize(load<u32>(leaf, 12))
}

@inline function previousLeaf(leaf: usize): usize {
  return usize(load<u32>(leaf, 8))
}

/** The entry address at `index` of a leaf. */
@inline export function leafEntry(leaf: usize, index: u32): usize {
  return usize(load<u32>(leaf + leafEntries + (usize(index) << 2)))
}

@inline export function leafCount(leaf: usize): u32 {
  return count(leaf)
}

export function leafNext(leaf: usize): usize {
  return nextLeaf(leaf)
}

export function leafPrevious(leaf: usize): usize {
  return previousLeaf(leaf)
}

function newNode(leaf: bool): usize {
  const sizeClass = leaf ? leafClass : innerClass
  const node = allocateBlock(sizeClass)
  if (leaf) leafNodes++
  else innerNodes++
  store<u32>(node, nodeMarker | (sizeClass << 24))
  store<u32>(node, leaf ? 0x10000 : 0, 4) // count 0, leaf flag in byte 6, byte 7 zero
  store<u64>(node, 0, 8)
  return node
}

function freeNode(node: usize): void {
  if (isLeaf(node)) leafNodes--
  else innerNodes--
  freeBlock(node, isLeaf(node) ? leafClass : innerClass)
}

/** A separator for a split between `left` (the last entry left of it) and `right` (the first right of it). */
function newSeparator(left: usize, right: usize): usize {
  // The shortest prefix of right's key that is above left's: one byte past their common prefix.
  const leftKey = left + entryHeaderBytes
  const leftLength = entryKeyLength(left)
  const key = right + entryHeaderBytes
  const rightLength = entryKeyLength(right)
  let common: u32 = 0
  const shorter = min<u32>(leftLength, rightLength)
  while (common < shorter && load<u8>(leftKey + common) == load<u8>(key + common)) common++
  const length = min<u32>(common + 1, rightLength)
  const sizeClass = separatorClass(length)
  const block = allocateBlock(sizeClass)
  store<u32>(block, separatorMarker | (sizeClass << 24))
  store<u32>(block, length, 4)
  memory.copy(block + 8, key, length)
  return block
}

function freeSeparator(block: usize): void {
  freeBlock(block, load<u32>(block) >>> 24)
}

// ---- search --------------------------------------------------------------------------------------

// A binary search over a node's 512 bytes of prefixes reads about 4 of its 8 cache lines, each load
// waiting for the one before (which half is next depends on it): in a tree larger than the caches, 4 misses
// one after the other, per level. Reading each line first, loads that depend on nothing, puts all 8 in
// flight at once; the search then runs in the cache. Measured (200,000 durable puts of hashed keys, 256
// clients, bench/scripts/profile.mjs): the shard's thread spent about 0.6 µs per put in the search.
let warmSink: u64 = 0

@inline function warmLines(address: usize, bytes: usize): void {
  let sink: u64 = 0
  for (let offset: usize = 0; offset < bytes; offset += 64) sink ^= load<u64>(address + offset)
  warmSink ^= sink
}

/** The index of the inner node's child whose range holds the key: the last whose separator is <= it. */
function childIndex(node: usize, key: usize, length: u32, prefix: u64): u32 {
  let low: u32 = 1
  let high: u32 = count(node)
  warmLines(node + innerPrefixes, usize(high) << 3)
  while (low < high) {
    const middle = (low + high) >>> 1
    if (compareSeparator(key, length, prefix, node, middle) >= 0) low = middle + 1
    else high = middle
  }
  return low - 1
}

/** Descends to the leaf whose range holds the key, keeping the path. */
function descend(key: usize, length: u32, prefix: u64): usize {
  let node = root
  pathDepth = 0
  while (!isLeaf(node)) {
    const index = childIndex(node, key, length, prefix)
    assert(pathDepth < depthMax, 'tree deeper than depthMax')
    store<u32>(pathNodes + (usize(pathDepth) << 2), u32(node))
    store<u32>(pathSlots + (usize(pathDepth) << 2), index)
    pathDepth++
    node = child(node, index)
  }
  return node
}

// The nodes of a run of keys at the level being warmed (treeWarm).
const warmRunMax: u32 = 32
const warmNodes: usize = memory.data(warmRunMax * 4)

/**
 * Reads the paths of `keyCount` keys (addresses at `keys`, lengths at `lengths`, u32 each) down the tree a level
 * at a time: first every node of the level, all of their prefix lines (loads that depend on nothing, all
 * in flight at once), then each key's search in them, which finds the next level's nodes. The inserts and
 * removes of the run then find their paths in the cache: their misses overlapped, instead of coming one
 * level, and one key, after another. It changes nothing.
 */
export function treeWarm(keys: usize, lengths: usize, keyCount: u32): void {
  assert(keyCount <= warmRunMax)
  if (keyCount == 0) return
  for (let step: u32 = 0; step < keyCount; step++) store<u32>(warmNodes + (usize(step) << 2), u32(root))
  for (let level: u32 = 0; level <= innerLevels; level++) {
    const leafLevel = level == innerLevels
    for (let step: u32 = 0; step < keyCount; step++) {
      const node = usize(load<u32>(warmNodes + (usize(step) << 2)))
      warmLines(node + (leafLevel ? leafPrefixes : innerPrefixes), usize(count(node)) << 3)
    }
    if (leafLevel) return
    for (let step: u32 = 0; step < keyCount; step++) {
      const node = usize(load<u32>(warmNodes + (usize(step) << 2)))
      const key = usize(load<u32>(keys + (usize(step) << 2)))
      const length = load<u32>(lengths + (usize(step) << 2))
      store<u32>(warmNodes + (usize(step) << 2), u32(child(node, childIndex(node, key, length, keyPrefix(key, length)))))
    }
  }
}

let foundExact = false

/** The first index of `leaf` whose entry is >= the key; foundExact says whether it is equal. */
function lowerBound(leaf: usize, key: usize, length: u32, prefix: u64): u32 {
  let low: u32 = 0
  let high = count(leaf)
  warmLines(leaf + leafPrefixes, usize(high) << 3)
  while (low < high) {
    const middle = (low + high) >>> 1
    if (compareEntry(key, length, prefix, leaf, middle) > 0) low = middle + 1
    else high = middle
  }
  foundExact = low < count(leaf) && compareEntry(key, length, prefix, leaf, low) == 0
  return low
}

// ---- insert --------------------------------------------------------------------------------------

/** Adds a new key's entry (the key is not in the tree). */
export function treeInsert(entry: usize, key: usize, length: u32): void {
  const prefix = keyPrefix(key, length)
  const leaf = descend(key, length, prefix)
  const position = lowerBound(leaf, key, length, prefix)
  assert(!foundExact, 'treeInsert: the key is already in the tree')
  const size = count(leaf)
  if (size < leafCapacity) {
    if (length > keyLengthLongest) keyLengthLongest = length
    leafPut(leaf, position, prefix, entry)
    return
  }
  // Split: keys arriving in order (at the end of the last leaf) leave this leaf full.
  const keep: u32 = nextLeaf(leaf) == 0 && position == size ? leafCapacity : leafCapacity / 2
  const right = newNode(true)
  const moved = size - keep
  memory.copy(right + leafPrefixes, leaf + leafPrefixes + (usize(keep) << 3), usize(moved) << 3)
  memory.copy(right + leafEntries, leaf + leafEntries + (usize(keep) << 2), usize(moved) << 2)
  setCount(right, moved)
  setCount(leaf, keep)
  const after = nextLeaf(leaf)
  store<u32>(right, u32(leaf), 8)
  store<u32>(right, u32(after), 12)
  if (after != 0) store<u32>(after, u32(right), 8)
  store<u32>(leaf, u32(right), 12)
  if (position < keep) leafPut(leaf, position, prefix, entry)
  else leafPut(right, position - keep, prefix, entry)
  if (length > keyLengthLongest) keyLengthLongest = length
  const separator = newSeparator(leafEntry(leaf, count(leaf) - 1), leafEntry(right, 0))
  innerInsert(pathDepth, keyPrefix(separator + 8, load<u32>(separator, 4)), separator, right)
}

function leafPut(leaf: usize, position: u32, prefix: u64, entry: usize): void {
  const size = count(leaf)
  const prefixAt = leaf + leafPrefixes + (usize(position) << 3)
  const entryAt = leaf + leafEntries + (usize(position) << 2)
  memory.copy(prefixAt + 8, prefixAt, usize(size - position) << 3)
  memory.copy(entryAt + 4, entryAt, usize(size - position) << 2)
  store<u64>(prefixAt, prefix)
  store<u32>(entryAt, u32(entry))
  setCount(leaf, size + 1)
}

/**
 * Puts (separator, child) into the inner node at path level `level` - 1, right after the child the path
 * took; level 0 means above the root: a new root.
 */
function innerInsert(level: u32, prefix: u64, separator: usize, right: usize): void {
  if (level == 0) {
    const top = newNode(false)
    store<u32>(top + innerChildren, u32(root))
    store<u32>(top + innerChildren + 4, u32(right))
    store<u64>(top + innerPrefixes + 8, prefix)
    store<u32>(top + innerSeparators + 4, u32(separator))
    setCount(top, 2)
    root = top
    innerLevels++
    return
  }
  const node = usize(load<u32>(pathNodes + (usize(level - 1) << 2)))
  const position = load<u32>(pathSlots + (usize(level - 1) << 2)) + 1
  const size = count(node)
  if (size < innerCapacity) {
    innerPut(node, position, size, prefix, separator, right)
    setCount(node, size + 1)
    return
  }
  // Split: the node's arrays with the new child, in scratch; the left half stays, the right half goes to
  // a new node, and the separator between them moves up.
  memory.copy(splitPrefixes, node + innerPrefixes, usize(size) << 3)
  memory.copy(splitSeparators, node + innerSeparators, usize(size) << 2)
  memory.copy(splitChildren, node + innerChildren, usize(size) << 2)
  const total = size + 1
  memory.copy(splitPrefixes + (usize(position + 1) << 3), splitPrefixes + (usize(position) << 3), usize(size - position) << 3)
  memory.copy(splitSeparators + (usize(position + 1) << 2), splitSeparators + (usize(position) << 2), usize(size - position) << 2)
  memory.copy(splitChildren + (usize(position + 1) << 2), splitChildren + (usize(position) << 2), usize(size - position) << 2)
  store<u64>(splitPrefixes + (usize(position) << 3), prefix)
  store<u32>(splitSeparators + (usize(position) << 2), u32(separator))
  store<u32>(splitChildren + (usize(position) << 2), u32(right))
  const keep = total / 2
  const sibling = newNode(false)
  memory.copy(node + innerPrefixes, splitPrefixes, usize(keep) << 3)
  memory.copy(node + innerSeparators, splitSeparators, usize(keep) << 2)
  memory.copy(node + innerChildren, splitChildren, usize(keep) << 2)
  setCount(node, keep)
  const moved = total - keep
  memory.copy(sibling + innerPrefixes, splitPrefixes + (usize(keep) << 3), usize(moved) << 3)
  memory.copy(sibling + innerSeparators, splitSeparators + (usize(keep) << 2), usize(moved) << 2)
  memory.copy(sibling + innerChildren, splitChildren + (usize(keep) << 2), usize(moved) << 2)
  setCount(sibling, moved)
  // The sibling's separator 0 goes up; its slot 0 is unused from now on.
  innerInsert(level - 1, load<u64>(sibling + innerPrefixes), usize(load<u32>(sibling + innerSeparators)), sibling)
}

function innerPut(node: usize, position: u32, size: u32, prefix: u64, separator: usize, right: usize): void {
  const prefixAt = node + innerPrefixes + (usize(position) << 3)
  const separatorAt = node + innerSeparators + (usize(position) << 2)
  const childAt = node + innerChildren + (usize(position) << 2)
  memory.copy(prefixAt + 8, prefixAt, usize(size - position) << 3)
  memory.copy(separatorAt + 4, separatorAt, usize(size - position) << 2)
  memory.copy(childAt + 4, childAt, usize(size - position) << 2)
  store<u64>(prefixAt, prefix)
  store<u32>(separatorAt, u32(separator))
  store<u32>(childAt, u32(right))
}

// ---- move and remove ---------------------------------------------------------------------------

/** The key's entry moved to `entry` (an overwrite took another block). Call before the old block is freed. */
export function treeMove(key: usize, length: u32, entry: usize): void {
  const prefix = keyPrefix(key, length)
  const leaf = descend(key, length, prefix)
  const position = lowerBound(leaf, key, length, prefix)
  assert(foundExact, 'treeMove: the key is not in the tree')
  store<u32>(leaf + leafEntries + (usize(position) << 2), u32(entry))
}

/** Removes the key's entry. Call before the entry's block is freed. */
export function treeRemove(key: usize, length: u32): void {
  const prefix = keyPrefix(key, length)
  const leaf = descend(key, length, prefix)
  const position = lowerBound(leaf, key, length, prefix)
  assert(foundExact, 'treeRemove: the key is not in the tree')
  const size = count(leaf) - 1
  const prefixAt = leaf + leafPrefixes + (usize(position) << 3)
  const entryAt = leaf + leafEntries + (usize(position) << 2)
  memory.copy(prefixAt, prefixAt + 8, usize(size - position) << 3)
  memory.copy(entryAt, entryAt + 4, usize(size - position) << 2)
  setCount(leaf, size)
  if (leaf == root) return
  if (size == 0) {
    unlinkLeaf(leaf)
    removeChild(pathDepth - 1)
    freeNode(leaf)
    return
  }
  if (size < leafCapacity / 4) mergeLeaf(leaf, size)
}

function unlinkLeaf(leaf: usize): void {
  const before = previousLeaf(leaf)
  const after = nextLeaf(leaf)
  if (before != 0) store<u32>(before, u32(after), 12)
  if (after != 0) store<u32>(after, u32(before), 8)
}

// Merges an underfull leaf with a sibling under the same parent when both fit in three quarters of a leaf.
function mergeLeaf(leaf: usize, size: u32): void {
  const level = pathDepth - 1
  const parent = usize(load<u32>(pathNodes + (usize(level) << 2)))
  const slot = load<u32>(pathSlots + (usize(level) << 2))
  const limit = (leafCapacity * 3) / 4
  if (slot + 1 < count(parent)) {
    const right = child(parent, slot + 1)
    if (size + count(right) <= limit) {
      leafAppend(leaf, right)
      unlinkLeaf(right)
      store<u32>(pathSlots + (usize(level) << 2), slot + 1)
      removeChild(level)
      freeNode(right)
      return
    }
  }
  if (slot > 0) {
    const left = child(parent, slot - 1)
    if (count(left) + size <= limit) {
      leafAppend(left, leaf)
      unlinkLeaf(leaf)
      removeChild(level)
      freeNode(leaf)
    }
  }
}

// Appends `from`'s entries to `to` (its left neighbour).
function leafAppend(to: usize, from: usize): void {
  const at = count(to)
  const moved = count(from)
  memory.copy(to + leafPrefixes + (usize(at) << 3), from + leafPrefixes, usize(moved) << 3)
  memory.copy(to + leafEntries + (usize(at) << 2), from + leafEntries, usize(moved) << 2)
  setCount(to, at + moved)
}

/** Removes the child the path took at `level` from its node, and the node itself if it empties. */
function removeChild(level: u32): void {
  const node = usize(load<u32>(pathNodes + (usize(level) << 2)))
  const slot = load<u32>(pathSlots + (usize(level) << 2))
  const size = count(node)
  // Removing child 0 makes child 1 the first, and separator 1 goes: the node's own lower bound is its parent's.
  const separatorSlot: u32 = slot == 0 ? 1 : slot
  if (separatorSlot < size) {
    freeSeparator(usize(load<u32>(node + innerSeparators + (usize(separatorSlot) << 2))))
    const from = separatorSlot + 1
    memory.copy(node + innerPrefixes + (usize(separatorSlot) << 3), node + innerPrefixes + (usize(from) << 3), usize(size - from) << 3)
    memory.copy(node + innerSeparators + (usize(separatorSlot) << 2), node + innerSeparators + (usize(from) << 2), usize(size - from) << 2)
  }
  memory.copy(node + innerChildren + (usize(slot) << 2), node + innerChildren + (usize(slot + 1) << 2), usize(size - slot - 1) << 2)
  setCount(node, size - 1)
  if (size - 1 == 0) {
    assert(node != root, 'the root lost its last child')
    removeChild(level - 1)
    freeNode(node)
    return
  }
  // A root with one child gives way to it.
  while (!isLeaf(root) && count(root) == 1) {
    const only = child(root, 0)
    freeNode(root)
    root = only
    innerLevels--
  }
}

// ---- walking in order ----------------------------------------------------------------------------

// Where a walk stands: a leaf and an index in it (an index of count or -1 means past the leaf's end).
let walkLeaf: usize = 0
let walkIndex: i32 = 0

/** The first entry in order: its leaf and index, in walkLeaf/walkIndex (walkLeaf 0: the tree is empty). */
function walkFirst(): void {
  let node = root
  while (!isLeaf(node)) node = child(node, 0)
  walkLeaf = node
  walkIndex = 0
  walkSettleForward()
}

function walkLast(): void {
  let node = root
  while (!isLeaf(node)) node = child(node, count(node) - 1)
  walkLeaf = node
  walkIndex = i32(count(node)) - 1
  walkSettleBackward()
}

/** Positions the walk at the first entry >= the key (or > when `exclusive`). */
export function walkFrom(key: usize, length: u32, exclusive: bool): void {
  const prefix = keyPrefix(key, length)
  walkLeaf = descend(key, length, prefix)
  walkIndex = i32(lowerBound(walkLeaf, key, length, prefix))
  if (exclusive && foundExact) walkIndex++
  walkSettleForward()
}

/** Positions the walk at the last entry <= the key (or < when `exclusive`). */
export function walkUpTo(key: usize, length: u32, exclusive: bool): void {
  const prefix = keyPrefix(key, length)
  walkLeaf = descend(key, length, prefix)
  walkIndex = i32(lowerBound(walkLeaf, key, length, prefix))
  if (!(foundExact && !exclusive)) walkIndex--
  walkSettleBackward()
}

export function walkStart(reverse: bool): void {
  if (reverse) walkLast()
  else walkFirst()
}

// Past a leaf's end: on to the next leaf's first entry (or walkLeaf 0 at the end of the tree).
function walkSettleForward(): void {
  while (walkLeaf != 0 && walkIndex >= i32(count(walkLeaf))) {
    walkLeaf = nextLeaf(walkLeaf)
    walkIndex = 0
  }
}

function walkSettleBackward(): void {
  while (walkLeaf != 0 && walkIndex < 0) {
    walkLeaf = previousLeaf(walkLeaf)
    if (walkLeaf != 0) walkIndex = i32(count(walkLeaf)) - 1
  }
}

/** The entry the walk stands at, 0 at the end. */
export function walkEntry(): usize {
  return walkLeaf == 0 ? 0 : leafEntry(walkLeaf, u32(walkIndex))
}

export function walkStep(reverse: bool): void {
  if (reverse) {
    walkIndex--
    walkSettleBackward()
  } else {
    walkIndex++
    walkSettleForward()
  }
}

/** Entries in the tree, counted leaf by leaf (tests: it must equal the table's entry count). */
export function treeCount(): u32 {
  walkFirst()
  let total: u32 = 0
  while (walkLeaf != 0) {
    total += count(walkLeaf)
    walkLeaf = nextLeaf(walkLeaf)
  }
  return total
}
