// The shard's hash table, in WebAssembly linear memory: key bytes -> value bytes, nothing else.
// It owns the whole of its memory; `src/table/wasm-table.ts` is its only caller and crosses into it once per
// batch (apply a batch body in the log's record format; look up a batch of packed keys).
//
// The memory is imported: `src/table/wasm-table.ts` creates it, shared, with the table's limit as its maximum
// (build flags in package.json). Shared, because V8 counts an unshared memory as its isolate's external
// memory, and a memory.grow that puts that 64 MiB above its level at the last full GC starts a GC of
// the worker (external memory pressure) that can free nothing: the memory lives as long as the table.
// A shared memory is counted against no isolate, so growing it starts no GC (src/table/wasm-table.ts says
// more). Only the shard's thread writes this memory, and no atomics are used here: the table is
// single-threaded. The façade's thread reads the ordered view's nodes and entries between two batches
// (src/table/ordered-reader.ts: under a sequence word the shard bumps around each change, a seqlock).
//
// Memory layout (addresses grow down the table; every address is a byte offset into linear memory):
//
//   | region        | from          | to             | what it holds                                          |
//   |---------------|---------------|----------------|--------------------------------------------------------|
//   | static data   | 0             | __heap_base    | free-list heads and counts per size class, stats       |
//   | arena, in use | arenaStart    | arenaBump      | blocks: entries, free blocks, the two scratch blocks   |
//   | arena, spare  | arenaBump     | indexStart     | bump space, handed out before memory grows             |
//   | index         | indexStart    | + slotCount*8  | open-addressing slots: u32 tag, u32 entry address      |
//   | unused        | index end     | memory end     | pages grown ahead (memory doubles), not yet written    |
//
//   entry block (8-byte aligned, its size rounded up to its size class)
//   | offset | size | field                                                                  |
//   |--------|------|------------------------------------------------------------------------|
//   | 0      | 4    | key length (bits 0..23) and size class (bits 24..31)                   |
//   | 4      | 4    | value length                                                           |
//   | 8      | k    | key bytes                                                              |
//   | 8 + k  | v    | value bytes                                                            |
//
// The index: linear probing from home slot `tag & slotMask`, where the tag is the low 32 bits of a
// seeded SipHash-1-3 of the key. A slot whose entry address is 0 is empty (the arena never starts at
// 0). The tag is kept in the slot so that a rehash never reads an entry, and so that most mismatches
// are settled without touching the entry. Deletes shift the following slots back (no tombstones), so
// probe lengths depend only on the live entries. The load factor stays at most 3/4.
//
// Space: a block freed by a delete, or by an overwrite whose value needs another size class, goes on
// its class's free list and is handed out before bump space. Classes are exact to 8 bytes up to 1 KiB,
// then 8 per power of two (at most 12.5% rounding). Blocks of different classes are not merged.
//
//   free block (the same first word as an entry, so that the arena can be walked block by block)
//   | offset | size | field                                                                  |
//   |--------|------|------------------------------------------------------------------------|
//   | 0      | 4    | freeMarker (0xFFFFFF: longer than any key) and size class (bits 24..31)|
//   | 4      | 4    | the next free block of the class, 0 at the end                         |
//
// The arena from arenaStart to arenaBump is tiled by blocks that never move, split or merge: entries,
// free blocks, the ordered view's nodes and separators (ordered.ts: their first word's low 24 bits are a
// marker longer than any key, like a free block's), and the two scratch blocks (inputBlock, outputBlock, whose first word is whatever was
// copied in; the walk knows them by address). An entry stays at its address for as long as its key is
// neither deleted nor overwritten with a value of another size class. `scanEntries` walks the arena in
// address order, in pieces, for a checkpoint (src/checkpoint/ says why a walk in pieces, while batches
// are applied in between, gives a correct checkpoint).
//
// Limits and the full path:
//   | limit                 | value                              | when reached                          |
//   |-----------------------|------------------------------------|---------------------------------------|
//   | memory                | pagesMax (at most 65535 pages,     | the call returns statusFull before it |
//   |                       | 4 GiB less 64 KiB; also the        | changes any entry                     |
//   |                       | imported memory's maximum)         |                                       |
//   | slots                 | slotCountMax = 2^29                | statusFull, as above                  |
//   | key, value            | keyBytesMax, valueBytesMax (the    | the batch is malformed: nothing of it |
//   |                       | log's own limits, format/record.ts)       | is applied                            |
//   | read headroom         | scratchHeadroomBytes: 1 MiB, or a  | a batch must leave it spare; reads    |
//   |                       | sixteenth of a smaller memory      | use it for their keys. A read whose   |
//   |                       |                                    | answers find no room returns          |
//   |                       |                                    | statusAnswersNoRoom: the caller packs |
//   |                       |                                    | them from the found entries           |
//
// Why a batch is all or nothing: `applyBatch` first walks the whole batch to check its structure and to
// add up the worst case it can need (every put a new key in a fresh block, less the free blocks of the
// same class), then makes that room (grow memory, move or rehash the index: none of which changes what
// the table answers), and only then applies the records. Nothing can run out half way.

import {
  treeTallyBound,
  treeTallyClear,
  treeTallySplit,
  treeWarm,
  treeCount,
  treeInit,
  treeInsert,
  treeLayout,
  treeRoot,
  treeMove,
  treeRemove,
  walkEntry,
  walkFrom,
  walkStart,
  walkStep,
  walkUpTo,
  compareBytes,
} from './ordered'

// Must equal src/format/record.ts; the JavaScript side checks the pair when it loads this module.
const keyBytesMaxValue: u32 = 64 * 1024
const valueBytesMaxValue: u32 = 16 * 1024 * 1024
const recordHeaderBytes: u32 = 16
const recordKindPut: u8 = 1
const recordKindDelete: u8 = 2

const pageBytes: u64 = 65536
const pagesLimit: u32 = 65535
export const entryHeaderBytes: u32 = 8
const slotBytes: u32 = 8
const slotCountInitial: u32 = 64
const slotCountMax: u32 = 1 << 29
const arenaSpareInitial: u64 = 64 * 1024
const arenaHeadroomMin: u64 = 1024 * 1024
const blockBytesMin: u64 = 16
const sizeClassCount: u32 = 320
// The first word's low 24 bits of a free block: no key is this long (keyBytesMaxValue is 64 KiB).
const freeMarker: u32 = 0xffffff

