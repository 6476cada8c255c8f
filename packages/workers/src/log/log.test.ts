import { describe, expect, it } from 'vitest'
import { decodeCompletion } from '../format/completion.js'
import { EngineError } from '../errors.js'
import { batchHeaderBytes, decodeBatchHeader, recordBytes, recordKindDelete } from '../format/record.js'
import { sectorStampBytes } from '../format/sectors.js'
import { Shard, type ShardOptions } from '../shard.js'
import { MapTable } from '../table/table.js'
import { Log } from './log.js'
import type { SegmentLocation, SegmentWriter } from './segment-writer.js'
import { HeldStorage, lookup, putRecord } from '../testing/held-file.js'

function put(key: string, value: string): [Uint8Array, number] {
  return [putRecord(key, value), 1]
}

function options(storage: HeldStorage, extra: Partial<ShardOptions> = {}): ShardOptions {
  return { directory: '/held/shard-000', shard: 0, backend: 'auto', batchBytesMax: 1 << 20, recovery: 'strict', storage, ...extra }
}

type Outcome = 'waiting' | 'durable' | EngineError

function track(shard: Shard, key: string, value: string): { outcome: Outcome } {
  const state: { outcome: Outcome } = { outcome: 'waiting' }
  const [records, count] = put(key, value)
  shard.write(records, count, (error) => {
    state.outcome = error ?? 'durable'
  })
  return state
}

/**
 * A shard on HeldStorage that holds zero-fills, and writes committed one by one until one, once placed,
 * starts a zero-fill of the space ahead: that write (`inFlight`) and the fill are both held.
 */
function writeUntilAFillIsHeld(): { storage: HeldStorage; shard: Shard; inFlight: { outcome: Outcome } } {
  const storage = new HeldStorage()
  const shard = Shard.open(options(storage))
  storage.holdFills = true
  for (let index = 0; index < 1000; index++) {
    const inFlight = track(shard, `k${index}`, 'v'.repeat(4000))
    if (storage.heldFills.length > 0) return { storage, shard, inFlight }
    storage.completeCommit()
  }
  throw new Error('no write started a zero-fill')
}

