// Tests of each case of the decision table (recovery-cases.ts), named by its label: each builds real logs
// with a shard on held storage, crafts the state the case describes by editing bytes, and reopens. The
// table itself is checked to give exactly one case for every set of facts that can occur.
import { describe, expect, it } from 'vitest'
import { completionRecordBytes, sectorBytes, decodeCompletion, encodeCompletion, type CompletionRecord } from '../format/completion.js'
import { segmentName } from '../format/segment-files.js'
import { EngineError } from '../errors.js'
import { completionStates, factsPossible, intentStates, recoveryCase, recoveryCases, type RecoveryFacts } from './recovery-cases.js'
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

function expectCorrupt(result: Shard | EngineError, label: string, details: Record<string, unknown>): void {
  expect(result).toBeInstanceOf(EngineError)
  expect((result as EngineError).code).toBe('WAL_CORRUPT')
  expect((result as EngineError).details).toMatchObject({ shard: 7, case: label, ...details })
}

/** The labels the tests below are named after: each case of the table must have at least one. */
const labelsTested = new Set<string>()

/** A test of one case of the table, named by its label. */
function caseTest(label: string, name: string, body: () => void): void {
  expect(recoveryCases.map((row) => row.label)).toContain(label)
  labelsTested.add(label)
  it(`${label}: ${name}`, body)
}

