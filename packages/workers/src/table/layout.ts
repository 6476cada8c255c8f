// What JavaScript knows of the table's memory layout (assembly/table.ts and assembly/ordered.ts say it in
// full) to read the ordered view from another thread (ordered-reader.ts): an entry's header and the view's
// nodes. WasmTable checks the node layout against the module's own (orderedLayout) when it loads it, so
// the two cannot drift.

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
