// How the intent log's batches (record.ts) lie in a segment file: in 512-byte sectors, each stamped with the
// number of the segment it was written as. Owns that layout; never touches a file. Little-endian.
//
//   sector (512 bytes)
//   | offset | size | field                                                                        |
//   |--------|------|------------------------------------------------------------------------------|
//   | 0      | 4    | stamp: the number of the segment this sector was written in                  |
//   | 4      | 508  | the next 508 bytes of a batch (header, then body), zeros after its end       |
//
// A batch starts at a sector boundary and fills whole sectors (its last one padded with zeros), so every
// write of the log covers whole sectors, and no two batches share one.
//
// Why stamps: a segment file is reused (log/segment-writer.ts): once a checkpoint retired it, it is renamed
// to the next segment's number and written over, without being zero-filled again. So the bytes ahead of the
// write position are not zeros but an earlier life's batches (stale). Recovery must tell, sector by sector,
// what this life wrote from what it did not, as it tells zeros from data in a fresh segment:
// - a sector whose stamp is the segment's number was written in this life;
// - any other sector (zeros: stamp 0; or stale: an earlier, smaller segment number) was not.
// A crash tears a write at sector granularity (each sector old or new), so a torn batch shows a sector of
// another stamp, and a batch damaged after it was written does not: the same test, `unwritten`, serves a
// fresh segment (zeros) and a reused one (stale). A reused file only ever gets a number larger than every
// number it was written as (segment numbers only grow, and only segments a checkpoint retired are reused),
// so no stale sector carries the stamp of the segment it is now. RocksDB's recyclable log records carry
// their log number for the same reason; here it is per sector because the tear is.

export const sectorBytes = 512
export const sectorStampBytes = 4
export const sectorPayloadBytes = sectorBytes - sectorStampBytes

/** The bytes a batch of `length` bytes (header + body) takes in a segment: whole sectors. */
export function sectorSpan(length: number): number {
  return Math.ceil(length / sectorPayloadBytes) * sectorBytes
}

/** Lays a batch's bytes out in stamped sectors, padded with zeros: what is written at a sector boundary. */
export function layOutSectors(batch: Uint8Array, segment: number): Uint8Array {
  const sectors = new Uint8Array(sectorSpan(batch.length))
  const view = new DataView(sectors.buffer)
  for (let from = 0, at = 0; from < batch.length; from += sectorPayloadBytes, at += sectorBytes) {
    view.setUint32(at, segment, true)
    sectors.set(batch.subarray(from, Math.min(from + sectorPayloadBytes, batch.length)), at + sectorStampBytes)
  }
  return sectors
}

/** The payloads of whole stamped sectors, joined (a batch's bytes and its padding), whatever the stamps. */
export function sectorPayloads(sectors: Uint8Array): Uint8Array {
  const count = Math.floor(sectors.length / sectorBytes)
  const joined = new Uint8Array(count * sectorPayloadBytes)
  for (let index = 0; index < count; index++) {
    joined.set(sectors.subarray(index * sectorBytes + sectorStampBytes, (index + 1) * sectorBytes), index * sectorPayloadBytes)
  }
  return joined
}

/** The stamp of the sector at `at` (a sector boundary); 0 when it lies past the end of `contents`. */
export function sectorStamp(contents: Uint8Array, at: number): number {
  if (at + sectorStampBytes > contents.length) return 0
  return (contents[at]! | (contents[at + 1]! << 8) | (contents[at + 2]! << 16) | (contents[at + 3]! << 24)) >>> 0
}

/**
 * Reads back a batch of `length` bytes laid out at `at` of a segment numbered `segment`. `unwritten`: some
 * sector of it was not written in this life (another stamp), or lies past the end of the file: what a
 * tear leaves. `bytes` is what the sectors hold either way (zeros past the end).
 */
export function gatherSectors(
  contents: Uint8Array,
  at: number,
  length: number,
  segment: number,
): { bytes: Uint8Array; unwritten: boolean } {
  const bytes = new Uint8Array(length)
  let unwritten = false
  for (let from = 0, sector = at; from < length; from += sectorPayloadBytes, sector += sectorBytes) {
    if (sector + sectorBytes > contents.length || sectorStamp(contents, sector) !== segment) unwritten = true
    const start = Math.min(sector + sectorStampBytes, contents.length)
    const piece = contents.subarray(start, Math.min(start + Math.min(sectorPayloadBytes, length - from), contents.length))
    bytes.set(piece, from)
  }
  return { bytes, unwritten }
}

/**
 * Where the sectors written in this life end, at or after `from` (a sector boundary): the end of the last
 * one stamped `segment` (a partial one at the end of the file counts to the file's end); `from` when none is.
 */
export function writtenEnd(contents: Uint8Array, from: number, segment: number): number {
  for (let sector = Math.floor((contents.length - 1) / sectorBytes) * sectorBytes; sector >= from; sector -= sectorBytes) {
    if (sectorStamp(contents, sector) === segment) return Math.min(sector + sectorBytes, contents.length)
  }
  return from
}
