import { describe, expect, it } from 'vitest'
import { EngineError } from './errors.js'
import { batchHeaderBytes, decodeBatchHeader, encodeRecord, recordBytes, recordKindPut } from './record.js'
import { Shard } from './shard.js'
import { absentLength } from './table.js'
import { HeldStorage, type HeldFile } from './testing/held-file.js'

const text = new TextEncoder()

function put(key: string, value: string): [Uint8Array, number] {
  const records = new Uint8Array(recordBytes(key.length, value.length))
  encodeRecord(records, new DataView(records.buffer), 0, recordKindPut, text.encode(key), text.encode(value))
  return [records, 1]
}

function packKey(key: string): Uint8Array {
  const packed = new Uint8Array(4 + key.length)
  new DataView(packed.buffer).setUint32(0, key.length, true)
  packed.set(text.encode(key), 4)
  return packed
}

function lookup(shard: Shard, key: string): string | undefined {
  const answer = shard.read(packKey(key), 1)
  const length = new DataView(answer.buffer, answer.byteOffset).getUint32(0, true)
  return length === absentLength ? undefined : Buffer.from(answer.subarray(4, 4 + length)).toString()
}

function openShard(batchBytesMax = 1 << 20): { shard: Shard; file: HeldFile } {
  const storage = new HeldStorage()
  const shard = Shard.open({ directory: '/held/shard-000', shard: 0, backend: 'auto', batchBytesMax, recovery: 'strict', storage })
  return { shard, file: storage.files.get('/held/shard-000/wal.log')! }
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

describe('log group commit', () => {
  it('answers a write only after its batch completed, and groups writes that arrive meanwhile', () => {
    const { shard, file } = openShard()
    const first = track(shard, 'a', '1')
    expect(file.held).toHaveLength(1)
    const second = track(shard, 'b', '2')
    const third = track(shard, 'c', '3')
    expect(file.held).toHaveLength(1) // one commit in flight at a time
    expect([first.outcome, second.outcome, third.outcome]).toEqual(['waiting', 'waiting', 'waiting'])

    file.complete()
    expect([first.outcome, second.outcome, third.outcome]).toEqual(['durable', 'waiting', 'waiting'])
    expect(file.held).toHaveLength(1)
    const next = decodeBatchHeader(file.held[0]!.buffer.subarray(0, batchHeaderBytes))!
    expect(next).toMatchObject({ sequence: 2, recordCount: 2 })
    file.complete()
    expect([second.outcome, third.outcome]).toEqual(['durable', 'durable'])
  })

  it('never lets a read see a write before it is durable', () => {
    const { shard, file } = openShard()
    track(shard, 'k', 'old')
    file.complete()
    const pending = track(shard, 'k', 'new')
    expect(lookup(shard, 'k')).toBe('old')
    file.complete()
    expect(pending.outcome).toBe('durable')
    expect(lookup(shard, 'k')).toBe('new')
  })

  it('bounds a batch by batchBytesMax but always takes at least one request', () => {
    const { shard, file } = openShard(recordBytes(1, 1) * 2)
    track(shard, 'a', '1')
    for (const key of ['b', 'c', 'd', 'e', 'f']) track(shard, key, '1')
    file.complete()
    expect(decodeBatchHeader(file.held[0]!.buffer)!.recordCount).toBe(2)
    file.complete()
    expect(decodeBatchHeader(file.held[0]!.buffer)!.recordCount).toBe(2)
    file.complete()
    expect(decodeBatchHeader(file.held[0]!.buffer)!.recordCount).toBe(1)
  })

  it('fails the batch and everything queued on an I/O error, then refuses writes; reads go on', () => {
    const { shard, file } = openShard()
    track(shard, 'kept', 'yes')
    file.complete()
    const inFlight = track(shard, 'lost', '1')
    const queued = track(shard, 'queued', '2')
    file.fail({ operation: 'fsync', errno: 5, code: 'EIO', path: file.path })
    for (const state of [inFlight, queued]) {
      expect(state.outcome).toBeInstanceOf(EngineError)
      expect((state.outcome as EngineError).code).toBe('IO_ERROR')
      expect((state.outcome as EngineError).cause).toMatchObject({ operation: 'fsync', code: 'EIO', errno: 5 })
    }
    expect(file.held).toHaveLength(0) // nothing was retried
    const after = track(shard, 'after', '3')
    expect((after.outcome as EngineError).code).toBe('IO_ERROR')
    expect(file.held).toHaveLength(0)
    expect(lookup(shard, 'kept')).toBe('yes')
    expect(lookup(shard, 'lost')).toBeUndefined()
  })

  it('close waits for the commit in flight', () => {
    const { shard, file } = openShard()
    const write = track(shard, 'a', '1')
    let closed = false
    shard.close(() => {
      closed = true
    })
    expect(closed).toBe(false)
    file.complete()
    expect(write.outcome).toBe('durable')
    expect(closed).toBe(true)
    expect(file.closed).toBe(true)
  })

  it('replays what it wrote when opened again on the same file', () => {
    const storage = new HeldStorage()
    const options = { directory: '/held/shard-000', shard: 0, backend: 'auto' as const, batchBytesMax: 1 << 20, recovery: 'strict' as const, storage }
    const shard = Shard.open(options)
    const file = storage.files.get('/held/shard-000/wal.log')!
    track(shard, 'a', '1')
    file.complete()
    track(shard, 'b', '2')
    file.complete()
    track(shard, 'torn', '3') // never completed: not on "disk"
    const again = Shard.open(options)
    expect(again.recovery).toMatchObject({ batchesReplayed: 2, recordsReplayed: 2 })
    expect([lookup(again, 'a'), lookup(again, 'b'), lookup(again, 'torn')]).toEqual(['1', '2', undefined])
  })
})