export const statusOk: i32 = 0
export const statusFull: i32 = 1
export const statusRecordHeaderPastBody: i32 = 2
export const statusRecordKindUnknown: i32 = 3
export const statusRecordLengthsImpossible: i32 = 4
export const statusRecordDeleteWithValue: i32 = 5
export const statusRecordPastBody: i32 = 6
export const statusBodyTrailingBytes: i32 = 7
export const statusPackedKeyPastBuffer: i32 = 8
export const statusPackedKeysTrailingBytes: i32 = 9
export const statusAnswersNoRoom: i32 = 10

// Per size class: free-list head (u32), free-block count (u32), and a per-batch tally of puts (u32).
const freeHeads: usize = memory.data(320 * 4)
const freeCounts: usize = memory.data(320 * 4)
const batchClassCounts: usize = memory.data(320 * 4)
// Debug statistics, written by statsWrite(): 12 u64 fields.
const stats: usize = memory.data(12 * 8)

let sipKey0: u64 = 0
let sipKey1: u64 = 0
let pagesMax: u32 = 0
let initialized = false

let arenaStart: usize = 0
let arenaBump: usize = 0
let indexStart: usize = 0
let slotCount: u32 = 0
let slotMask: u32 = 0
let entryCountValue: u32 = 0
// The live entries' bytes as records (16 + key + value each): what a checkpoint of the table writes.
let liveBytesValue: u64 = 0
let freeBlockBytes: u64 = 0
// Arena room that batches leave spare, so that a full table can still take the keys of a read.
let scratchHeadroomBytes: u64 = 0

let inputBlock: usize = 0
let inputClass: u32 = 0
let outputBlock: usize = 0
let outputClass: u32 = 0
let outputBytes: u32 = 0

// Set by findSlot when the key is absent: where it would go.
let emptySlot: u32 = 0
// Set when a call returns a format status: which record or key, and where it starts.
let errorIndex: u32 = 0
let errorOffset: u32 = 0

// ---- size classes ---------------------------------------------------------------------------------

export function sizeClassOf(bytes: u64): u32 {
  let size = (bytes + 7) & ~(7 as u64)
  if (size < blockBytesMin) size = blockBytesMin
  if (size <= 1024) return u32(size >> 3)
  const power = u32(63 - clz<u64>(size - 1)) // size - 1 is in [2^power, 2^(power + 1))
  const shift = power - 3
  const step = (1 as u64) << shift
  const part = u32((size - ((1 as u64) << power) + step - 1) >> shift) // 1..8
  const sizeClass: u32 = 128 + (power - 10) * 8 + part
  assert(sizeClass < sizeClassCount)
  return sizeClass
}

export function sizeClassBytes(sizeClass: u32): u64 {
  if (sizeClass <= 128) return u64(sizeClass) << 3
  const distance = sizeClass - 129
  const power = 10 + distance / 8
  const part = u64(distance % 8 + 1)
  return ((1 as u64) << power) + (part << (power - 3))
}

// ---- the arena -----------------------------------------------------------------------------------

// Hands out a block of the class. The caller has reserved the room first: this never fails.
export function allocateBlock(sizeClass: u32): usize {
  const headAddress = freeHeads + (sizeClass << 2)
  const head = load<u32>(headAddress)
  const bytes = sizeClassBytes(sizeClass)
  if (head != 0) {
    store<u32>(headAddress, load<u32>(head, 4))
    const countAddress = freeCounts + (sizeClass << 2)
    store<u32>(countAddress, load<u32>(countAddress) - 1)
    freeBlockBytes -= bytes
    return head
  }
  assert(u64(arenaBump) + bytes <= u64(indexStart), 'block allocated without a reservation')
  const block = arenaBump
  arenaBump += usize(bytes)
  return block
}

export function freeBlock(block: usize, sizeClass: u32): void {
  assert(block >= arenaStart && block < arenaBump)
  const headAddress = freeHeads + (sizeClass << 2)
  store<u32>(block, freeMarker | (sizeClass << 24))
  store<u32>(block, load<u32>(headAddress), 4)
  store<u32>(headAddress, u32(block))
  const countAddress = freeCounts + (sizeClass << 2)
  store<u32>(countAddress, load<u32>(countAddress) + 1)
  freeBlockBytes += sizeClassBytes(sizeClass)
}

// Makes room for one block of the class outside a batch (the scratch blocks); false when full.
function reserveBlock(sizeClass: u32): bool {
  if (load<u32>(freeCounts + (sizeClass << 2)) != 0) return true
  return reserve(u64(arenaBump) + sizeClassBytes(sizeClass), slotCount)
}

// ---- memory and the index ------------------------------------------------------------------------

function memoryEndMax(): u64 {
  return u64(pagesMax) * pageBytes
}

// Grows memory to reach `end`, doubling it when that fits (capped at pagesMax), so a table of n bytes
// grows about log2(n / initial size) times. A grow starts no GC (the memory is shared, see the top), but
// each one is a call into V8 and a new buffer object for the JavaScript side to pick up.
// Pages grown and not yet used are only address space: the kernel backs a page when it is touched.
function ensureMemoryEnd(end: u64): bool {
  const pagesNeeded = (end + pageBytes - 1) / pageBytes
  if (pagesNeeded > u64(pagesMax)) return false
  const pagesNow = u64(memory.size())
  if (pagesNeeded <= pagesNow) return true
  let pagesWanted = pagesNow * 2
  if (pagesWanted < pagesNeeded) pagesWanted = pagesNeeded
  if (pagesWanted > u64(pagesMax)) pagesWanted = u64(pagesMax)
  if (memory.grow(i32(pagesWanted - pagesNow)) >= 0) return true
  return memory.grow(i32(pagesNeeded - pagesNow)) >= 0
}

@inline function slotAddress(slot: u32): usize {
  return indexStart + (usize(slot) << 3)
}

// The smallest slot count that keeps `entries` at a load factor of at most 3/4; 0 past slotCountMax.
function slotCountFor(entries: u64): u32 {
  let count = u64(slotCount)
  while (entries * 4 > count * 3) count <<= 1
  return count > u64(slotCountMax) ? 0 : u32(count)
}

