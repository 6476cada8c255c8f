// What JavaScript knows of the table's memory layout (assembly/table.ts and assembly/ordered.ts say it in
// full): an entry's header, the ordered view's nodes, and how listed entries are packed. WasmTable checks
// the node layout against the module's own (orderedLayout) when it loads it, so the two cannot drift.

import { recordHeaderBytes, recordKindPut } from '../format/record.js'

/** A WebAssembly.Memory, typed here: the project's lib (ES2022, no DOM) does not declare it. */
export interface WasmMemory {
  /** A SharedArrayBuffer: the table's memory is shared (wasm-table.ts says why). A grow makes a new, longer one. */
  readonly buffer: ArrayBufferLike
}

/** entry: u32 key length | size class << 24, u32 value length, key, value. */
export const entryHeaderBytes = 8
export const entryKeyLengthMask = 0xff_ffff

/** The ordered view's nodes (assembly/ordered.ts), in the order treeLayout numbers the fields. */
export const orderedLayout = {
  leafPrefixes: 16,
  leafEntries: 528,
  innerPrefixes: 16,
  innerSeparators: 496,
  innerChildren: 736,
  leafCapacity: 64,
  innerCapacity: 60,
  nodeMarker: 0xff_fffe,
  separatorMarker: 0xff_fffd,
} as const

export const orderedLayoutFields = Object.values(orderedLayout)

/** How listed entries are packed (listWrite in assembly/table.ts): as put records, (key, value) pairs, or keys. */
export type ListFormat = 'records' | 'pairs' | 'keys'

/**
 * Packs the entries at `addresses` (the first `count`) of `memory`, in `format`: the bytes listWrite writes.
 * record: u32 CRC (zero here), u32 kind, u32 key length, u32 value length, key, value (format/record.ts);
 * pair: u32 key length, key, u32 value length, value; key: u32 key length, key (protocol.ts).
 */
export function packListed(memory: Uint8Array, addresses: ArrayLike<number>, count: number, format: ListFormat): Uint8Array {
  const view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength)
  const keyLength = (entry: number): number => view.getUint32(entry, true) & entryKeyLengthMask
  let bytes = 0
  for (let index = 0; index < count; index++) {
    const entry = addresses[index]!
    const key = keyLength(entry)
    bytes += format === 'keys' ? 4 + key : (format === 'records' ? recordHeaderBytes : 8) + key + view.getUint32(entry + 4, true)
  }
  const out = new Uint8Array(bytes)
  const outView = new DataView(out.buffer)
  let offset = 0
  for (let index = 0; index < count; index++) {
    const entry = addresses[index]!
    const keyBytes = keyLength(entry)
    const valueBytes = view.getUint32(entry + 4, true)
    const key = memory.subarray(entry + entryHeaderBytes, entry + entryHeaderBytes + keyBytes)
    const value = memory.subarray(entry + entryHeaderBytes + keyBytes, entry + entryHeaderBytes + keyBytes + valueBytes)
    if (format === 'records') {
      outView.setUint32(offset + 4, recordKindPut, true)
      outView.setUint32(offset + 8, keyBytes, true)
      outView.setUint32(offset + 12, valueBytes, true)
      out.set(key, offset + recordHeaderBytes)
      out.set(value, offset + recordHeaderBytes + keyBytes)
      offset += recordHeaderBytes + keyBytes + valueBytes
      continue
    }
    outView.setUint32(offset, keyBytes, true)
    out.set(key, offset + 4)
    offset += 4 + keyBytes
    if (format === 'keys') continue
    outView.setUint32(offset, valueBytes, true)
    out.set(value, offset + 4)
    offset += 4 + valueBytes
  }
  return out
}
