// One test per row of the decision table in recovery.ts. Each builds real logs with a shard on held
// storage, then crafts the state the row describes by editing bytes, and reopens.
import { describe, expect, it } from 'vitest'
import { completionRecordBytes, decodeCompletion, encodeCompletion, type CompletionRecord } from '../format/completion.js'
import { segmentName } from '../format/segment-files.js'
import { EngineError } from '../errors.js'
import { sectorBytes } from './recovery.js'
import { Shard, type ShardOptions } from '../shard.js'
import { HeldStorage, lookup, putRecord, type HeldFile } from '../testing/held-file.js'

const directory = '/held/shard-007'

function options(storage: HeldStorage, extra: Partial<ShardOptions> = {}): ShardOptions {
  return { directory, shard: 7, backend: 'auto', batchBytesMax: 1 << 20, recovery: 'strict', storage, ...extra }
}

function write(shard: Shard, key: string, value: string): void {
  shard.write(putRecord(key, value), 1, () => {})
}


/** A shard that acknowledged `count` batches (key k<i> = value of 600 bytes) and then "crashed". */
function crashedAfter(count: number): { storage: HeldStorage; intent: HeldFile; completion: HeldFile; records: CompletionRecord[] } {
  const storage = new HeldStorage()
  const shard = Shard.open(options(storage))
  for (let index = 0; index < count; index++) {
    write(shard, `k${index}`, `${index}`.padEnd(600, '.'))
    storage.completeCommit()
  }
  const intent = storage.files.get(`${directory}/${segmentName('intent', 1)}`)!
  const completion = storage.files.get(`${directory}/${segmentName('completion', 1)}`)!
  const records: CompletionRecord[] = []
  for (let index = 0; index < count; index++) {
    records.push(decodeCompletion(completion.contents.subarray(index * completionRecordBytes)) as CompletionRecord)
  }
  return { storage, intent, completion, records }
}

function reopen(storage: HeldStorage, extra: Partial<ShardOptions> = {}): Shard | EngineError {
  try {
    return Shard.open(options(storage, extra))
  } catch (error) {
    if (error instanceof EngineError) return error
    throw error
  }
}

function expectCorrupt(result: Shard | EngineError, details: Record<string, unknown>): void {
  expect(result).toBeInstanceOf(EngineError)
  expect((result as EngineError).code).toBe('WAL_CORRUPT')
  expect((result as EngineError).details).toMatchObject({ shard: 7, ...details })
}

