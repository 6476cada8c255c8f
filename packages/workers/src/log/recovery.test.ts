// Tests of each case of the decision table (recovery-cases.ts), named by its label: each builds real logs
// with a shard on held storage, crafts the state the case describes by editing bytes, and reopens. The
// table itself is checked to give exactly one case for every set of facts that can occur.
import { describe, expect, it } from 'vitest'
import { completionRecordBytes, decodeCompletion, encodeCompletion, type CompletionRecord } from '../format/completion.js'
import { layOutSectors, sectorBytes, sectorSpan } from '../format/sectors.js'
import { segmentName } from '../format/segment-files.js'
import { EngineError, type IoFailure } from '../errors.js'
import {
  checkpointCases,
  completionStates,
  factsPossible,
  intentStates,
  recoveryCase,
  recoveryCases,
  type RecoveryFacts,
} from './recovery-cases.js'
import { dropReadBuffers, readBuffersKeptBytes, readBuffersKeptNow } from './recovery.js'
import { segmentsReusedMax, Shard, type ShardOptions } from '../shard.js'
import { HeldStorage, lookup, putRecord, type HeldFile, type HeldWrite } from '../testing/held-file.js'

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
    records.push(decodeCompletion(completion.contents.subarray(index * completionRecordBytes), 1) as CompletionRecord)
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
    expect(decodeCompletion(storage.heldOn('completion')[0]!.buffer, 1)).toMatchObject({ sequence: 4 })
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

  caseTest(
    'damaged_last',
    'record valid, last batch damaged, every sector written in this life: refused, since a crash cannot do that',
    () => {
      const { storage, intent, records } = crashedAfter(4)
      intent.contents[records[3]!.offset + 200]! ^= 0x04
      expectCorrupt(reopen(storage), 'damaged_last', {
        batchSequence: 4,
        byteRange: [records[3]!.offset, records[3]!.offset + sectorSpan(records[3]!.length)],
      })
    },
  )

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

  caseTest('completion_after_empty_slot', "a completion record after a slot of a reused segment's earlier life: refused", () => {
    const { storage, completion, records } = crashedAfter(3)
    // slot 2 holds a whole, valid record of the segment's earlier life (another segment number), as if the
    // record of batch 2 had been lost over it
    encodeCompletion(completion.contents.subarray(completionRecordBytes, 2 * completionRecordBytes), { ...records[1]!, ownSegment: 9 })
    expectCorrupt(reopen(storage), 'completion_after_empty_slot', { batchSequence: 2 })
  })

  caseTest('tail_in_flight', 'no record, torn bytes after the last batch: dropped as the in-flight batch', () => {
    const { storage, intent, records } = crashedAfter(2)
    const end = records[1]!.offset + sectorSpan(records[1]!.length)
    intent.grow(end + 2 * sectorBytes)
    intent.contents.set(layOutSectors(new Uint8Array(300).fill(0x5a), 1), end) // a sector written in this life, no batch header
    const shard = reopen(storage) as Shard
    expect(shard.recovery).toMatchObject({ batchesReplayed: 2, tailBytesDropped: sectorBytes })
    expect(shard.recovery.tailReason).toMatch(/torn, never acknowledged batch after batch 2/)
  })

  caseTest('tail_stale', 'no record, only sectors of an earlier life after the last batch: the end, nothing dropped', () => {
    const { storage, intent, records } = crashedAfter(2)
    const end = records[1]!.offset + sectorSpan(records[1]!.length)
    intent.grow(end + 4 * sectorBytes)
    // what a reused segment holds ahead: sectors stamped with an earlier segment's number, even a whole batch
    intent.contents.set(layOutSectors(new Uint8Array(900).fill(0x5a), 0x5a), end)
    const stale = intent.contents.slice()
    const shard = reopen(storage) as Shard
    expect(shard.recovery).toMatchObject({ batchesReplayed: 2, tailBytesDropped: 0, tailReason: undefined })
    expect(intent.contents).toEqual(stale) // not cut: the stale sectors are written over as the log goes on
    write(shard, 'next', 'n')
    storage.completeCommit()
    const again = reopen(storage) as Shard
    expect(again.recovery).toMatchObject({ batchesReplayed: 3, tailBytesDropped: 0 })
    expect(lookup(again, 'next')).toBe('n')
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
    expect(shard.recovery.repaired!.intentBytesDropped).toBe(records[4]!.offset + sectorSpan(records[4]!.length) - records[2]!.offset)
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

/** A shard on held storage with small segments, `count` batches acknowledged (k<i> = 600 bytes of i). */
function shardWith(count: number, from = 0): { storage: HeldStorage; shard: Shard } {
  const storage = new HeldStorage()
  const shard = Shard.open(options(storage, { segmentBytes: 4096 }))
  writeBatches(storage, shard, from, count)
  return { storage, shard }
}

function writeBatches(storage: HeldStorage, shard: Shard, from: number, count: number): void {
  for (let index = from; index < from + count; index++) {
    write(shard, `k${index}`, `${index}`.padEnd(600, '.'))
    storage.completeCommit()
  }
}

/** Runs a checkpoint to its end (completing its writes), or stops after `writesMax` of them. */
function checkpointNow(storage: HeldStorage, shard: Shard, writesMax = Infinity): { error: EngineError | null; done: boolean } {
  const outcome: { error: EngineError | null; done: boolean } = { error: null, done: false }
  shard.checkpoint((error) => {
    outcome.error = error
    outcome.done = true
  })
  for (let writes = 0; writes < writesMax && storage.heldOn('checkpoint').length > 0; writes++) storage.complete('checkpoint')
  return outcome
}

function names(storage: HeldStorage): string[] {
  return storage.list(directory)
}

function expectKeys(shard: Shard, from: number, to: number): void {
  for (let index = from; index < to; index++) expect(lookup(shard, `k${index}`)).toBe(`${index}`.padEnd(600, '.'))
}

const checkpointLabelsTested = new Set<string>()

function checkpointCaseTest(label: string, name: string, body: () => void): void {
  expect(checkpointCases.map((row) => row.label)).toContain(label)
  checkpointLabelsTested.add(label)
  it(`${label}: ${name}`, body)
}

describe('recovery with checkpoints', () => {
  checkpointCaseTest('no_checkpoint', 'no checkpoint file: the logs are replayed from batch 1', () => {
    const { storage } = shardWith(5)
    const shard = reopen(storage, { segmentBytes: 4096 }) as Shard
    expect(shard.recovery).toMatchObject({ checkpointSequence: 0, checkpointRecords: 0, batchesReplayed: 5 })
    expectKeys(shard, 0, 5)
  })

  checkpointCaseTest(
    'checkpoint_intact',
    'loads the checkpoint, replays only the batches after it, and retires the segments before it',
    () => {
      const { storage, shard } = shardWith(20)
      expect(names(storage).filter((name) => name.startsWith('intent')).length).toBeGreaterThan(3)
      expect(checkpointNow(storage, shard)).toEqual({ error: null, done: true })
      expect(names(storage)).toContain('checkpoint-0000000000000020.ckpt')
      // the intent segments before the one batch 20 ended in are gone, but for those kept for reuse
      expect(names(storage).filter((name) => name.startsWith('intent')).length).toBeLessThanOrEqual(2 + segmentsReusedMax)
      writeBatches(storage, shard, 20, 3)
      const again = reopen(storage, { segmentBytes: 4096 }) as Shard
      expect(again.recovery).toMatchObject({ checkpointSequence: 20, checkpointRecords: 20, batchesReplayed: 3, repaired: undefined })
      expectKeys(again, 0, 23)
    },
  )

  caseTest('covered_by_checkpoint', 'completion records of batches the checkpoint holds are skipped, their intent bytes unread', () => {
    const { storage, shard } = shardWith(3)
    expect(checkpointNow(storage, shard).error).toBeNull()
    writeBatches(storage, shard, 3, 2)
    // Batches 1..3 are still in the one intent segment: damage them; the checkpoint holds them, so it is not read.
    const intent = storage.files.get(`${directory}/${segmentName('intent', 1)}`)!
    intent.contents.fill(0x55, 0, 100)
    const again = reopen(storage, { segmentBytes: 4096 }) as Shard
    expect(again.recovery).toMatchObject({ checkpointSequence: 3, batchesReplayed: 2 })
    expectKeys(again, 0, 5)
  })

  checkpointCaseTest(
    'checkpoint_damaged',
    'a damaged current checkpoint with no older one: refused; truncate loads what holds and says what not',
    () => {
      const { storage, shard } = shardWith(12)
      expect(checkpointNow(storage, shard).error).toBeNull()
      writeBatches(storage, shard, 12, 2)
      const file = storage.files.get(`${directory}/checkpoint-0000000000000012.ckpt`)!
      file.contents[200]! ^= 0x01
      expectCorrupt(reopen(storage, { segmentBytes: 4096 }), 'checkpoint_damaged', {
        file: `${directory}/checkpoint-0000000000000012.ckpt`,
        batchSequence: 12,
      })
      const repaired = reopen(storage, { segmentBytes: 4096, recovery: 'truncate' }) as Shard
      expect(repaired.recovery.repaired).toMatchObject({ checkpointBlocksDropped: 1, firstBatchDropped: 0, batchesDropped: 0 })
      expect(repaired.recovery.repaired!.reason).toMatch(/block 1 fails its checksum \(checkpoint_damaged\)/)
      // never silently an empty shard: what the log holds after the checkpoint is there, and the loss is reported
      expectKeys(repaired, 12, 14)
      expect(lookup(repaired, 'k0')).toBeUndefined()
    },
  )

  it('after a truncate open repaired a damaged checkpoint, the next checkpoint replaces it, even with nothing new', () => {
    const { storage, shard } = shardWith(12)
    expect(checkpointNow(storage, shard).error).toBeNull()
    storage.files.get(`${directory}/checkpoint-0000000000000012.ckpt`)!.contents[200]! ^= 0x01
    const repaired = reopen(storage, { segmentBytes: 4096, recovery: 'truncate' }) as Shard
    expect(repaired.recovery.repaired).toMatchObject({ checkpointBlocksDropped: 1 })
    expect(checkpointNow(storage, repaired)).toEqual({ error: null, done: true })
    // What the repair kept is now a checkpoint that holds: a strict open takes it.
    const again = reopen(storage, { segmentBytes: 4096 }) as Shard
    expect(again.recovery).toMatchObject({ checkpointSequence: 12, repaired: undefined })
  })

  checkpointCaseTest('checkpoint_log_missing', 'the segment a checkpoint says the log goes on in is gone: refused', () => {
    const { storage, shard } = shardWith(12)
    expect(checkpointNow(storage, shard).error).toBeNull()
    writeBatches(storage, shard, 12, 1)
    const intentNames = names(storage).filter((name) => name.startsWith('intent'))
    for (const name of intentNames) storage.remove(`${directory}/${name}`)
    expectCorrupt(reopen(storage, { segmentBytes: 4096 }), 'checkpoint_log_missing', { batchSequence: 12 })
  })

  /**
   * A checkpoint of batches 1..10 during whose walk batch 11 became durable (and acknowledged): the header
   * says so. Returns where batch 11's two writes landed.
   */
  function checkpointWithBatchDuringWalk(): { storage: HeldStorage; intent: HeldWrite; completion: HeldWrite } {
    const { storage, shard } = shardWith(10)
    let done = false
    shard.checkpoint((error) => {
      expect(error).toBeNull()
      done = true
    })
    expect(storage.heldOn('checkpoint')).toHaveLength(1) // the walk's one block, being written
    write(shard, 'k10', '10'.padEnd(600, '.'))
    const [intent, completion] = [storage.heldOn('intent')[0]!, storage.heldOn('completion')[0]!]
    storage.completeCommit()
    while (storage.heldOn('checkpoint').length > 0) storage.complete('checkpoint')
    expect(done).toBe(true)
    expect(names(storage)).toContain('checkpoint-0000000000000010.ckpt')
    return { storage, intent, completion }
  }

  caseTest('broken_before_last', 'the last batch torn, but acknowledged before the checkpoint was current: refused, not dropped', () => {
    const { storage, intent } = checkpointWithBatchDuringWalk()
    intent.file.contents.fill(0, intent.fileOffset + sectorBytes, intent.fileOffset + 2 * sectorBytes) // looks like a tear
    expectCorrupt(reopen(storage, { segmentBytes: 4096 }), 'broken_before_last', { batchSequence: 11 })
  })

  checkpointCaseTest('checkpoint_log_missing', 'the log ends before a batch the checkpoint says was acknowledged: refused', () => {
    const { storage, completion } = checkpointWithBatchDuringWalk()
    completion.file.contents.fill(0, completion.fileOffset, completion.fileOffset + completionRecordBytes) // its record lost
    expectCorrupt(reopen(storage, { segmentBytes: 4096 }), 'checkpoint_log_missing', { batchSequence: 11 })
    const repaired = reopen(storage, { segmentBytes: 4096, recovery: 'truncate' }) as Shard
    expect(repaired.recovery.repaired).toMatchObject({ firstBatchDropped: 11 })
    expectKeys(repaired, 0, 10)
  })

  checkpointCaseTest('checkpoint_superseded', 'a crash after a checkpoint was made current, before the older one was removed', () => {
    const { storage, shard } = shardWith(8)
    expect(checkpointNow(storage, shard).error).toBeNull()
    const older = storage.files.get(`${directory}/checkpoint-0000000000000008.ckpt`)!
    writeBatches(storage, shard, 8, 8)
    expect(checkpointNow(storage, shard).error).toBeNull()
    expect(names(storage)).not.toContain('checkpoint-0000000000000008.ckpt')
    storage.files.set(`${directory}/checkpoint-0000000000000008.ckpt`, older) // as a crash before its removal leaves it
    const again = reopen(storage, { segmentBytes: 4096 }) as Shard
    expect(again.recovery).toMatchObject({ checkpointSequence: 16, batchesReplayed: 0 })
    expect(names(storage)).not.toContain('checkpoint-0000000000000008.ckpt')
    expectKeys(again, 0, 16)
  })

  checkpointCaseTest(
    'checkpoint_unfinished',
    'a crash while a checkpoint is written: its file is discarded, the log holds everything',
    () => {
      const { storage, shard } = shardWith(12)
      const outcome = checkpointNow(storage, shard, 0) // its first block is written, never completed
      expect(outcome.done).toBe(false)
      expect(names(storage)).toContain('checkpoint-0000000000000012.tmp')
      const again = reopen(storage, { segmentBytes: 4096 }) as Shard
      expect(again.recovery).toMatchObject({ checkpointSequence: 0, batchesReplayed: 12 })
      expect(names(storage).some((name) => name.startsWith('checkpoint-'))).toBe(false)
      expectKeys(again, 0, 12)
    },
  )

  it('a crash after the switch, before the segments were retired: they are retired at the next open', () => {
    const { storage, shard } = shardWith(20)
    const segments = new Map([...storage.files].filter(([name]) => /(intent|completion)-/.test(name)))
    expect(checkpointNow(storage, shard).error).toBeNull()
    for (const [name, file] of segments) if (!storage.files.has(name)) storage.files.set(name, file)
    const retired = [...segments.keys()].filter((name) => !names(storage).includes(name.slice(directory.length + 1)))
    expect(retired).toEqual([])
    const again = reopen(storage, { segmentBytes: 4096 }) as Shard
    expect(again.recovery).toMatchObject({ checkpointSequence: 20, batchesReplayed: 0 })
    expect(names(storage).filter((name) => name.startsWith('intent')).length).toBeLessThanOrEqual(2)
    expectKeys(again, 0, 20)
  })

  it('a checkpoint whose write fails is given up: the shard goes on, the log and the previous checkpoint hold everything', () => {
    const { storage, shard } = shardWith(6)
    expect(checkpointNow(storage, shard).error).toBeNull()
    writeBatches(storage, shard, 6, 6)
    let failure: EngineError | null = null
    shard.checkpoint((error) => {
      failure = error
    })
    storage.fail('checkpoint', { operation: 'write', errno: 28, code: 'ENOSPC', path: 'checkpoint' })
    expect(failure).toMatchObject({ code: 'IO_ERROR' })
    expect(names(storage).filter((name) => name.startsWith('checkpoint-'))).toEqual(['checkpoint-0000000000000006.ckpt'])
    writeBatches(storage, shard, 12, 1) // the log still takes writes
    const again = reopen(storage, { segmentBytes: 4096 }) as Shard
    expect(again.recovery).toMatchObject({ checkpointSequence: 6, batchesReplayed: 7 })
    expectKeys(again, 0, 13)
  })

  it('every checkpoint case has a test above, named by its label', () => {
    expect([...checkpointLabelsTested].sort()).toEqual(checkpointCases.map((row) => row.label).sort())
  })
})

describe('reused segments', () => {
  /**
   * A shard whose checkpoint kept a retired intent segment for reuse, written on until its log's next
   * segment is that file, renamed: `stale` is what the file held before (an earlier life's batches).
   */
  function reusedSegment(): { storage: HeldStorage; shard: Shard; file: HeldFile; stale: Uint8Array; name: string } {
    const { storage, shard } = shardWith(20)
    expect(checkpointNow(storage, shard)).toEqual({ error: null, done: true })
    const kept = names(storage)
      .filter((name) => name.startsWith('intent'))
      .map((name) => storage.files.get(`${directory}/${name}`)!)
      .filter((file) => file.contents.length === 4096)[0]!
    const stale = kept.contents.slice()
    for (let index = 20; index < 40 && kept.contents.every((byte, at) => byte === stale[at]); index++)
      writeBatches(storage, shard, index, 1)
    expect(kept.contents, 'the log went on in the kept segment').not.toEqual(stale)
    const name = [...storage.files].find(([, file]) => file === kept)![0]
    return { storage, shard, file: kept, stale, name }
  }

  it('a checkpoint keeps a retired segment; the log goes on in it, renamed, not zero-filled; a crash in it loses nothing', () => {
    const { storage, file, stale, name } = reusedSegment()
    expect(file.contents.length).toBe(4096) // never cut nor zero-filled
    expect(name > `${directory}/${segmentName('intent', 5)}`).toBe(true) // renamed forward
    // past the batch written in this life, the earlier life's bytes are still there (stamped with its old number)
    expect(file.contents.subarray(2048)).toEqual(stale.subarray(2048))
    expect(stale.subarray(2048).some((byte) => byte !== 0)).toBe(true)
    const again = reopen(storage, { segmentBytes: 4096 }) as Shard
    const batchesAfter = again.recovery.batchesReplayed
    expect(again.recovery).toMatchObject({ checkpointSequence: 20, tailBytesDropped: 0, tailReason: undefined, repaired: undefined })
    expectKeys(again, 0, 20 + batchesAfter)
    expect(file.contents.subarray(2048)).toEqual(stale.subarray(2048)) // tail_stale: nothing cut
  })

  it('the completion log reuses its retired segments too, and recovery stops at their stale records', () => {
    const { storage, shard } = shardWith(20)
    expect(checkpointNow(storage, shard)).toEqual({ error: null, done: true })
    writeBatches(storage, shard, 20, 40)
    expect((shard as unknown as { log: { segmentsReused: number } }).log.segmentsReused).toBeGreaterThanOrEqual(2)
    const again = reopen(storage, { segmentBytes: 4096 }) as Shard
    expect(again.recovery).toMatchObject({ checkpointSequence: 20, batchesReplayed: 40, tailBytesDropped: 0, repaired: undefined })
    expectKeys(again, 0, 60)
  })

  caseTest('torn_last', 'record valid, last batch in a reused segment with a sector of its earlier life (a tear): dropped', () => {
    const { storage, file, stale } = reusedSegment()
    file.contents.set(stale.subarray(0, sectorBytes), 0) // the first sector, with an old batch header in it, never written
    const again = reopen(storage, { segmentBytes: 4096 }) as Shard
    expect(again.recovery.tailReason).toMatch(/intent bytes are torn/)
    expect(again.recovery.repaired).toBeUndefined()
    expectKeys(again, 0, 20 + again.recovery.batchesReplayed)
    expect(lookup(again, `k${20 + again.recovery.batchesReplayed}`)).toBeUndefined()
  })

  caseTest('damaged_last', 'record valid, last batch in a reused segment damaged, every sector of this life: refused', () => {
    const { storage, file, name } = reusedSegment()
    file.contents[sectorBytes + 100]! ^= 0x10
    expectCorrupt(reopen(storage, { segmentBytes: 4096 }), 'damaged_last', { file: name, byteRange: [0, 2 * sectorBytes] })
  })

  it("a damaged checkpoint header with 'truncate': the scan from the first segment passes the kept segment's gap, and the log after the checkpoint is kept", () => {
    const { storage, shard } = shardWith(40)
    expect(checkpointNow(storage, shard)).toEqual({ error: null, done: true })
    writeBatches(storage, shard, 40, 3)
    const file = storage.files.get(`${directory}/checkpoint-0000000000000040.ckpt`)!
    file.contents[8]! ^= 0x01 // in the header: where the logs go on after it is unknown now
    expectCorrupt(reopen(storage, { segmentBytes: 4096 }), 'checkpoint_damaged', { batchSequence: 40 })
    const repaired = reopen(storage, { segmentBytes: 4096, recovery: 'truncate' }) as Shard
    expect(repaired.recovery).toMatchObject({ batchesReplayed: 3, repaired: { firstBatchDropped: 0, batchesDropped: 0 } })
    expect(repaired.recovery.repaired!.reason).toMatch(/checkpoint-0000000000000040\.ckpt/)
    expectKeys(repaired, 40, 43)
  })

  it('a checkpoint that retires segments while a kept one is being renamed for reuse leaves that one alone', () => {
    // renames of log segments wait for the test; the checkpoint's own rename goes at once
    class SlowRenames extends HeldStorage {
      readonly renames: (() => void)[] = []
      override renameDurable(from: string, to: string, callback: (failure: IoFailure | null) => void): void {
        if (!from.endsWith('.wal')) return super.renameDurable(from, to, callback)
        this.renames.push(() => super.renameDurable(from, to, callback))
      }
    }
    const storage = new SlowRenames()
    const shard = Shard.open(options(storage, { segmentBytes: 4096 }))
    let index = 0
    /** One batch; a rename it waits for (its segment is full) is let go first. */
    const writeOne = (): void => {
      write(shard, `k${index}`, `${index}`.padEnd(600, '.'))
      index++
      while (storage.heldOn('intent').length === 0 && storage.renames.length > 0) storage.renames.shift()!()
      storage.completeCommit()
    }
    while (index < 20) writeOne()
    expect(checkpointNow(storage, shard)).toEqual({ error: null, done: true })
    while (index < 40 && storage.renames.length === 0) writeOne()
    expect(storage.renames).toHaveLength(1) // the kept segment is being renamed to the next one's number
    expect(checkpointNow(storage, shard)).toEqual({ error: null, done: true }) // retires segments meanwhile
    for (let round = 0; round < 4; round++) {
      for (let batch = 0; batch < 8; batch++) writeOne()
      expect(checkpointNow(storage, shard)).toEqual({ error: null, done: true })
    }
    for (const rename of storage.renames.splice(0)) rename()
    expect(shard.failed).toBeUndefined()
    expect(shard.segmentsReused).toBeGreaterThan(1)
    const again = reopen(storage, { segmentBytes: 4096 }) as Shard
    expect(again.recovery.repaired).toBeUndefined()
    expectKeys(again, 0, index)
  })

  it('a crash after a segment was renamed for reuse, before anything was written in it: nothing lost, nothing refused', () => {
    const { storage, shard } = shardWith(20)
    expect(checkpointNow(storage, shard)).toEqual({ error: null, done: true })
    const before = new Set(names(storage))
    let index = 20
    while (index < 40 && names(storage).every((entry) => before.has(entry) || !entry.startsWith('intent')))
      writeBatches(storage, shard, index++, 1)
    expect(index).toBeLessThan(40)
    const again = reopen(storage, { segmentBytes: 4096 }) as Shard
    expect(again.recovery).toMatchObject({ batchesReplayed: index - 20, tailBytesDropped: 0, tailReason: undefined, repaired: undefined })
    expectKeys(again, 0, index)
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

describe("recovery's read buffers", () => {
  /** The ArrayBuffers recovery read `storage`'s files into, in the order it read them. */
  function readsInto(storage: HeldStorage): ArrayBufferLike[] {
    const buffers: ArrayBufferLike[] = []
    const read = storage.read.bind(storage)
    storage.read = (filePath, into) => {
      const contents = read(filePath, into)
      if (into !== undefined) buffers.push(contents.buffer)
      return contents
    }
    return buffers
  }

  /** The ArrayBuffers this thread keeps for its next recovery (by identity: includes, not toEqual). */
  const kept = (): ArrayBufferLike[] => readBuffersKeptNow().map((buffer) => buffer.buffer)

  /** Cuts a crashed shard's files to what its batches took (as if a crash came before any zero-fill). */
  function cutToWritten(crashed: ReturnType<typeof crashedAfter>): void {
    const last = crashed.records.at(-1)!
    crashed.intent.truncate(last.offset + sectorSpan(last.length))
    crashed.completion.truncate(crashed.records.length * completionRecordBytes)
  }

  it("a thread's next recovery reads into the buffers the last one kept, and sees only what it read", () => {
    // The first log is longer (5 batches of 600 bytes) than the second (2): a buffer reused without cutting
    // it to the file's length would show the second recovery the first log's batches 2..4, whole. With
    // nothing kept before, each of the second's files fits only the first's buffer for the same log.
    const first = crashedAfter(5)
    cutToWritten(first)
    const second = crashedAfter(2)
    cutToWritten(second)
    expect(second.intent.contents.length).toBeGreaterThan(first.completion.contents.length)
    dropReadBuffers()
    const firstBuffers = readsInto(first.storage)
    const firstShard = reopen(first.storage) as Shard
    expect(lookup(firstShard, 'k4')).toBe('4'.padEnd(600, '.'))
    expect(firstBuffers).toHaveLength(2)
    expect(kept()).toHaveLength(2)

    const secondBuffers = readsInto(second.storage)
    const secondShard = reopen(second.storage) as Shard
    expect(secondShard).toBeInstanceOf(Shard)
    for (const [index, buffer] of secondBuffers.entries()) expect(buffer === firstBuffers[index]).toBe(true)
    expect(lookup(secondShard, 'k1')).toBe('1'.padEnd(600, '.'))
    for (const key of ['k2', 'k3', 'k4']) expect(lookup(secondShard, key)).toBeUndefined()
    expect(secondShard.recovery.batchesReplayed).toBe(2)
    // The first shard's table holds its own copies: nothing of it was in the buffers.
    expect(lookup(firstShard, 'k4')).toBe('4'.padEnd(600, '.'))
  })

  it('a recovery that refuses the log gives its buffers back', () => {
    const { storage, completion } = crashedAfter(3)
    completion.contents[completionRecordBytes + 10]! ^= 0xff // the second batch's record: damaged
    dropReadBuffers()
    const buffers = readsInto(storage)
    expect(reopen(storage)).toBeInstanceOf(EngineError)
    expect(buffers.length).toBeGreaterThan(0)
    expect(buffers.every((buffer) => kept().includes(buffer))).toBe(true)
  })

  it(`keeps at most ${readBuffersKeptBytes} bytes: a larger segment's buffer is left to the collector`, () => {
    const { storage, intent } = crashedAfter(1)
    intent.grow(readBuffersKeptBytes + 4096) // zero-filled ahead, as a segment is
    dropReadBuffers()
    const buffers = readsInto(storage)
    const shard = reopen(storage) as Shard
    expect(lookup(shard, 'k0')).toBe('0'.padEnd(600, '.'))
    const intentBuffer = buffers.find((buffer) => buffer.byteLength > readBuffersKeptBytes)
    expect(intentBuffer).toBeDefined()
    expect(kept().includes(intentBuffer!)).toBe(false)
    expect(kept().length).toBeGreaterThan(0) // the completion segment's
    expect(readBuffersKeptNow().reduce((sum, buffer) => sum + buffer.length, 0)).toBeLessThanOrEqual(readBuffersKeptBytes)
  })
})