// Makes the arena reach at least `arenaEndNeeded` and the index have `slotCountNeeded` slots, growing
// memory, moving the index up, or rehashing into a larger index. None of it changes what the table
// answers. All the checks come before the first change, so a false return leaves the layout as it was,
// except for memory that grew and stays unused.
function reserve(arenaEndNeeded: u64, slotCountNeeded: u32): bool {
  const indexBytes = u64(slotCount) * slotBytes
  const indexEnd = u64(indexStart) + indexBytes
  const endMax = memoryEndMax()
  const arenaEndAligned = (arenaEndNeeded + 7) & ~(7 as u64)
  // When the arena must grow, give it headroom (an eighth of its size) so the index moves rarely.
  let arenaEndWanted = u64(indexStart)
  if (arenaEndAligned > arenaEndWanted) {
    let headroom = (arenaEndAligned - u64(arenaStart)) / 8
    if (headroom < arenaHeadroomMin) headroom = arenaHeadroomMin
    arenaEndWanted = arenaEndAligned + ((headroom + 7) & ~(7 as u64))
  }

  if (slotCountNeeded > slotCount) {
    // A larger index goes above the old one; the old one's bytes become arena spare.
    const newIndexBytes = u64(slotCountNeeded) * slotBytes
    let newIndexStart = arenaEndWanted > indexEnd ? arenaEndWanted : indexEnd
    if (newIndexStart + newIndexBytes > endMax) {
      newIndexStart = arenaEndAligned > indexEnd ? arenaEndAligned : indexEnd
    }
    if (newIndexStart + newIndexBytes > endMax) return false
    if (!ensureMemoryEnd(newIndexStart + newIndexBytes)) return false
    const newStart = usize(newIndexStart)
    memory.fill(newStart, 0, usize(newIndexBytes))
    rehash(newStart, slotCountNeeded)
    return true
  }

  if (arenaEndAligned > u64(indexStart)) {
    let newIndexStart = arenaEndWanted
    if (newIndexStart + indexBytes > endMax) newIndexStart = arenaEndAligned
    if (newIndexStart + indexBytes > endMax) return false
    if (!ensureMemoryEnd(newIndexStart + indexBytes)) return false
    memory.copy(usize(newIndexStart), indexStart, usize(indexBytes)) // overlapping move up
    indexStart = usize(newIndexStart)
  }
  return true
}

function rehash(newStart: usize, newSlotCount: u32): void {
  const newMask = newSlotCount - 1
  for (let slot: u32 = 0; slot < slotCount; slot++) {
    const address = slotAddress(slot)
    if (load<u32>(address, 4) == 0) continue
    let target = load<u32>(address) & newMask
    while (load<u32>(newStart + (usize(target) << 3), 4) != 0) target = (target + 1) & newMask
    store<u64>(newStart + (usize(target) << 3), load<u64>(address))
  }
  indexStart = newStart
  slotCount = newSlotCount
  slotMask = newMask
}

// ---- hashing -------------------------------------------------------------------------------------

// SipHash with `compressionRounds` per 8-byte word and `finalizationRounds` at the end, keyed by the
// table's 128-bit key (Aumasson and Bernstein, "SipHash: a fast short-input PRF"). Keys come from
// users; with a secret random key they cannot aim many keys at one slot.
@inline function sipHash(pointer: usize, length: u32, compressionRounds: i32, finalizationRounds: i32): u64 {
  let v0: u64 = sipKey0 ^ 0x736f6d6570736575
  let v1: u64 = sipKey1 ^ 0x646f72616e646f6d
  let v2: u64 = sipKey0 ^ 0x6c7967656e657261
  let v3: u64 = sipKey1 ^ 0x7465646279746573
  const wordCount = length >> 3
  const tail = pointer + (usize(wordCount) << 3)
  // One pass per message word, then one for the last word (tail bytes and the length), then one for
  // finalization: the round code is written once.
  for (let pass: u32 = 0; pass <= wordCount + 1; pass++) {
    let word: u64 = 0
    let rounds = compressionRounds
    if (pass < wordCount) {
      word = load<u64>(pointer + (usize(pass) << 3))
    } else if (pass == wordCount) {
      word = u64(length & 0xff) << 56
      for (let index: u32 = 0; index < (length & 7); index++) word |= u64(load<u8>(tail + index)) << (index << 3)
    } else {
      v2 ^= 0xff
      rounds = finalizationRounds
    }
    v3 ^= word
    for (let round = 0; round < rounds; round++) {
      v0 += v1; v2 += v3
      v1 = rotl<u64>(v1, 13); v3 = rotl<u64>(v3, 16)
      v1 ^= v0; v3 ^= v2
      v0 = rotl<u64>(v0, 32)
      v2 += v1; v0 += v3
      v1 = rotl<u64>(v1, 17); v3 = rotl<u64>(v3, 21)
      v1 ^= v2; v3 ^= v0
      v2 = rotl<u64>(v2, 32)
    }
    v0 ^= word
  }
  return v0 ^ v1 ^ v2 ^ v3
}

@inline function keyTag(pointer: usize, length: u32): u32 {
  return u32(sipHash(pointer, length, 1, 3))
}

// ---- lookup, insert, delete ----------------------------------------------------------------------

function keyEquals(entry: usize, key: usize, length: u32): bool {
  if ((load<u32>(entry) & 0xffffff) != length) return false
  const stored = entry + entryHeaderBytes
  let index: usize = 0
  const words = usize(length) & ~(7 as usize)
  for (; index < words; index += 8) {
    if (load<u64>(stored + index) != load<u64>(key + index)) return false
  }
  for (; index < usize(length); index++) {
    if (load<u8>(stored + index) != load<u8>(key + index)) return false
  }
  return true
}

// The slot holding the key, or -1 with `emptySlot` set to where it would go. The load factor keeps
// an empty slot in every probe sequence, so the loop ends.
function findSlot(key: usize, length: u32, tag: u32): i32 {
  let slot = tag & slotMask
  while (true) {
    const address = slotAddress(slot)
    const entry = load<u32>(address, 4)
    if (entry == 0) {
      emptySlot = slot
      return -1
    }
    if (load<u32>(address) == tag && keyEquals(entry, key, length)) return i32(slot)
    slot = (slot + 1) & slotMask
  }
  unreachable()
  return -1
}