describe('recovery decision table', () => {
  it('record valid, batch intact: applies every batch', () => {
    const { storage } = crashedAfter(4)
    const shard = reopen(storage) as Shard
    expect(shard.recovery).toMatchObject({ batchesReplayed: 4, recordsReplayed: 4, tailBytesDropped: 0, cleanShutdown: false })
    for (let index = 0; index < 4; index++) expect(lookup(shard, `k${index}`)).toBe(`${index}`.padEnd(600, '.'))
  })

  it('record valid, last batch torn past the end of the file: dropped from both logs', () => {
    const { storage, intent, records } = crashedAfter(4)
    intent.truncate(records[3]!.offset + 100)
    const shard = reopen(storage) as Shard
    expect(shard.recovery.batchesReplayed).toBe(3)
    expect(shard.recovery.tailReason).toMatch(/batch 4: its completion record is durable but its intent bytes are torn/)
    expect(shard.recovery.tailBytesDropped).toBe(100)
    expect(lookup(shard, 'k3')).toBeUndefined()
    // the dropped batch's sequence is reused, and the logs go on cleanly
    write(shard, 'next', 'n')
    expect(decodeCompletion(storage.heldOn('completion')[0]!.buffer)).toMatchObject({ sequence: 4 })
  })

  it('record valid, last batch with a zero sector (a tear): dropped', () => {
    const { storage, intent, records } = crashedAfter(4)
    const last = records[3]!
    const sector = Math.ceil(last.offset / sectorBytes) * sectorBytes
    intent.contents.fill(0, sector, Math.min(sector + sectorBytes, last.offset + last.length))
    const shard = reopen(storage) as Shard
    expect(shard.recovery.batchesReplayed).toBe(3)
    expect(shard.recovery.tailReason).toMatch(/torn/)
  })

  it('record valid, last batch damaged with no zero sector: refused, since a crash cannot do that', () => {
    const { storage, intent, records } = crashedAfter(4)
    intent.contents[records[3]!.offset + 200]! ^= 0x04
    expectCorrupt(reopen(storage), { batchSequence: 4, byteRange: [records[3]!.offset, records[3]!.offset + records[3]!.length] })
  })

  it('record valid, batch damaged before the last: refused', () => {
    const { storage, intent, records } = crashedAfter(4)
    intent.contents.fill(0, records[1]!.offset, records[1]!.offset + 10) // looks like a tear, but batch 3 was written after 2 was acknowledged
    expectCorrupt(reopen(storage), { batchSequence: 2, file: `${directory}/${segmentName('intent', 1)}` })
  })

  it('record valid, last batch torn but a clean close followed it: refused', () => {
    const storage = new HeldStorage()
    const shard = Shard.open(options(storage))
    write(shard, 'a', 'x'.repeat(600))
    storage.completeCommit()
    shard.close(() => {})
    storage.complete('completion') // the close record
    const intent = storage.files.get(`${directory}/${segmentName('intent', 1)}`)!
    intent.truncate(100)
    expectCorrupt(reopen(storage), { batchSequence: 1 })
  })

  it('record valid, intent segment missing: dropped when last, refused when not', () => {
    const last = crashedAfter(2)
    const lastRecord = last.records[1]!
    // point the last record at a segment that does not exist, as if the intent write never landed
    encodeCompletion(last.completion.contents.subarray(completionRecordBytes, 2 * completionRecordBytes), { ...lastRecord, segment: 2, offset: 0 })
    expect((reopen(last.storage) as Shard).recovery.batchesReplayed).toBe(1)

    const earlier = crashedAfter(3)
    earlier.storage.remove(`${directory}/${segmentName('intent', 1)}`)
    expectCorrupt(reopen(earlier.storage), { batchSequence: 1 })
  })

  it('a damaged completion record: refused, even at the end', () => {
    const { storage, completion } = crashedAfter(3)
    completion.contents[2 * completionRecordBytes + 20]! ^= 0x01
    expectCorrupt(reopen(storage), { batchSequence: 3, byteRange: [2 * completionRecordBytes, 3 * completionRecordBytes] })
  })

  it('completion records out of sequence: refused', () => {
    const { storage, completion } = crashedAfter(3)
    completion.contents.copyWithin(completionRecordBytes, 2 * completionRecordBytes, 3 * completionRecordBytes) // record 3 where 2 was
    expectCorrupt(reopen(storage), { batchSequence: 2 })
  })

  it('a completion record after an empty slot: refused', () => {
    const { storage, completion } = crashedAfter(3)
    completion.contents.fill(0, completionRecordBytes, 2 * completionRecordBytes)
    expectCorrupt(reopen(storage), { batchSequence: 2 })
  })

  it('no record, torn bytes after the last batch: dropped as the in-flight batch', () => {
    const { storage, intent, records } = crashedAfter(2)
    const end = records[1]!.offset + records[1]!.length
    intent.grow(end + 700)
    intent.contents.fill(0x5a, end, end + 300)
    const shard = reopen(storage) as Shard
    expect(shard.recovery).toMatchObject({ batchesReplayed: 2, tailBytesDropped: 300 })
    expect(shard.recovery.tailReason).toMatch(/torn, never acknowledged batch after batch 2/)
  })

  it('no record, an intact batch beyond the next sequence: refused (completion records are gone)', () => {
    const { storage, completion } = crashedAfter(4)
    completion.truncate(2 * completionRecordBytes) // records 3 and 4 lost, intent batches 3 and 4 intact
    expectCorrupt(reopen(storage), { batchSequence: 3 })
  })

  it('no segments at all: an empty shard', () => {
    const shard = reopen(new HeldStorage()) as Shard
    expect(shard.recovery).toMatchObject({ batchesReplayed: 0, tailBytesDropped: 0, repaired: undefined })
  })

  it("with recovery 'truncate', keeps the prefix before the damage and reports exactly what it dropped", () => {
    const { storage, intent, records } = crashedAfter(5)
    intent.contents[records[2]!.offset + 50]! ^= 0xff
    const shard = reopen(storage, { recovery: 'truncate' }) as Shard
    expect(shard.recovery.batchesReplayed).toBe(2)
    expect(shard.recovery.repaired).toMatchObject({ firstBatchDropped: 3, batchesDropped: 3 })
    expect(shard.recovery.repaired!.intentBytesDropped).toBe(records[4]!.offset + records[4]!.length - records[2]!.offset)
    expect([lookup(shard, 'k1'), lookup(shard, 'k2')]).toEqual(['1'.padEnd(600, '.'), undefined])
    // and a strict open afterwards finds a clean log
    write(shard, 'after', 'repair')
    storage.completeCommit()
    const again = reopen(storage) as Shard
    expect(again.recovery).toMatchObject({ batchesReplayed: 3, repaired: undefined })
    expect(lookup(again, 'after')).toBe('repair')
  })
})