describe('dual log group commit', () => {
  it('writes intent and completion in parallel and answers only when both are durable', () => {
    const storage = new HeldStorage()
    const shard = Shard.open(options(storage))
    const write = track(shard, 'a', '1')
    expect(storage.heldOn('intent')).toHaveLength(1)
    expect(storage.heldOn('completion')).toHaveLength(1)
    const record = decodeCompletion(storage.heldOn('completion')[0]!.buffer, 1)
    expect(record).toMatchObject({ sequence: 1, segment: 1, offset: 0, recordCount: 1, status: 1 })
    storage.complete('completion')
    expect(write.outcome).toBe('waiting')
    expect(lookup(shard, 'a')).toBeUndefined()
    storage.complete('intent')
    expect(write.outcome).toBe('durable')
    expect(lookup(shard, 'a')).toBe('1')
  })

  it('groups the writes that arrive while a commit is in flight into the next batch', () => {
    const storage = new HeldStorage()
    const shard = Shard.open(options(storage))
    const first = track(shard, 'a', '1')
    const second = track(shard, 'b', '2')
    const third = track(shard, 'c', '3')
    expect(storage.heldOn('intent')).toHaveLength(1) // one commit in flight at a time
    storage.completeCommit()
    expect([first.outcome, second.outcome, third.outcome]).toEqual(['durable', 'waiting', 'waiting'])
    const next = decodeBatchHeader(storage.heldOn('intent')[0]!.buffer.subarray(sectorStampBytes, sectorStampBytes + batchHeaderBytes))!
    expect(next).toMatchObject({ sequence: 2, recordCount: 2 })
    storage.completeCommit()
    expect([second.outcome, third.outcome]).toEqual(['durable', 'durable'])
  })

  it('never lets a read see a write before it is durable', () => {
    const storage = new HeldStorage()
    const shard = Shard.open(options(storage))
    track(shard, 'k', 'old')
    storage.completeCommit()
    const pending = track(shard, 'k', 'new')
    expect(lookup(shard, 'k')).toBe('old')
    storage.completeCommit()
    expect(pending.outcome).toBe('durable')
    expect(lookup(shard, 'k')).toBe('new')
  })

  it('bounds a batch by batchBytesMax but always takes at least one request', () => {
    const storage = new HeldStorage()
    const shard = Shard.open(options(storage, { batchBytesMax: recordBytes(1, 1) * 2 }))
    track(shard, 'a', '1')
    for (const key of ['b', 'c', 'd', 'e', 'f']) track(shard, key, '1')
    const counts: number[] = []
    while (storage.heldOn('intent').length > 0) {
      counts.push(decodeBatchHeader(storage.heldOn('intent')[0]!.buffer.subarray(sectorStampBytes))!.recordCount)
      storage.completeCommit()
    }
    expect(counts).toEqual([1, 2, 2, 1])
  })

  for (const log of ['intent', 'completion'] as const) {
    it(`fails the batch and everything queued when the ${log} log fails, then refuses writes; reads go on`, () => {
      const storage = new HeldStorage()
      const shard = Shard.open(options(storage))
      track(shard, 'kept', 'yes')
      storage.completeCommit()
      const inFlight = track(shard, 'lost', '1')
      const queued = track(shard, 'queued', '2')
      storage.fail(log, { operation: 'fsync', errno: 5, code: 'EIO', path: log })
      expect(inFlight.outcome).toBe('waiting') // the other log's write is still in flight: wait for it
      storage.complete(log === 'intent' ? 'completion' : 'intent')
      for (const state of [inFlight, queued]) {
        expect(state.outcome).toBeInstanceOf(EngineError)
        expect((state.outcome as EngineError).code).toBe('IO_ERROR')
        expect((state.outcome as EngineError).cause).toMatchObject({ operation: 'fsync', code: 'EIO', errno: 5 })
      }
      expect(storage.held).toHaveLength(0) // nothing was retried
      const after = track(shard, 'after', '3')
      expect((after.outcome as EngineError).code).toBe('IO_ERROR')
      expect(storage.held).toHaveLength(0)
      expect(lookup(shard, 'kept')).toBe('yes')
      expect(lookup(shard, 'lost')).toBeUndefined()
    })
  }

  it('never acknowledges a write in flight when a fill of its log fails meanwhile, though its own fdatasync succeeds (fsyncgate)', () => {
    const { storage, shard, inFlight } = writeUntilAFillIsHeld()
    // The fill's fdatasync fails: the kernel may have dropped the file's dirty pages, the write's among them.
    storage.failFill({ operation: 'fsync', errno: 5, code: 'EIO', path: 'fill' })
    while (storage.held.length > 0) storage.complete(storage.held[0]!.file.log)
    expect(inFlight.outcome).toBeInstanceOf(EngineError)
    expect((inFlight.outcome as EngineError).code).toBe('IO_ERROR')
    expect(lookup(shard, 'k0')).toBe('v'.repeat(4000))
    expect(storage.held).toHaveLength(0)
    const after = track(shard, 'after', '1')
    expect((after.outcome as EngineError).code).toBe('IO_ERROR')
    expect(storage.held).toHaveLength(0) // nothing more is written
  })

  for (const fill of ['fails', 'succeeds'] as const) {
    it(`holds the answer of a write that succeeds while a fill of its file is in flight until the fill ${fill === 'fails' ? 'fails: then it fails too' : 'succeeds'}`, () => {
      const { storage, inFlight } = writeUntilAFillIsHeld()
      // The write's own fdatasync succeeds first (on the ring), the fill's answer comes after (libuv): the
      // fill's fdatasync may have taken the writeback error that this write's did not see.
      while (storage.held.length > 0) storage.complete(storage.held[0]!.file.log)
      expect(inFlight.outcome).toBe('waiting')
      if (fill === 'fails') {
        storage.failFill({ operation: 'fsync', errno: 5, code: 'EIO', path: 'fill' })
        expect((inFlight.outcome as EngineError).code).toBe('IO_ERROR')
      } else {
        storage.completeFill()
        expect(inFlight.outcome).toBe('durable')
      }
    })
  }

  it('close waits for the commit in flight, then writes a close record', () => {
    const storage = new HeldStorage()
    const shard = Shard.open(options(storage))
    const write = track(shard, 'a', '1')
    let closed = false
    shard.close(() => {
      closed = true
    })
    storage.completeCommit()
    expect(write.outcome).toBe('durable')
    expect(closed).toBe(false)
    expect(decodeCompletion(storage.heldOn('completion')[0]!.buffer, 1)).toMatchObject({ sequence: 1, status: 2 })
    storage.complete('completion')
    expect(closed).toBe(true)
    expect([...storage.files.values()].every((file) => file.closed)).toBe(true)
  })

  it('replays what it wrote when opened again, and drops the batch that was in flight', () => {
    const storage = new HeldStorage()
    const shard = Shard.open(options(storage))
    track(shard, 'a', '1')
    storage.completeCommit()
    track(shard, 'b', '2')
    storage.completeCommit()
    track(shard, 'torn', '3')
    storage.complete('intent') // its intent reached the disk, its completion record did not: never acknowledged
    const again = Shard.open(options(storage))
    expect(again.recovery).toMatchObject({ batchesReplayed: 2, recordsReplayed: 2, cleanShutdown: false })
    expect(again.recovery.tailReason).toMatch(/batch 3 reached the intent log but its completion record never became durable/)
    expect([lookup(again, 'a'), lookup(again, 'b'), lookup(again, 'torn')]).toEqual(['1', '2', undefined])
  })

  it('rolls to new segments and recovers across them', () => {
    const storage = new HeldStorage()
    const shard = Shard.open(options(storage, { segmentBytes: 4096 }))
    const value = 'v'.repeat(1000)
    for (let index = 0; index < 12; index++) {
      const write = track(shard, `k${index}`, value)
      storage.completeCommit()
      expect(write.outcome).toBe('durable')
    }
    const names = storage.list('/held/shard-000')
    expect(names.filter((name) => name.startsWith('intent-')).length).toBeGreaterThanOrEqual(3)
    const again = Shard.open(options(storage, { segmentBytes: 4096 }))
    expect(again.recovery).toMatchObject({ batchesReplayed: 12, tailBytesDropped: 0 })
    for (let index = 0; index < 12; index++) expect(lookup(again, `k${index}`)).toBe(value)
  })
})