describe('recovery decision table', () => {
  caseTest('complete', 'record valid, batch intact: applies every batch', () => {
    const { storage } = crashedAfter(4)
    const shard = reopen(storage) as Shard
    expect(shard.recovery).toMatchObject({ batchesReplayed: 4, recordsReplayed: 4, tailBytesDropped: 0, cleanShutdown: false })
    for (let index = 0; index < 4; index++) expect(lookup(shard, `k${index}`)).toBe(`${index}`.padEnd(600, '.'))
  })

  caseTest('torn_last', 'record valid, last batch torn past the end of the file: dropped from both logs', () => {
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

  caseTest('torn_last', 'record valid, last batch with a zero sector (a tear): dropped', () => {
    const { storage, intent, records } = crashedAfter(4)
    const last = records[3]!
    const sector = Math.ceil(last.offset / sectorBytes) * sectorBytes
    intent.contents.fill(0, sector, Math.min(sector + sectorBytes, last.offset + last.length))
    const shard = reopen(storage) as Shard
    expect(shard.recovery.batchesReplayed).toBe(3)
    expect(shard.recovery.tailReason).toMatch(/torn/)
  })

  caseTest('damaged_last', 'record valid, last batch damaged with no zero sector: refused, since a crash cannot do that', () => {
    const { storage, intent, records } = crashedAfter(4)
    intent.contents[records[3]!.offset + 200]! ^= 0x04
    expectCorrupt(reopen(storage), 'damaged_last', {
      batchSequence: 4,
      byteRange: [records[3]!.offset, records[3]!.offset + records[3]!.length],
    })
  })

  caseTest('broken_before_last', 'record valid, batch damaged before the last: refused', () => {
    const { storage, intent, records } = crashedAfter(4)
    intent.contents.fill(0, records[1]!.offset, records[1]!.offset + 10) // looks like a tear, but batch 3 was written after 2 was acknowledged
    expectCorrupt(reopen(storage), 'broken_before_last', { batchSequence: 2, file: `${directory}/${segmentName('intent', 1)}` })
  })

  caseTest('broken_before_last', 'record valid, last batch torn but a clean close followed it: refused', () => {
    const storage = new HeldStorage()
    const shard = Shard.open(options(storage))
    write(shard, 'a', 'x'.repeat(600))
    storage.completeCommit()
    shard.close(() => {})
    storage.complete('completion') // the close record
    const intent = storage.files.get(`${directory}/${segmentName('intent', 1)}`)!
    intent.truncate(100)
    expectCorrupt(reopen(storage), 'broken_before_last', { batchSequence: 1 })
  })

  caseTest('torn_last', 'record valid, intent segment missing: dropped when last, refused when not (broken_before_last)', () => {
    const last = crashedAfter(2)
    const lastRecord = last.records[1]!
    // point the last record at a segment that does not exist, as if the intent write never landed
    encodeCompletion(last.completion.contents.subarray(completionRecordBytes, 2 * completionRecordBytes), {
      ...lastRecord,
      segment: 2,
      offset: 0,
    })
    expect((reopen(last.storage) as Shard).recovery.batchesReplayed).toBe(1)

    const earlier = crashedAfter(3)
    earlier.storage.remove(`${directory}/${segmentName('intent', 1)}`)
    expectCorrupt(reopen(earlier.storage), 'broken_before_last', { batchSequence: 1 })
  })

  caseTest('completion_damaged', 'a damaged completion record: refused, even at the end', () => {
    const { storage, completion } = crashedAfter(3)
    completion.contents[2 * completionRecordBytes + 20]! ^= 0x01
    expectCorrupt(reopen(storage), 'completion_damaged', {
      batchSequence: 3,
      byteRange: [2 * completionRecordBytes, 3 * completionRecordBytes],
    })
  })

  caseTest('completion_out_of_sequence', 'completion records out of sequence: refused', () => {
    const { storage, completion } = crashedAfter(3)
    completion.contents.copyWithin(completionRecordBytes, 2 * completionRecordBytes, 3 * completionRecordBytes) // record 3 where 2 was
    expectCorrupt(reopen(storage), 'completion_out_of_sequence', { batchSequence: 2 })
  })

  caseTest('completion_after_empty_slot', 'a completion record after an empty slot: refused', () => {
    const { storage, completion } = crashedAfter(3)
    completion.contents.fill(0, completionRecordBytes, 2 * completionRecordBytes)
    expectCorrupt(reopen(storage), 'completion_after_empty_slot', { batchSequence: 2 })
  })

  caseTest('tail_in_flight', 'no record, torn bytes after the last batch: dropped as the in-flight batch', () => {
    const { storage, intent, records } = crashedAfter(2)
    const end = records[1]!.offset + records[1]!.length
    intent.grow(end + 700)
    intent.contents.fill(0x5a, end, end + 300)
    const shard = reopen(storage) as Shard
    expect(shard.recovery).toMatchObject({ batchesReplayed: 2, tailBytesDropped: 300 })
    expect(shard.recovery.tailReason).toMatch(/torn, never acknowledged batch after batch 2/)
  })

  caseTest('tail_beyond', 'no record, an intact batch beyond the next sequence: refused (completion records are gone)', () => {
    const { storage, completion } = crashedAfter(4)
    completion.truncate(2 * completionRecordBytes) // records 3 and 4 lost, intent batches 3 and 4 intact
    expectCorrupt(reopen(storage), 'tail_beyond', { batchSequence: 3 })
  })

  caseTest('tail_clean', 'no segments at all: an empty shard', () => {
    const shard = reopen(new HeldStorage()) as Shard
    expect(shard.recovery).toMatchObject({ batchesReplayed: 0, tailBytesDropped: 0, repaired: undefined })
  })

  caseTest('misplaced', 'record valid, but its batch is not where the previous one ended: refused', () => {
    const { storage, completion, records } = crashedAfter(3)
    // record 2 points 64 bytes past where batch 1 ended; every checksum of the record itself holds
    encodeCompletion(completion.contents.subarray(completionRecordBytes, 2 * completionRecordBytes), {
      ...records[1]!,
      offset: records[1]!.offset + 64,
    })
    expectCorrupt(reopen(storage), 'misplaced', { batchSequence: 2 })
  })

  caseTest('tail_in_flight', 'no record, the next batch intact in the intent log: dropped, never acknowledged', () => {
    const { storage } = crashedAfter(2)
    const shard = Shard.open(options(storage))
    write(shard, 'unacknowledged', 'u'.repeat(600))
    storage.complete('intent') // its intent bytes are durable; its completion record never is
    const again = reopen(storage) as Shard
    expect(again.recovery).toMatchObject({ batchesReplayed: 2 })
    expect(again.recovery.tailBytesDropped).toBeGreaterThan(600)
    expect(again.recovery.tailReason).toMatch(/batch 3 reached the intent log but its completion record never became durable/)
    expect(lookup(again, 'unacknowledged')).toBeUndefined()
  })

  caseTest('tail_clean', 'a clean shutdown: nothing dropped, nothing refused', () => {
    const { storage } = crashedAfter(2)
    const shard = Shard.open(options(storage))
    shard.close(() => {})
    storage.complete('completion') // the close record
    const again = reopen(storage) as Shard
    expect(again.recovery).toMatchObject({
      batchesReplayed: 2,
      tailBytesDropped: 0,
      tailReason: undefined,
      cleanShutdown: true,
      repaired: undefined,
    })
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

  it('every case of the table has a test above, named by its label', () => {
    expect([...labelsTested].sort()).toEqual(recoveryCases.map((row) => row.label).sort())
  })
})

describe('which damage is reported when there are two', () => {
  it('a torn last batch followed by a damaged completion record: refused for the record (completion_damaged)', () => {
    const { storage, intent, completion, records } = crashedAfter(3)
    intent.truncate(records[2]!.offset + 100) // batch 3 torn: on its own, torn_last would drop it
    completion.grow(4 * completionRecordBytes)
    completion.contents.fill(0x33, 3 * completionRecordBytes, 4 * completionRecordBytes) // a damaged record 4
    expectCorrupt(reopen(storage), 'completion_damaged', { batchSequence: 4 })
    const repaired = reopen(storage, { recovery: 'truncate' }) as Shard
    expect(repaired.recovery.batchesReplayed).toBe(2)
    expect(repaired.recovery.repaired).toMatchObject({ firstBatchDropped: 3 })
  })

  it('a damaged earlier batch and a damaged completion record later: the earlier batch is reported (broken_before_last)', () => {
    const { storage, intent, completion, records } = crashedAfter(4)
    intent.contents[records[1]!.offset + 200]! ^= 0x10
    completion.contents[3 * completionRecordBytes + 20]! ^= 0x01
    expectCorrupt(reopen(storage), 'broken_before_last', { batchSequence: 2 })
  })
})

describe('recovery decision table as data', () => {
  const everyFacts: RecoveryFacts[] = []
  for (const completion of completionStates) {
    for (const intent of intentStates) for (const last of [true, false]) everyFacts.push({ completion, intent, last })
  }

  it('gives exactly one case for every set of facts that can occur', () => {
    const possible = everyFacts.filter(factsPossible)
    expect(possible.length).toBeGreaterThan(0)
    for (const facts of possible) expect(recoveryCase(facts).label).toEqual(expect.any(String))
  })

  it('refuses facts that cannot occur, as a bug (an assertion, not WAL_CORRUPT)', () => {
    const impossible = everyFacts.filter((facts) => !factsPossible(facts))
    expect(impossible.length).toBeGreaterThan(0)
    for (const facts of impossible) expect(() => recoveryCase(facts)).toThrow(/cannot occur/)
  })

  it('every case is reachable: some possible facts select it', () => {
    const reached = new Set(everyFacts.filter(factsPossible).map((facts) => recoveryCase(facts).label))
    expect([...reached].sort()).toEqual(recoveryCases.map((row) => row.label).sort())
  })

  it('labels are unique, and each says why', () => {
    const labels = recoveryCases.map((row) => row.label)
    expect(new Set(labels).size).toBe(labels.length)
    for (const row of recoveryCases) expect(row.why.length).toBeGreaterThan(10)
  })
})
