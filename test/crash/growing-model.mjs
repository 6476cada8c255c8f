// What the growing-files test writes, shared by its writer child (growing-writer.mjs, which writes it) and
// the test (growing-files.test.ts, which checks it): every byte is a pure function of the seed and a few
// numbers, so the child only reports "appended record S to file F" or "checkpoint K is in place", and the
// test recomputes the exact bytes that must be on disk.
//
// Two kinds of files, both growing as they are written (every write lands past the end of the file):
// - append files: records appended one after the other, one write + fdatasync each, like a log without
//   preallocated space. A record is a 24-byte header (magic, round, file, sequence, body length, a check of
//   those) and a pseudo-random body.
// - checkpoints: checkpoint K is written to checkpoint-K.tmp in chunks, each one write + fdatasync, then
//   fsynced, renamed to checkpoint-K and the directory fsynced. Its header holds K, its length and a
//   checksum of the body.
import { mix, random } from './model.mjs'

export const recordMagic = 0x574f5247 // 'GROW'
export const recordHeaderBytes = 24
export const checkpointMagic = 0x54504b43 // 'CKPT'
export const checkpointHeaderBytes = 16

/** Pseudo-random bytes from `seedNumbers`, four at a time (cheap enough for megabytes per round). */
function fill(bytes, seedNumbers) {
  const next = random(mix(...seedNumbers))
  const words = Math.floor(bytes.length / 4)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  for (let index = 0; index < words; index++) view.setUint32(index * 4, (next.next() * 2 ** 32) >>> 0, true)
  for (let index = words * 4; index < bytes.length; index++) bytes[index] = (next.next() * 256) | 0
}

/** Body bytes of a record: mostly small (1 B to 8 KiB), one in 16 large (up to 512 KiB). */
export function recordBodyLength(seed, round, file, sequence) {
  const next = random(mix(seed, round, file, sequence, 0x6c656e))
  if (next.integer(16) === 0) return 8192 + next.integer(512 * 1024)
  return 1 + next.integer(8192)
}

/** The whole record: header, then body. */
export function recordBytes(seed, round, file, sequence) {
  const bodyLength = recordBodyLength(seed, round, file, sequence)
  const bytes = new Uint8Array(recordHeaderBytes + bodyLength)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, recordMagic, true)
  view.setUint32(4, round, true)
  view.setUint32(8, file, true)
  view.setUint32(12, sequence, true)
  view.setUint32(16, bodyLength, true)
  view.setUint32(20, mix(recordMagic, round, file, sequence, bodyLength), true)
  fill(bytes.subarray(recordHeaderBytes), [seed, round, file, sequence, 0x626f6479])
  return bytes
}

/** Checkpoint K's length: 16 KiB to 2 MiB. */
export function checkpointLength(seed, k) {
  return 16 * 1024 + random(mix(seed, k, 0x636b6c)).integer(2 * 1024 * 1024)
}

/** Checkpoint K's bytes: header (magic, K, length, checksum of the body), then body. */
export function checkpointBytes(seed, k) {
  const bytes = new Uint8Array(checkpointLength(seed, k))
  fill(bytes.subarray(checkpointHeaderBytes), [seed, k, 0x636b7074])
  const view = new DataView(bytes.buffer)
  view.setUint32(0, checkpointMagic, true)
  view.setUint32(4, k, true)
  view.setUint32(8, bytes.length, true)
  let check = 0
  for (let offset = checkpointHeaderBytes; offset + 4 <= bytes.length; offset += 4096) check = mix(check, view.getUint32(offset, true))
  view.setUint32(12, check, true)
  return bytes
}

/** The chunk lengths checkpoint K is written in (4 KiB to 256 KiB each), in order; they add up to its length. */
export function checkpointChunks(seed, k) {
  const next = random(mix(seed, k, 0x63686b))
  const total = checkpointLength(seed, k)
  const chunks = []
  for (let done = 0; done < total;) {
    const length = Math.min(total - done, 4096 + next.integer(256 * 1024))
    chunks.push(length)
    done += length
  }
  return chunks
}

/** checkpoint-000012: names sort by number. */
export function checkpointName(k) {
  return `checkpoint-${String(k).padStart(6, '0')}`
}

export const checkpointNamePattern = /^checkpoint-(\d{6})$/