/** A MapTable that logs each call it gets, for the order of answers and applies. */
class RecordingTable extends MapTable {
  readonly calls: string[] = []
  override reserve(): void {
    this.calls.push('reserve')
  }
  override applyBatch(body: Uint8Array, recordCount: number): void {
    this.calls.push('apply')
    super.applyBatch(body, recordCount)
  }
  override getPacked(keys: Uint8Array, count: number): Uint8Array {
    this.calls.push('get')
    return super.getPacked(keys, count)
  }
}

describe('the table after a durable batch', () => {
  function openRecording(): { storage: HeldStorage; shard: Shard; table: RecordingTable } {
    const storage = new HeldStorage()
    const table = new RecordingTable()
    return { storage, shard: Shard.open(options(storage, { table })), table }
  }

  function writeNoting(shard: Shard, table: RecordingTable, key: string, value: string): void {
    const [records, count] = put(key, value)
    shard.write(records, count, (error) => table.calls.push(error === null ? `answered ${key}` : `failed ${key}`))
  }

  it("answers the batch's writers first, and a read right after the answer sees the write", () => {
    const { storage, shard, table } = openRecording()
    writeNoting(shard, table, 'a', '1')
    storage.completeCommit()
    expect(table.calls).toEqual(['reserve', 'answered a'])
    expect(lookup(shard, 'a')).toBe('1')
    expect(table.calls).toEqual(['reserve', 'answered a', 'apply', 'get'])
  })

  it('applies every durable batch before it reserves room for the next one', () => {
    const { storage, shard, table } = openRecording()
    writeNoting(shard, table, 'a', '1')
    storage.completeCommit()
    writeNoting(shard, table, 'b', '2')
    expect(table.calls).toEqual(['reserve', 'answered a', 'apply', 'reserve'])
    storage.completeCommit()
    expect(lookup(shard, 'a')).toBe('1')
    expect(lookup(shard, 'b')).toBe('2')
  })

  it('applies the batch on the next turn of the event loop when nothing asks for it sooner', async () => {
    const { storage, shard, table } = openRecording()
    writeNoting(shard, table, 'a', '1')
    storage.completeCommit()
    expect(table.size).toBe(0)
    await new Promise<void>((resolve) => setImmediate(resolve))
    expect(table.calls).toEqual(['reserve', 'answered a', 'apply'])
    expect(table.size).toBe(1)
  })
})