// Empties a slot and shifts later entries of the same run back (Knuth's algorithm R for linear
// probing), so a delete leaves the index as if the key had never been inserted.
function removeSlot(slot: u32): void {
  let hole = slot
  let next = (slot + 1) & slotMask
  while (true) {
    const address = slotAddress(next)
    if (load<u32>(address, 4) == 0) break
    const home = load<u32>(address) & slotMask
    if (((next - home) & slotMask) >= ((next - hole) & slotMask)) {
      store<u64>(slotAddress(hole), load<u64>(address))
      hole = next
    }
    next = (next + 1) & slotMask
  }
  store<u64>(slotAddress(hole), 0)
}

function writeEntry(block: usize, sizeClass: u32, key: usize, keyLength: u32, value: usize, valueLength: u32): void {
  store<u32>(block, keyLength | (sizeClass << 24))
  store<u32>(block, valueLength, 4)
  memory.copy(block + entryHeaderBytes, key, keyLength)
  memory.copy(block + entryHeaderBytes + keyLength, value, valueLength)
}

function put(key: usize, keyLength: u32, value: usize, valueLength: u32, tag: u32): void {
  const slot = findSlot(key, keyLength, tag)
  const sizeClass = sizeClassOf(u64(entryHeaderBytes) + keyLength + valueLength)
  if (slot < 0) {
    const block = allocateBlock(sizeClass)
    writeEntry(block, sizeClass, key, keyLength, value, valueLength)
    const address = slotAddress(emptySlot)
    store<u32>(address, tag)
    store<u32>(address, u32(block), 4)
    treeInsert(block, block + entryHeaderBytes, keyLength)
    entryCountValue++
    liveBytesValue += u64(recordHeaderBytes) + keyLength + valueLength
    return
  }
  const address = slotAddress(u32(slot))
  const entry = usize(load<u32>(address, 4))
  const entryClass = load<u32>(entry) >>> 24
  liveBytesValue = liveBytesValue - load<u32>(entry, 4) + valueLength
  if (entryClass == sizeClass) {
    store<u32>(entry, valueLength, 4)
    memory.copy(entry + entryHeaderBytes + keyLength, value, valueLength)
    return
  }
  const block = allocateBlock(sizeClass)
  writeEntry(block, sizeClass, key, keyLength, value, valueLength)
  store<u32>(address, u32(block), 4)
  treeMove(key, keyLength, block) // before the old block is freed: the search may read it
  freeBlock(entry, entryClass)
}

function remove(key: usize, keyLength: u32, tag: u32): void {
  const slot = findSlot(key, keyLength, tag)
  if (slot < 0) return
  const entry = usize(load<u32>(slotAddress(u32(slot)), 4))
  liveBytesValue -= u64(recordHeaderBytes) + keyLength + load<u32>(entry, 4)
  treeRemove(key, keyLength) // before the block is freed: the search may read it
  freeBlock(entry, load<u32>(entry) >>> 24)
  removeSlot(u32(slot))
  entryCountValue--
}

// ---- warming a run of records ---------------------------------------------------------------------

// A table of a million keys is larger than the caches (its index alone is 16 MiB, its entries 128 MiB), so
// each key costs a miss on its slot and, when the key is there, another on its entry: one after the other,
// for each key in turn, a batch waits out every miss. `warmRun` first hashes a run of keys and reads each
// one's home slot, then reads the entry each slot names when its tag matches: loads that depend on nothing
// before them, so the CPU has them all in flight at once (WebAssembly has no prefetch instruction; these
// reads are the prefetch). Applying or looking up the run then finds its lines in the cache. It changes
// nothing: the tags it keeps are the keys' own hashes, and what the reads return goes into `warmSink` only
// so that no optimizer drops them. Measured here (a million keys of 16 B / 100 B, interleaved runs): loading
// them into an empty table 430 -> 290 ms, overwriting 256,000 of them 109 -> 73 ms (medians of 6); the hashing
// kept in its own loop ahead of the reads is half of that: in one loop, only a few misses overlapped.
// Reads take runs the same way (lookupBatch): 512,000 gets of random keys, 256 per call, 250 -> 105 ms.
const warmRunRecords: u32 = 32
const warmTags: usize = memory.data(warmRunRecords * 4)
// For a run of lookups: each key's address (0: a key no table holds, absent without a lookup).
const warmKeys: usize = memory.data(warmRunRecords * 4)
let warmSink: u32 = 0

// For the ordered view: the keys of a run likely to change it (deletes, and puts whose home slot holds
// another key: probably new), and their lengths.
const warmTreeKeys: usize = memory.data(warmRunRecords * 4)
const warmTreeLengths: usize = memory.data(warmRunRecords * 4)

// Records (the log's format) from `record`: keeps each one's tag in warmTags, and reads its slots and entry,
// then the paths down the ordered view of those likely to change it (ordered.ts treeWarm).
function warmRun(record: usize, count: u32): void {
  const first = record
  for (let step: u32 = 0; step < count; step++) {
    const keyLength = load<u32>(record, 8)
    store<u32>(warmTags + (usize(step) << 2), keyTag(record + recordHeaderBytes, keyLength))
    record += usize(recordHeaderBytes) + keyLength + load<u32>(record, 12)
  }
  warmSlots(count)
  let treeCount: u32 = 0
  record = first
  for (let step: u32 = 0; step < count; step++) {
    const keyLength = load<u32>(record, 8)
    const tag = load<u32>(warmTags + (usize(step) << 2))
    const home = slotAddress(tag & slotMask)
    const likelyHeld = load<u32>(home, 4) != 0 && load<u32>(home) == tag
    if (load<u8>(record, 4) == recordKindDelete || !likelyHeld) {
      store<u32>(warmTreeKeys + (usize(treeCount) << 2), u32(record + recordHeaderBytes))
      store<u32>(warmTreeLengths + (usize(treeCount) << 2), keyLength)
      treeCount++
    }
    record += usize(recordHeaderBytes) + keyLength + load<u32>(record, 12)
  }
  treeWarm(warmTreeKeys, warmTreeLengths, treeCount)
}

