import { randomBytes, randomInt } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { checksum, checksumCombine } from './checksum.js'
import {
  checkpointHeaderBytes,
  encodeCheckpointHeader,
  readCheckpointBlocks,
  readCheckpointHeader,
  type CheckpointHeader,
  type CheckpointSource,
} from './checkpoint.js'
import { batchHeaderBytes, encodeBatchHeader, encodeRecord, recordBytes, recordKindPut } from './record.js'

/** A checkpoint file of `blockSizes` blocks (records per block), random keys and values; and its blocks' bodies. */
function checkpointFile(recordsPerBlock: readonly number[]): { file: Uint8Array; bodies: Uint8Array[]; header: CheckpointHeader } {
  const blocks: Uint8Array[] = []
  const bodies: Uint8Array[] = []
  let whole = 0
  let records = 0
  recordsPerBlock.forEach((count, index) => {
    const entries = Array.from({ length: count }, () => [randomBytes(randomInt(1, 40)), randomBytes(randomInt(0, 3000))] as const)
    const body = new Uint8Array(entries.reduce((sum, [key, value]) => sum + recordBytes(key.length, value.length), 0))
    const view = new DataView(body.buffer)
    let offset = 0
    for (const [key, value] of entries) offset = encodeRecord(body, view, offset, recordKindPut, key, value)
    const block = new Uint8Array(batchHeaderBytes + body.length)
    encodeBatchHeader(block, { sequence: index + 1, bodyBytes: body.length, recordCount: count, bodyChecksum: checksum(body) })
    block.set(body, batchHeaderBytes)
    whole = checksumCombine(whole, checksum(block), block.length)
    records += count
    blocks.push(block)
    bodies.push(body)
  })
  const bodyBytes = blocks.reduce((sum, block) => sum + block.length, 0)
  const header: CheckpointHeader = {
    shard: 0,
    sequence: 9,
    recordCount: records,
    bodyBytes,
    blockCount: blocks.length,
    bodyChecksum: whole,
    intent: { segment: 1, offset: 0 },
    completion: { segment: 1, offset: 0 },
    acknowledgedThrough: 9,
  }
  const file = new Uint8Array(checkpointHeaderBytes + bodyBytes)
  file.set(encodeCheckpointHeader(header))
  let offset = checkpointHeaderBytes
  for (const block of blocks) {
    file.set(block, offset)
    offset += block.length
  }
  return { file, bodies, header }
}

/** A source over `file` that reads at most `pieceMax` bytes a call (a short read in the middle, too). */
function source(file: Uint8Array, pieceMax = Infinity): CheckpointSource {
  return {
    size: file.length,
    readAt: (offset, target) => {
      const part = file.subarray(offset, offset + Math.min(target.length, pieceMax))
      target.set(part)
      return part.length
    },
  }
}

function read(file: Uint8Array, readBytes: number, pieceMax = Infinity) {
  const taken: Uint8Array[] = []
  const header = readCheckpointHeader(source(file, pieceMax))
  expect(header).toBeDefined()
  const reading = readCheckpointBlocks(source(file, pieceMax), header!, (body) => taken.push(body.slice()), readBytes)
  return { reading, taken }
}

describe('checkpoint file, read a few MiB at a time', () => {
  it('hands over every block whole, however the reads cut them (blocks across reads, blocks larger than a read)', () => {
    const { file, bodies, header } = checkpointFile([3, 40, 1, 200, 7, 90, 2])
    expect(readCheckpointHeader(source(file))).toEqual(header)
    for (const readBytes of [33, 100, 4096, 65_536, 1 << 20]) {
      for (const pieceMax of [Infinity, 1000]) {
        const { reading, taken } = read(file, readBytes, pieceMax)
        expect(reading, `readBytes ${readBytes}`).toEqual({ state: 'intact', blocksRead: 7, recordsRead: header.recordCount })
        expect(taken.map((body) => Buffer.from(body).toString('hex'))).toEqual(bodies.map((body) => Buffer.from(body).toString('hex')))
      }
    }
  })

  it('reports a damaged block and still hands over the blocks before and after it', () => {
    const { file, bodies } = checkpointFile([5, 5, 5, 5])
    const second = checkpointHeaderBytes + batchHeaderBytes + bodies[0]!.length + batchHeaderBytes + 10
    file[second]! ^= 0x40
    const { reading, taken } = read(file, 100)
    expect(reading).toMatchObject({ state: 'damaged', blocksRead: 3, reason: 'block 2 fails its checksum' })
    expect(taken.map((body) => Buffer.from(body).toString('hex'))).toEqual(
      [bodies[0]!, bodies[2]!, bodies[3]!].map((body) => Buffer.from(body).toString('hex')),
    )
  })

  it("reports a file cut short, and the whole's checksum when every block holds but the header's does not match", () => {
    const { file, header } = checkpointFile([4, 4, 4])
    const short = read(file.subarray(0, file.length - 5), 64)
    expect(short.reading).toMatchObject({ state: 'damaged', blocksRead: 2 })
    expect(short.reading.state === 'damaged' && short.reading.reason).toMatch(/the file is \d+ bytes, its header says/)

    const other = file.slice()
    other.set(encodeCheckpointHeader({ ...header, bodyChecksum: (header.bodyChecksum ^ 1) >>> 0 }))
    const { reading } = read(other, 64)
    expect(reading).toMatchObject({ state: 'damaged', blocksRead: 3, reason: "the body fails the header's checksum of the whole" })
  })
})