describe('a full table', () => {
  it('fails the batch that does not fit with SHARD_FULL before writing it, and the shard goes on', () => {
    const storage = new HeldStorage()
    const shard = Shard.open(options(storage, { tableBytesMax: 1024 * 1024 }))
    const value = 'v'.repeat(8000)
    let full: EngineError | undefined
    let written = 0
    for (let index = 0; index < 1000 && full === undefined; index++) {
      const state = track(shard, `k${index}`, value)
      if (state.outcome instanceof EngineError) {
        full = state.outcome
        expect(storage.held).toHaveLength(0) // the batch that does not fit was never written
        break
      }
      storage.completeCommit()
      expect(state.outcome).toBe('durable')
      written++
    }
    expect(full?.code).toBe('SHARD_FULL')
    expect(written).toBeGreaterThan(10)
    expect(lookup(shard, 'k0')).toBe(value)
    // deletes still go through on a full table, and their space takes new writes
    const [deletion] = put('k0', '')
    deletion[4] = recordKindDelete
    let deleted: EngineError | null | undefined
    shard.write(deletion, 1, (error) => (deleted = error))
    expect(deleted?.message).toBeUndefined()
    expect(storage.held.map((write) => write.file.log)).toEqual(['intent', 'completion'])
    storage.completeCommit()
    expect(deleted).toBeNull()
    expect(lookup(shard, 'k0')).toBeUndefined()
    const again = track(shard, 'again', value)
    storage.completeCommit()
    expect(again.outcome).toBe('durable')
    const reopened = Shard.open(options(storage, { tableBytesMax: 1024 * 1024 }))
    expect(reopened.recovery.batchesReplayed).toBe(written + 2)
    expect([lookup(reopened, 'k0'), lookup(reopened, `k${written - 1}`), lookup(reopened, 'again')]).toEqual([undefined, value, value])
  })
})

describe('assertions across the disk', () => {
  /** A stand-in intent writer that places each append where `place` says, and never completes it. */
  function placingWriter(place: () => SegmentLocation): SegmentWriter {
    const writer = {
      location: { segment: 1, offset: 0 },
      append: (_length: number, _build: unknown, placed: (location: SegmentLocation) => void) => placed(place()),
      halt: () => {},
      close: (callback: () => void) => callback(),
    }
    return writer as unknown as SegmentWriter
  }

  function logOver(intent: SegmentWriter): Log {
    const completion = placingWriter(() => ({ segment: 1, offset: 0 }))
    return new Log({ intent, completion, nextSequence: 1, batchBytesMax: 1 << 20, reserve: () => {}, onDurable: () => {} })
  }

  it('a batch placed where the previous one did not end fails loudly (an assertion), before any completion record', () => {
    const places: SegmentLocation[] = [{ segment: 1, offset: 64 }]
    expect(() => logOver(placingWriter(() => places.shift()!)).append(...put('a', '1'), () => {})).toThrow(
      /batch 1 placed at 1:64, the previous batch ended at 1:0/,
    )
  })

  it('a batch at the start of a later segment is where it should be', () => {
    const log = logOver(placingWriter(() => ({ segment: 2, offset: 0 })))
    expect(() => log.append(...put('a', '1'), () => {})).not.toThrow()
  })
})