// Reads the home slot of each of the run's tags (warmTags), then the entry each names when its tag
// matches: the key most likely there. The hashing is done before, apart, so that these loops are nothing
// but loads: all of the run's misses in flight at once.
function warmSlots(count: u32): void {
  let sink: u32 = 0
  for (let step: u32 = 0; step < count; step++) {
    sink ^= load<u32>(slotAddress(load<u32>(warmTags + (usize(step) << 2)) & slotMask), 4)
  }
  for (let step: u32 = 0; step < count; step++) {
    const tag = load<u32>(warmTags + (usize(step) << 2))
    const address = slotAddress(tag & slotMask)
    const entry = load<u32>(address, 4)
    if (entry != 0 && load<u32>(address) == tag) sink ^= load<u32>(entry)
  }
  warmSink ^= sink
}

// ---- exported calls ------------------------------------------------------------------------------

/** Sets up an empty table. Returns statusFull when `pagesMaxArgument` cannot hold even that. */
export function init(key0Low: u32, key0High: u32, key1Low: u32, key1High: u32, pagesMaxArgument: u32): i32 {
  assert(!initialized, 'table initialized twice')
  assert(pagesMaxArgument >= 1 && pagesMaxArgument <= pagesLimit, 'pagesMax out of range')
  assert(u32(memory.size()) <= pagesMaxArgument, 'imported memory larger than pagesMax')
  sipKey0 = u64(key0Low) | (u64(key0High) << 32)
  sipKey1 = u64(key1Low) | (u64(key1High) << 32)
  pagesMax = pagesMaxArgument
  scratchHeadroomBytes = min<u64>(arenaHeadroomMin, (memoryEndMax() / 16) & ~(7 as u64))
  arenaStart = (__heap_base + 7) & ~(7 as usize)
  if (arenaStart == 0) arenaStart = 8
  arenaBump = arenaStart
  const start = u64(arenaStart) + arenaSpareInitial
  const bytes = u64(slotCountInitial) * slotBytes
  if (start + bytes > memoryEndMax() || !ensureMemoryEnd(start + bytes)) return statusFull
  indexStart = usize(start)
  slotCount = slotCountInitial
  slotMask = slotCountInitial - 1
  memory.fill(indexStart, 0, usize(bytes))
  initialized = true
  treeInit() // one leaf, well within the arena's initial spare
  // An input block that holds any single packed key, so that reads always go through (in pieces).
  if (inputReserve(keyBytesMaxValue + 8) == 0) return statusFull
  return statusOk
}

/** A scratch block of at least `bytes` for the caller to copy a batch into; 0 when the table is full. */
export function inputReserve(bytes: u32): usize {
  assert(initialized)
  if (inputBlock != 0 && sizeClassBytes(inputClass) >= u64(bytes)) return inputBlock
  const sizeClass = sizeClassOf(u64(bytes))
  if (!reserveBlock(sizeClass)) return 0
  const block = allocateBlock(sizeClass)
  if (inputBlock != 0) freeBlock(inputBlock, inputClass)
  inputBlock = block
  inputClass = sizeClass
  return block
}

function fail(status: i32, index: u32, offset: u64): i32 {
  errorIndex = index
  errorOffset = u32(offset)
  memory.fill(batchClassCounts, 0, sizeClassCount << 2)
  return status
}

/**
 * Applies a batch body (src/format/record.ts format, CRCs not checked: the shard hands over durable batches)
 * copied to `body`. Either all of it or, with a non-zero status, none of it.
 */
export function applyBatch(body: usize, length: u32, recordCount: u32): i32 {
  const status = reserveBatch(body, length, recordCount)
  if (status != statusOk) return status
  // Pass 2: apply, in order, a run of records at a time. The structure was checked, and the room made, by
  // reserveBatch, so no slot moves for growth while the run is applied.
  let record = body
  for (let index: u32 = 0; index < recordCount; index += warmRunRecords) {
    const run = min<u32>(warmRunRecords, recordCount - index)
    warmRun(record, run)
    for (let step: u32 = 0; step < run; step++) {
      const keyLength = load<u32>(record, 8)
      const valueLength = load<u32>(record, 12)
      const key = record + recordHeaderBytes
      const tag = load<u32>(warmTags + (usize(step) << 2))
      if (load<u8>(record, 4) == recordKindPut) put(key, keyLength, key + keyLength, valueLength, tag)
      else remove(key, keyLength, tag)
      record = key + keyLength + valueLength
    }
  }
  return statusOk
}

/**
 * Checks a batch's structure and makes the room it could need at most, applying nothing. The shard calls
 * this before the batch is written, so a batch that cannot fit fails before it is durable; applyBatch of
 * the same batch afterwards then cannot run out of room.
 */
export function reserveBatch(body: usize, length: u32, recordCount: u32): i32 {
  assert(initialized)
  // Pass 1: structure, and the worst case of what the batch needs.
  let offset: u64 = 0
  let putCount: u64 = 0
  let keyLengthMax: u32 = 0
  for (let index: u32 = 0; index < recordCount; index++) {
    if (offset + recordHeaderBytes > u64(length)) return fail(statusRecordHeaderPastBody, index, offset)
    const record = body + usize(offset)
    const kind = load<u8>(record, 4)
    const keyLength = load<u32>(record, 8)
    const valueLength = load<u32>(record, 12)
    if (kind != recordKindPut && kind != recordKindDelete) return fail(statusRecordKindUnknown, index, offset)
    if (keyLength > keyBytesMaxValue || valueLength > valueBytesMaxValue) {
      return fail(statusRecordLengthsImpossible, index, offset)
    }
    if (kind == recordKindDelete && valueLength != 0) return fail(statusRecordDeleteWithValue, index, offset)
    const end = offset + recordHeaderBytes + keyLength + valueLength
    if (end > u64(length)) return fail(statusRecordPastBody, index, offset)
    if (kind == recordKindPut) {
      const countAddress = batchClassCounts + (sizeClassOf(u64(entryHeaderBytes) + keyLength + valueLength) << 2)
      store<u32>(countAddress, load<u32>(countAddress) + 1)
      putCount++
      if (keyLength > keyLengthMax) keyLengthMax = keyLength
    }
    offset = end
  }
  if (offset != u64(length)) return fail(statusBodyTrailingBytes, recordCount, offset)

  // Deletes only free space: a batch without puts needs no room, so a full table can always be emptied.
  if (putCount == 0) {
    tallyBytes()
    return statusOk
  }
  const slotCountNeeded = slotCountFor(u64(entryCountValue) + putCount)
  // The ordered view, as if every put added a key: a bound from the tree's shape (ordered.ts).
  treeTallyBound(batchClassCounts, putCount, keyLengthMax)
  const arenaEndNeeded = u64(arenaBump) + tallyBytes() + scratchHeadroomBytes
  // The common case, room already there, settled before reserve() weighs moving anything.
  if (slotCountNeeded != 0 && slotCountNeeded <= slotCount && arenaEndNeeded <= u64(indexStart)) return statusOk
  if (slotCountNeeded == 0) return statusFull
  if (reserve(arenaEndNeeded, slotCountNeeded)) return statusOk
  // At the memory limit: count what the batch can really take, its new keys only, and the leaves they
  // would split. Overwrites then reuse the blocks that deletes freed, as they did before the ordered view.
  tallyExactly(body, recordCount)
  const bytesNeeded = tallyBytes()
  // Puts that all fit in free blocks, with the index big enough, need nothing new: the read headroom was
  // made when the arena last grew.
  if (bytesNeeded == 0 && slotCountNeeded <= slotCount) return statusOk
  return reserve(u64(arenaBump) + bytesNeeded + scratchHeadroomBytes, slotCountNeeded) ? statusOk : statusFull
}

// The arena bytes beyond the free lists that the blocks tallied in batchClassCounts take; clears the tally.
function tallyBytes(): u64 {
  let bytes: u64 = 0
  for (let sizeClass: u32 = 1; sizeClass < sizeClassCount; sizeClass++) {
    const blocks = load<u32>(batchClassCounts + (sizeClass << 2))
    if (blocks == 0) continue
    const free = load<u32>(freeCounts + (sizeClass << 2))
    if (blocks > free) bytes += u64(blocks - free) * sizeClassBytes(sizeClass)
    store<u32>(batchClassCounts + (sizeClass << 2), 0)
  }
  return bytes
}

// Tallies a well-formed batch's puts exactly: each entry that needs a block, and for each key the table
// lacks, the splits it can cause in the ordered view (ordered.ts treeTallySplit), whose leaf counts are cleared after.
function tallyExactly(body: usize, recordCount: u32): void {
  for (let pass = 0; pass < 2; pass++) {
    let record = body
    for (let index: u32 = 0; index < recordCount; index++) {
      const keyLength = load<u32>(record, 8)
      const valueLength = load<u32>(record, 12)
      const key = record + recordHeaderBytes
      if (load<u8>(record, 4) == recordKindPut) {
        const slot = findSlot(key, keyLength, keyTag(key, keyLength))
        const added = slot < 0
        if (pass == 0) {
          const sizeClass = sizeClassOf(u64(entryHeaderBytes) + keyLength + valueLength)
          // An overwrite whose value keeps its entry's size class is written in place.
          const inPlace = !added && load<u32>(usize(load<u32>(slotAddress(u32(slot)), 4))) >>> 24 == sizeClass
          const countAddress = batchClassCounts + (sizeClass << 2)
          if (!inPlace) store<u32>(countAddress, load<u32>(countAddress) + 1)
          if (added) treeTallySplit(batchClassCounts, key, keyLength)
        } else if (added) {
          treeTallyClear(key, keyLength)
        }
      }
      record = key + keyLength + valueLength
    }
  }
}

/**
 * Makes room ahead for `entries` more keys whose entries take about `arenaBytes` in all (a checkpoint about
 * to be loaded: its record count and body bytes), so that loading it neither rehashes the index nor moves
 * it up the memory again and again. A hint: applying a batch still reserves what it needs itself.
 * Returns statusFull, changing nothing that the table answers, when the room is not there.
 */
export function reserveEntries(entries: u32, arenaBytes: f64): i32 {
  assert(initialized)
  const slotCountNeeded = slotCountFor(u64(entryCountValue) + u64(entries))
  if (slotCountNeeded == 0) return statusFull
  const arenaEndNeeded = u64(arenaBump) + u64(arenaBytes) + scratchHeadroomBytes
  return reserve(arenaEndNeeded, slotCountNeeded) ? statusOk : statusFull
}

/**
 * Looks up `count` keys packed at `keys` as (u32 length, bytes), and writes the answers packed as
 * (u32 length, bytes), 0xFFFFFFFF for an absent key, to the output block (outputPointer/outputLength).
 * The caller reserved align4(length) + 4 * count bytes at `keys`: the found entries' addresses (0 for
 * absent) go after the keys. With statusAnswersNoRoom, the caller packs the answers from those.
 */
export function lookupBatch(keys: usize, length: u32, count: u32): i32 {
  assert(initialized)
  const found = keys + ((usize(length) + 3) & ~(3 as usize))
  let offset: u64 = 0
  let answerBytes: u64 = 0
  // A run of keys at a time: checked and hashed, their slots and entries read ahead (warmSlots), looked up.
  for (let first: u32 = 0; first < count; first += warmRunRecords) {
    const run = min<u32>(warmRunRecords, count - first)
    for (let step: u32 = 0; step < run; step++) {
      if (offset + 4 > u64(length)) return fail(statusPackedKeyPastBuffer, first + step, offset)
      const keyLength = load<u32>(keys + usize(offset))
      if (offset + 4 + keyLength > u64(length)) return fail(statusPackedKeyPastBuffer, first + step, offset)
      const key = keys + usize(offset) + 4
      // A key no table can hold is absent: 0 in warmKeys (a key's address is never 0).
      const held = keyLength <= keyBytesMaxValue
      store<u32>(warmKeys + (usize(step) << 2), held ? u32(key) : 0)
      store<u32>(warmTags + (usize(step) << 2), held ? keyTag(key, keyLength) : 0)
      offset += 4 + keyLength
    }
    warmSlots(run)
    for (let step: u32 = 0; step < run; step++) {
      const key = usize(load<u32>(warmKeys + (usize(step) << 2)))
      let entry: u32 = 0
      if (key != 0) {
        const slot = findSlot(key, load<u32>(key - 4), load<u32>(warmTags + (usize(step) << 2)))
        if (slot >= 0) entry = load<u32>(slotAddress(u32(slot)), 4)
      }
      store<u32>(found + (usize(first + step) << 2), entry)
      answerBytes += 4
      if (entry != 0) answerBytes += load<u32>(entry, 4)
    }
  }
  if (offset != u64(length)) return fail(statusPackedKeysTrailingBytes, count, offset)
  if (answerBytes > 0xffff0000) return statusFull

  outputBytes = u32(answerBytes)
  // A full table still answers: the caller copies the values out from the found entries.
  if (!outputReserve(answerBytes)) return statusAnswersNoRoom
  let target = outputBlock
  for (let index: u32 = 0; index < count; index++) {
    const entry = usize(load<u32>(found + (usize(index) << 2)))
    if (entry == 0) {
      store<u32>(target, 0xffffffff)
      target += 4
      continue
    }
    const keyLength = load<u32>(entry) & 0xffffff
    const valueLength = load<u32>(entry, 4)
    store<u32>(target, valueLength)
    memory.copy(target + 4, entry + entryHeaderBytes + keyLength, valueLength)
    target += 4 + valueLength
  }
  return statusOk
}

// An output block of at least `bytes`; false when the table has no room for one.
function outputReserve(bytes: u64): bool {
  if (outputBlock != 0 && sizeClassBytes(outputClass) >= bytes) return true
  const sizeClass = sizeClassOf(bytes)
  if (!reserveBlock(sizeClass)) return false
  const block = allocateBlock(sizeClass)
  if (outputBlock != 0) freeBlock(outputBlock, outputClass)
  outputBlock = block
  outputClass = sizeClass
  return true
}

// Set by scanEntries: how many entry addresses it listed, and their bytes as records.
let scanListed: u32 = 0

/**
 * Walks the arena from `cursor` (a block boundary: arenaStart, or a cursor this returned) towards `end`
 * (at most arenaBump), listing the addresses of live entries at `list` (u32 each): at most `listMax`, and
 * entries of at most `budgetBytes` of records (16 + key + value each) unless the first alone is larger.
 * Returns the cursor to continue from (`end` when done); scanListed() says how many were listed. The
 * caller gives a `list` in the input block, which the walk skips like the output block.
 */
export function scanEntries(cursor: usize, end: usize, list: usize, listMax: u32, budgetBytes: u32): usize {
  assert(initialized)
  assert(cursor >= arenaStart && end <= arenaBump && listMax > 0, 'scanEntries: cursor and end within the arena')
  let listed: u32 = 0
  let bytes: u64 = 0
  let block = cursor
  while (block < end) {
    let blockBytes: u64
    if (block == inputBlock) {
      blockBytes = sizeClassBytes(inputClass)
    } else if (block == outputBlock) {
      blockBytes = sizeClassBytes(outputClass)
    } else {
      const word = load<u32>(block)
      blockBytes = sizeClassBytes(word >>> 24)
      const keyLength = word & 0xffffff
      // Free blocks and the ordered view's nodes and separators carry a marker longer than any key.
      if (keyLength <= keyBytesMaxValue) {
        const recordBytes = u64(recordHeaderBytes) + keyLength + load<u32>(block, 4)
        if (listed == listMax || (listed > 0 && bytes + recordBytes > u64(budgetBytes))) break
        store<u32>(list + (usize(listed) << 2), u32(block))
        listed++
        bytes += recordBytes
      }
    }
    assert(blockBytes >= blockBytesMin, 'scanEntries: a block with no size class')
    block += usize(blockBytes)
  }
  scanListed = listed
  return block < end ? block : end
}

// What listWrite makes of listed entries:
/** Put records, the log's format with record CRCs zero: a checkpoint's block (format/record.ts). */
export const listFormatRecords: u32 = 0
/** (u32 key length, key, u32 value length, value) per entry: an iterator's answer (protocol.ts). */
export const listFormatPairs: u32 = 1
/** (u32 key length, key) per entry: an answer that carries no values. */
export const listFormatKeys: u32 = 2

@inline function listedBytes(entry: usize, format: u32): u64 {
  const keyLength = u64(load<u32>(entry) & 0xffffff)
  if (format == listFormatKeys) return 4 + keyLength
  return (format == listFormatRecords ? u64(recordHeaderBytes) : 8) + keyLength + load<u32>(entry, 4)
}

/**
 * Writes the `count` entries just listed at `list` (by scanEntries or rangeList) in `format` to the output
 * block (outputPointer/outputLength), in one pass instead of entry by entry in JavaScript.
 * statusAnswersNoRoom when a full table has no room for the output block: the caller then packs them
 * itself from the listed entries.
 */
export function listWrite(list: usize, count: u32, format: u32): i32 {
  assert(initialized && count == scanListed && format <= listFormatKeys, 'listWrite: what was just listed')
  let bytes: u64 = 0
  for (let index: u32 = 0; index < count; index++) bytes += listedBytes(usize(load<u32>(list + (usize(index) << 2))), format)
  if (bytes > 0xffff0000 || !outputReserve(bytes)) return statusAnswersNoRoom
  let target = outputBlock
  for (let index: u32 = 0; index < count; index++) {
    const entry = usize(load<u32>(list + (usize(index) << 2)))
    const keyLength = load<u32>(entry) & 0xffffff
    const valueLength = load<u32>(entry, 4)
    if (format == listFormatRecords) {
      store<u32>(target, 0) // the record CRC: zero in a checkpoint, whose block CRC covers it
      store<u32>(target, recordKindPut, 4) // kind in byte 4, bytes 5..7 zero
      store<u32>(target, keyLength, 8)
      store<u32>(target, valueLength, 12)
      memory.copy(target + recordHeaderBytes, entry + entryHeaderBytes, keyLength + valueLength)
      target += usize(recordHeaderBytes) + keyLength + valueLength
    } else {
      store<u32>(target, keyLength)
      memory.copy(target + 4, entry + entryHeaderBytes, keyLength)
      target += 4 + usize(keyLength)
      if (format == listFormatPairs) {
        store<u32>(target, valueLength)
        memory.copy(target + 4, entry + entryHeaderBytes + keyLength, valueLength)
        target += 4 + usize(valueLength)
      }
    }
  }
  outputBytes = u32(bytes)
  return statusOk
}

// Set by rangeList: whether the range holds entries past the last one listed.
let rangeMoreValue = false

// How a range's bound is given: none, or a key that is in the range (inclusive) or not (exclusive).
export const boundNone: u32 = 0
export const boundInclusive: u32 = 1
export const boundExclusive: u32 = 2

/**
 * Lists, in key order (`reverse`: descending), the addresses of the live entries within the range from
 * `low` to `high` (each a key and a bound mode) at `list`: at most `listMax` (>= 1) entries and
 * `budgetBytes` of their size in `format`, unless the first alone is larger. Returns how many; rangeMore()
 * says whether the range holds more after them. listWrite then writes them out.
 */
export function rangeList(
  low: usize,
  lowLength: u32,
  lowMode: u32,
  high: usize,
  highLength: u32,
  highMode: u32,
  reverse: bool,
  list: usize,
  listMax: u32,
  budgetBytes: u32,
  format: u32,
): u32 {
  assert(initialized && listMax > 0 && lowMode <= boundExclusive && highMode <= boundExclusive, 'rangeList: arguments')
  if (reverse) {
    if (highMode == boundNone) walkStart(true)
    else walkUpTo(high, highLength, highMode == boundExclusive)
  } else {
    if (lowMode == boundNone) walkStart(false)
    else walkFrom(low, lowLength, lowMode == boundExclusive)
  }
  // The far bound ends the walk; the near one placed its start.
  const far = reverse ? low : high
  const farLength = reverse ? lowLength : highLength
  const farMode = reverse ? lowMode : highMode
  const pastSign: i32 = reverse ? -1 : 1
  let listed: u32 = 0
  let bytes: u64 = 0
  rangeMoreValue = false
  while (true) {
    const entry = walkEntry()
    if (entry == 0) break
    if (farMode != boundNone) {
      const order = compareBytes(entry + entryHeaderBytes, load<u32>(entry) & 0xffffff, far, farLength) * pastSign
      if (order > 0 || (order == 0 && farMode == boundExclusive)) break
    }
    const size = listedBytes(entry, format)
    if (listed == listMax || (listed > 0 && bytes + size > u64(budgetBytes))) {
      rangeMoreValue = true
      break
    }
    store<u32>(list + (usize(listed) << 2), u32(entry))
    listed++
    bytes += size
    walkStep(reverse)
  }
  scanListed = listed
  return listed
}

export function rangeMore(): bool {
  return rangeMoreValue
}

/** Entries in the ordered view, counted leaf by leaf: for tests (it must equal entryCount). */
export function orderedCount(): u32 {
  return treeCount()
}

export function scanListedCount(): u32 {
  return scanListed
}

/** Where the arena starts, and where its handed-out blocks end now (a scan's range). */
export function arenaBegin(): usize {
  return arenaStart
}

export function arenaEnd(): usize {
  return arenaBump
}

/** How many bytes the input block holds now. */
export function inputCapacity(): u32 {
  return u32(sizeClassBytes(inputClass))
}

export function outputPointer(): usize {
  return outputBlock
}

export function outputLength(): u32 {
  return outputBytes
}

export function entryCount(): u32 {
  return entryCountValue
}

/** The live entries' bytes as records (exact below 2^53, as an f64 for JavaScript). */
export function liveBytes(): f64 {
  return f64(liveBytesValue)
}

export function errorRecordIndex(): u32 {
  return errorIndex
}

export function errorRecordOffset(): u32 {
  return errorOffset
}

/** The ordered view's root node (ordered.ts), for a reader on another thread. */
export function orderedRoot(): u32 {
  return u32(treeRoot())
}

/** The ordered view's node layout, field by field (ordered.ts treeLayout). */
export function orderedLayout(field: u32): u32 {
  return treeLayout(field)
}

export function keyBytesMax(): u32 {
  return keyBytesMaxValue
}

export function valueBytesMax(): u32 {
  return valueBytesMaxValue
}

/**
 * Writes debug statistics to a static block and returns its address: 12 u64 fields, in order:
 * slotCount, entryCount, probeDistanceMax, probeDistanceSum, arenaStart, arenaBump, indexStart,
 * memoryBytes, freeBlockBytes, freeBlockCount, pagesMax, reserved. Walks the whole index: for tests
 * and benchmarks, not the hot path.
 */
export function statsWrite(): usize {
  let distanceMax: u64 = 0
  let distanceSum: u64 = 0
  for (let slot: u32 = 0; slot < slotCount; slot++) {
    const address = slotAddress(slot)
    if (load<u32>(address, 4) == 0) continue
    const distance = u64((slot - (load<u32>(address) & slotMask)) & slotMask)
    if (distance > distanceMax) distanceMax = distance
    distanceSum += distance
  }
  let freeBlockCount: u64 = 0
  for (let sizeClass: u32 = 0; sizeClass < sizeClassCount; sizeClass++) {
    freeBlockCount += load<u32>(freeCounts + (sizeClass << 2))
  }
  store<u64>(stats, u64(slotCount), 0)
  store<u64>(stats, u64(entryCountValue), 8)
  store<u64>(stats, distanceMax, 16)
  store<u64>(stats, distanceSum, 24)
  store<u64>(stats, u64(arenaStart), 32)
  store<u64>(stats, u64(arenaBump), 40)
  store<u64>(stats, u64(indexStart), 48)
  store<u64>(stats, u64(memory.size()) * pageBytes, 56)
  store<u64>(stats, freeBlockBytes, 64)
  store<u64>(stats, freeBlockCount, 72)
  store<u64>(stats, u64(pagesMax), 80)
  store<u64>(stats, 0, 88)
  return stats
}

/** The table's hash of `length` bytes at `pointer` with the given round counts: for tests. */
export function hashForTest(pointer: usize, length: u32, compressionRounds: i32, finalizationRounds: i32): u64 {
  return sipHash(pointer, length, compressionRounds, finalizationRounds)
}
