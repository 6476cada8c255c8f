// The behavioural suite: the same tests for every backend (abstract-level's shared suite pattern).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  EngineError,
  chunkBytes,
  open,
  shardOf,
  shardsDefault,
  type ArgumentError,
  type ArgumentErrorCode,
  type Engine,
} from '@ringkv/engine'
import { completionRecordBytes, keyBytesMax, segmentName, shardDirectory, valueBytesMax } from '@ringkv/workers'
import type { BackendCase } from './backends.js'
import { childOpen } from './child.js'
import { openThroughHandle } from './handle.js'
import { temporaryDirectory } from './temp.js'

const text = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : Buffer.from(value).toString())

/** A call that must fail with an argument error: its class, its code, and what its message names. */
type ArgumentCase = [() => Promise<unknown>, ErrorConstructor, ArgumentErrorCode, RegExp]

async function expectArgumentErrors(cases: readonly ArgumentCase[]): Promise<void> {
  for (const [call, type, code, message] of cases) {
    const error = await call().then(
      () => undefined,
      (caught: unknown) => caught,
    )
    expect(error).toBeInstanceOf(type)
    expect((error as ArgumentError).code, String(error)).toBe(code)
    expect((error as Error).message).toMatch(message)
  }
}

/**
 * `through`: 'opener', the engine that opened the database; 'handle', a handle made by attach() in this
 * thread on a database opened (and closed) in another thread (handle.ts).
 */
export function suite({ backend, skip }: BackendCase, through: 'opener' | 'handle' = 'opener'): void {
  const name = through === 'opener' ? `engine on ${backend}` : `engine on ${backend}, through a handle (opened in another thread)`
  describe.skipIf(skip !== undefined)(name, () => {
    let directory: string
    let remove: () => void
    let db: Engine | undefined

    beforeEach(() => {
      ;({ directory, remove } = temporaryDirectory(backend))
    })
    afterEach(async () => {
      await db?.close()
      db = undefined
      remove()
    })

    const openDb = async (options: Parameters<typeof open>[1] = {}): Promise<Engine> => {
      db =
        through === 'opener' ? await open(directory, { backend, ...options }) : await openThroughHandle(directory, { backend, ...options })
      return db
    }

    it('runs on the backend it was asked for', async () => {
      const engine = await openDb({ shards: 2 })
      for (const shard of engine.stats().shards) expect(shard.backend).toBe(backend)
    })

    it('getMany answers keys over several shards in the order asked, undefined where absent; has says which hold a value', async () => {
      const engine = await openDb({ shards: 4 })
      const keys = Array.from({ length: 100 }, (_, index) => `many-${index}`)
      await Promise.all(keys.filter((_, index) => index % 3 !== 0).map((key) => engine.put(key, `value of ${key}`)))
      const asked = [...keys].reverse().concat(['many-1', 'never-written'])
      const buffer = new TextEncoder().encode('many-2')
      const answers = await engine.getMany([...asked, buffer].map((key) => key))
      expect(answers).toHaveLength(asked.length + 1)
      asked.forEach((key, index) => {
        const expected = key.startsWith('many-') && Number(key.slice(5)) % 3 !== 0 ? `value of ${key}` : undefined
        expect(answers[index] === undefined ? undefined : text(answers[index])).toBe(expected)
      })
      expect(text(answers[asked.length])).toBe('value of many-2')
      expect(await engine.getMany([])).toEqual([])
      expect(await engine.has('many-1')).toBe(true)
      expect(await engine.has('many-3')).toBe(false)
      expect(await engine.has(buffer)).toBe(true)
      await engine.delete('many-1')
      expect(await engine.has('many-1')).toBe(false)
    })

    it('getMany reads the key bytes it was called with, when the caller reuses its buffer in the same tick', async () => {
      const engine = await openDb({ shards: 2 })
      await engine.put('reuse-a', 'A')
      await engine.put('reuse-b', 'B')
      const buffer = new TextEncoder().encode('reuse-a')
      const pending = engine.getMany([buffer])
      buffer.set(new TextEncoder().encode('reuse-b'))
      expect((await pending).map((value) => text(value))).toEqual(['A'])
    })

    it('round-trips put, get, delete and batch with keys over several shards', async () => {
      const engine = await openDb({ shards: 4 })
      const keys = Array.from({ length: 200 }, (_, index) => `key-${index}`)
      await Promise.all(keys.map((key) => engine.put(key, `value of ${key}`)))
      for (const key of keys) expect(text(await engine.get(key))).toBe(`value of ${key}`)
      const perShard = engine.stats().shards.map((shard) => shard.records)
      expect(perShard.every((records) => records > 0)).toBe(true)
      expect(perShard.reduce((sum, records) => sum + records, 0)).toBe(200)

      await engine.delete('key-7')
      expect(await engine.get('key-7')).toBeUndefined()
      await engine.batch([
        { type: 'put', key: 'key-7', value: 'back' },
        { type: 'delete', key: 'key-8' },
        { type: 'put', key: new Uint8Array([0, 255, 1]), value: new Uint8Array([9, 9]) },
      ])
      expect(text(await engine.get('key-7'))).toBe('back')
      expect(await engine.get('key-8')).toBeUndefined()
      expect([...(await engine.get(new Uint8Array([0, 255, 1])))!]).toEqual([9, 9])
      expect(await engine.get('never written')).toBeUndefined()
    })

    it('treats a string key and its UTF-8 bytes as the same key', async () => {
      const engine = await openDb({ shards: 3 })
      await engine.put('é-key', 'x')
      expect(text(await engine.get(new TextEncoder().encode('é-key')))).toBe('x')
    })

    it('keeps values of 0 bytes, 1 byte and the maximum size, across a reopen', async () => {
      const big = new Uint8Array(valueBytesMax)
      for (let index = 0; index < big.length; index += 4093) big[index] = index % 251
      const longKey = 'k'.repeat(keyBytesMax)
      let engine = await openDb({ shards: 2 })
      await engine.put('empty', new Uint8Array(0))
      await engine.put('one', new Uint8Array([42]))
      await engine.put('big', big)
      await engine.put(longKey, 'long key')
      const check = async (engine: Engine): Promise<void> => {
        expect((await engine.get('empty'))?.length).toBe(0)
        expect([...(await engine.get('one'))!]).toEqual([42])
        expect(Buffer.compare(Buffer.from((await engine.get('big'))!), Buffer.from(big))).toBe(0)
        expect(text(await engine.get(longKey))).toBe('long key')
      }
      await check(engine)
      await engine.close()
      engine = await openDb()
      await check(engine)
    })

    it('gives a new directory one shard per two cores (at least one) by default, and keeps it', async () => {
      const expected = Math.max(1, Math.floor(os.availableParallelism() / 2))
      expect(shardsDefault()).toBe(expected)
      let engine = await openDb()
      expect(engine.shards).toBe(expected)
      await engine.close()
      engine = await openDb()
      expect(engine.shards).toBe(expected)
    })

    it('restores everything after close and reopen, with the recorded shard count', async () => {
      let engine = await openDb({ shards: 3 })
      for (let round = 0; round < 5; round++) {
        await Promise.all(Array.from({ length: 100 }, (_, index) => engine.put(`k${index}`, `r${round}-${index}`)))
      }
      await Promise.all(Array.from({ length: 10 }, (_, index) => engine.delete(`k${index}`)))
      await engine.close()
      engine = await openDb()
      expect(engine.shards).toBe(3)
      expect(engine.recovery.reduce((sum, report) => sum + report.recordsReplayed, 0)).toBe(510)
      for (let index = 0; index < 100; index++) {
        expect(text(await engine.get(`k${index}`))).toBe(index < 10 ? undefined : `r4-${index}`)
      }
    })

    /** The end of the data in a zero-filled segment file. */
    const dataEnd = (file: string): number => {
      const bytes = fs.readFileSync(file)
      let end = bytes.length
      while (end > 0 && bytes[end - 1] === 0) end--
      return end
    }
    const segment = (kind: 'intent' | 'completion'): string => path.join(shardDirectory(directory, 0), segmentName(kind, 1))

    it('after a crash, drops a cut last batch and keeps everything before it', async () => {
      let engine = await openDb({ shards: 1 })
      for (let index = 0; index < 20; index++) await engine.put(`k${index}`, `v${index}`)
      await engine.close()
      // A crash leaves no close record: remove it, then cut the last intent batch short.
      const completion = segment('completion')
      // the close record ends in reserved zero bytes: round up to whole records
      const completionEnd = Math.ceil(dataEnd(completion) / completionRecordBytes) * completionRecordBytes
      fs.truncateSync(completion, completionEnd - completionRecordBytes)
      const intent = segment('intent')
      const cutAt = dataEnd(intent) - 3
      fs.truncateSync(intent, cutAt)
      engine = await openDb()
      const report = engine.recovery[0]!
      expect(report.batchesReplayed).toBe(19)
      expect(report.cleanShutdown).toBe(false)
      expect(report.tailReason).toMatch(/batch 20: its completion record is durable but its intent bytes are torn/)
      expect(report.bytesReplayed + report.tailBytesDropped).toBe(cutAt)
      for (let index = 0; index < 19; index++) expect(text(await engine.get(`k${index}`))).toBe(`v${index}`)
      expect(await engine.get('k19')).toBeUndefined()
      // and the log goes on from the cut
      await engine.put('after', 'cut')
      await engine.close()
      engine = await openDb()
      expect(text(await engine.get('after'))).toBe('cut')
      expect(engine.recovery[0]).toMatchObject({ batchesReplayed: 20, tailBytesDropped: 0, cleanShutdown: true })
    })

    it('after a clean close, refuses a cut last batch as damage to acknowledged data', async () => {
      let engine = await openDb({ shards: 1 })
      for (let index = 0; index < 5; index++) await engine.put(`k${index}`, `v${index}`)
      await engine.close()
      const intent = segment('intent')
      fs.truncateSync(intent, dataEnd(intent) - 3)
      const error = await open(directory, { backend }).then(
        () => undefined,
        (caught: unknown) => caught,
      )
      expect(error).toBeInstanceOf(EngineError)
      expect((error as EngineError).code).toBe('WAL_CORRUPT')
      expect((error as EngineError).details).toMatchObject({ shard: 0, batchSequence: 5 })
      engine = await openDb({ recovery: 'truncate' })
      expect(engine.recovery[0]!.repaired).toMatchObject({ firstBatchDropped: 5 })
      for (let index = 0; index < 4; index++) expect(text(await engine.get(`k${index}`))).toBe(`v${index}`)
      expect(await engine.get('k4')).toBeUndefined()
    })

    it('sends the calls of one tick to a shard as one message (one group commit), with one promise', async () => {
      const engine = await openDb({ shards: 1 })
      await engine.put('warm', 'up')
      const before = engine.stats().shards[0]!.batches
      const puts = Array.from({ length: 300 }, (_, index) => engine.put(`same-tick-${index}`, 'v'))
      expect(new Set(puts).size).toBe(1)
      await Promise.all(puts)
      expect(engine.stats().shards[0]!.batches - before).toBe(1)
    })

    it("reports each shard's mean batch latency, consistent with its latency histogram", async () => {
      const engine = await openDb({ shards: 1 })
      expect(engine.stats().shards[0]!.fsyncLatencyUsMean).toBe(0)
      for (let index = 0; index < 20; index++) await engine.put(`mean-${index}`, 'v')
      const shard = engine.stats().shards[0]!
      expect(shard.batches).toBe(20)
      expect(shard.fsyncLatencyUsMean).toBeGreaterThan(0)
      // Half the batches took at least the p50 bucket's floor, so the mean is at least half of it; none took
      // more than the top bucket's ceiling (p99 of 20 batches is the slowest one's bucket floor; buckets are
      // at most 1/8 of their floor wide).
      expect(shard.fsyncLatencyUsMean).toBeGreaterThanOrEqual(shard.fsyncLatencyUsP50 / 2)
      expect(shard.fsyncLatencyUsMean).toBeLessThanOrEqual(shard.fsyncLatencyUsP99 * 1.125)
    })

    it('cuts a tick of writes larger than chunkBytes into several messages, so batches overlap', async () => {
      const engine = await openDb({ shards: 1 })
      await engine.put('warm', 'up')
      const before = engine.stats().shards[0]!
      const value = new Uint8Array(1000)
      const count = Math.ceil((3 * chunkBytes) / value.length)
      const puts = Array.from({ length: count }, (_, index) => engine.put(`chunk-${index}`, value))
      // The first chunk went at once; the writes after it share a later chunk's promise.
      expect(puts[0]).not.toBe(puts[count - 1])
      await Promise.all(puts)
      const after = engine.stats().shards[0]!
      expect(after.records - before.records).toBe(count)
      // The first chunk is committed alone while the next ones arrive: at least two batches.
      expect(after.batches - before.batches).toBeGreaterThanOrEqual(2)
      for (let index = 0; index < count; index += 97) expect((await engine.get(`chunk-${index}`))!.length).toBe(1000)
    })

    it('reuses its chunk buffer from message to message: every value, around one larger than a chunk, reads back exactly', async () => {
      const engine = await openDb({ shards: 1 })
      const valueOf = (index: number): Uint8Array => new Uint8Array(index === 150 ? 2 * chunkBytes : 500 + (index % 700)).fill(index & 0xff)
      for (let tick = 0; tick < 3; tick++) {
        // Each tick's writes fill several chunks; the one at 150 needs a buffer of its own.
        await Promise.all(Array.from({ length: 300 }, (_, index) => engine.put(`reuse-${tick}-${index}`, valueOf(index + tick))))
      }
      for (let tick = 0; tick < 3; tick++) {
        for (let index = 0; index < 300; index++) {
          expect(Buffer.from((await engine.get(`reuse-${tick}-${index}`))!).equals(Buffer.from(valueOf(index + tick)))).toBe(true)
        }
      }
    })

    it('makes callers wait beyond bytesInFlightMax instead of queueing without bound', async () => {
      const bound = 16 * 1024
      const engine = await openDb({ shards: 1, bytesInFlightMax: bound })
      const value = new Uint8Array(1000)
      const puts = Array.from({ length: 500 }, (_, index) => engine.put(`bp-${index}`, value))
      expect(engine.stats().shards[0]!.bytesInFlight).toBeLessThanOrEqual(bound)
      await Promise.all(puts)
      expect(engine.stats().shards[0]!.records).toBe(500)
      expect(engine.stats().shards[0]!.bytesInFlight).toBe(0)
    })

    it('copies a caller-owned key and value at the call, even when the caller must wait', async () => {
      const engine = await openDb({ shards: 1, bytesInFlightMax: 2048 })
      const value = new Uint8Array(1500).fill(1)
      const first = engine.put('first', value)
      const second = engine.put('second', value) // over the bound: waits
      value.fill(2)
      await Promise.all([first, second])
      expect((await engine.get('first'))![0]).toBe(1)
      expect((await engine.get('second'))![0]).toBe(1)
    })

    it('copies a caller-owned Buffer key and value at the call when the caller must wait (Buffer.slice is a view)', async () => {
      const engine = await openDb({ shards: 1, bytesInFlightMax: 2048 })
      const key = Buffer.from('buffer-0')
      const value = Buffer.alloc(1500, 1)
      const first = engine.put(key, value)
      key.write('buffer-1')
      const second = engine.put(key, value) // over the bound: waits
      key.write('buffer-2')
      const third = engine.batch([{ type: 'put', key, value }]) // waits too
      key.write('buffer-9')
      value.fill(2)
      await Promise.all([first, second, third])
      for (const name of ['buffer-0', 'buffer-1', 'buffer-2']) expect((await engine.get(name))?.[0], name).toBe(1)
      expect(await engine.get('buffer-9')).toBeUndefined()
    })

    it('reads the key bytes a get() was called with, when the caller reuses its buffer in the same tick', async () => {
      const engine = await openDb({ shards: 4 })
      // Keys of one length, so one buffer can hold each in turn, as a stream's reused chunk would.
      const keys = Array.from({ length: 64 }, (_, index) => `reuse-${String(index).padStart(2, '0')}`)
      await Promise.all(keys.map((key) => engine.put(key, `value of ${key}`)))
      const first = keys[0]!
      const otherShard = keys.find((key) => shardOf(Buffer.from(key), engine.shards) !== shardOf(Buffer.from(first), engine.shards))!
      const sameShard = keys.find(
        (key) => key !== first && shardOf(Buffer.from(key), engine.shards) === shardOf(Buffer.from(first), engine.shards),
      )!
      for (const next of [otherShard, sameShard]) {
        const buffer = Buffer.from(first)
        const read = engine.get(buffer)
        buffer.write(next)
        expect(text(await read), `get(${first}), then its buffer rewritten to ${next}`).toBe(`value of ${first}`)
      }
      // Many reads of one tick through one buffer, each answered for the bytes it had at its call.
      const buffer = Buffer.alloc(first.length)
      const reads = keys.map((key) => {
        buffer.write(key)
        return engine.get(buffer)
      })
      expect((await Promise.all(reads)).map(text)).toEqual(keys.map((key) => `value of ${key}`))
    })

    it('rejects bad input with TypeError or RangeError naming the argument and a stable code, queueing nothing', async () => {
      const engine = await openDb({ shards: 2 })
      const bad: ArgumentCase[] = [
        [() => engine.put(42 as never, 'v'), TypeError, 'INVALID_KEY', /key must be a string or a Uint8Array/],
        [() => engine.put('k', { a: 1 } as never), TypeError, 'INVALID_VALUE', /value must be a string or a Uint8Array/],
        [() => engine.put('k'.repeat(keyBytesMax + 1), 'v'), RangeError, 'KEY_TOO_LARGE', /key is 65537 bytes/],
        [() => engine.put('k', new Uint8Array(valueBytesMax + 1)), RangeError, 'VALUE_TOO_LARGE', /value is/],
        [() => engine.get(null as never), TypeError, 'INVALID_KEY', /key must be/],
        [() => engine.get(new Uint8Array(keyBytesMax + 1)), RangeError, 'KEY_TOO_LARGE', /key is 65537 bytes/],
        [() => engine.delete(undefined as never), TypeError, 'INVALID_KEY', /key must be/],
        [() => engine.getMany('a' as never), TypeError, 'INVALID_ARGUMENT', /keys must be an array/],
        [() => engine.getMany(['a', 7 as never]), TypeError, 'INVALID_KEY', /keys\[1\] must be a string or a Uint8Array/],
        [() => engine.delete('k'.repeat(keyBytesMax + 1)), RangeError, 'KEY_TOO_LARGE', /key is 65537 bytes/],
        [() => engine.batch('nope' as never), TypeError, 'INVALID_ARGUMENT', /operations must be an array/],
        [() => engine.batch([null as never]), TypeError, 'INVALID_ARGUMENT', /operations\[0\] must be an object/],
        [
          () => engine.batch([{ type: 'put', key: 'a', value: 'b' }, { type: 'merge', key: 'a' } as never]),
          TypeError,
          'INVALID_ARGUMENT',
          /operations\[1\]\.type/,
        ],
        [() => engine.batch([{ type: 'put', key: 'a', value: 7 as never }]), TypeError, 'INVALID_VALUE', /operations\[0\]\.value/],
        [() => engine.batch([{ type: 'delete', key: 7 as never }]), TypeError, 'INVALID_KEY', /operations\[0\]\.key/],
        [
          () => engine.batch([{ type: 'delete', key: 'k'.repeat(keyBytesMax + 1) }]),
          RangeError,
          'KEY_TOO_LARGE',
          /operations\[0\]\.key is/,
        ],
        [
          () => engine.batch([{ type: 'put', key: 'a', value: new Uint8Array(valueBytesMax + 1) }]),
          RangeError,
          'VALUE_TOO_LARGE',
          /operations\[0\]\.value is/,
        ],
      ]
      await expectArgumentErrors(bad)
      expect(engine.stats().shards.reduce((sum, shard) => sum + shard.records + shard.bytesInFlight, 0)).toBe(0)
      expect(await engine.get('a')).toBeUndefined() // the batch with a bad operation wrote nothing
    })

    it('rejects bad options with TypeError or RangeError naming the option and a stable code', async () => {
      const bad: ArgumentCase[] = [
        [() => open(directory, { shards: 0 }), RangeError, 'INVALID_OPTION', /options\.shards/],
        [() => open(directory, { shards: 1.5 }), TypeError, 'INVALID_OPTION', /options\.shards/],
        [() => open(directory, { backend: 'spdk' as never }), RangeError, 'INVALID_OPTION', /options\.backend/],
        [() => open(directory, { recovery: 'hope' as never }), RangeError, 'INVALID_OPTION', /options\.recovery/],
        [() => open(directory, { batchBytesMax: '4M' as never }), TypeError, 'INVALID_OPTION', /options\.batchBytesMax/],
        [() => open(directory, { bytesInFlightMax: -1 }), RangeError, 'INVALID_OPTION', /options\.bytesInFlightMax/],
        [() => open(directory, { segmentBytes: 1024 }), RangeError, 'INVALID_OPTION', /options\.segmentBytes/],
        [() => open(directory, { autoCheckpoint: 5 as never }), TypeError, 'INVALID_OPTION', /options\.autoCheckpoint/],
        [() => open(directory, { autoCheckpoint: { logBytes: 0 } }), RangeError, 'INVALID_OPTION', /options\.autoCheckpoint\.logBytes/],
        [() => open(directory, { autoCheckpoint: { liveRatio: -1 } }), RangeError, 'INVALID_OPTION', /options\.autoCheckpoint\.liveRatio/],
        [() => open(directory, null as never), TypeError, 'INVALID_OPTION', /options must be an object/],
        [() => open('', { backend }), TypeError, 'INVALID_ARGUMENT', /directory/],
        [() => open(7 as never, { backend }), TypeError, 'INVALID_ARGUMENT', /directory/],
      ]
      await expectArgumentErrors(bad)
      expect(fs.readdirSync(directory)).toEqual([]) // nothing was created
    })

    it('compact() checkpoints every shard and removes the log it covers; a reopen loads the checkpoints and finds every write', async () => {
      const engine = await openDb({ shards: 2, segmentBytes: 64 * 1024, autoCheckpoint: false })
      const valueOf = (round: number, index: number): string => `${round}:${index}:`.padEnd(200 + (index % 50), 'v')
      for (let round = 0; round < 4; round++) {
        await Promise.all(Array.from({ length: 1000 }, (_, index) => engine.put(`key-${index}`, valueOf(round, index))))
      }
      await Promise.all(Array.from({ length: 100 }, (_, index) => engine.delete(`key-${index}`)))
      const segmentsOf = (shard: number): string[] =>
        fs.readdirSync(shardDirectory(directory, shard)).filter((name) => name.endsWith('.wal'))
      const segmentBytesOf = (shard: number): number =>
        segmentsOf(shard).reduce((sum, name) => sum + fs.statSync(path.join(shardDirectory(directory, shard), name)).size, 0)
      const before = [0, 1].map((shard) => segmentsOf(shard).length)
      const diskBefore = [0, 1].map(segmentBytesOf)
      await engine.compact()
      const stats = engine.stats().shards
      for (const [shard, shardStats] of stats.entries()) {
        expect(shardStats.checkpoints).toBe(1)
        expect(shardStats.checkpointSequence).toBe(shardStats.batches)
        expect(shardStats.lastCheckpoint!.bytes).toBe(shardStats.checkpointDiskBytes)
        // The figure from the last refresh: a zero-fill that was still running may have grown the files since.
        const onDisk = segmentBytesOf(shard)
        expect(shardStats.logDiskBytes).toBeLessThanOrEqual(onDisk)
        expect(onDisk - shardStats.logDiskBytes).toBeLessThanOrEqual(2 * 64 * 1024 + 2 * 4 * 1024)
        expect(shardStats.logDiskBytes).toBeLessThan(diskBefore[shard]! / 2)
        expect(segmentsOf(shard).length).toBeLessThan(before[shard]!)
        expect(fs.readdirSync(shardDirectory(directory, shard)).filter((name) => name.endsWith('.ckpt'))).toHaveLength(1)
      }
      expect(stats.reduce((sum, shard) => sum + shard.liveEntries, 0)).toBe(900)
      const liveBytes = Array.from({ length: 900 }, (_, index) => 16 + `key-${index + 100}`.length + valueOf(3, index + 100).length)
      expect(stats.reduce((sum, shard) => sum + shard.liveBytes, 0)).toBe(liveBytes.reduce((sum, bytes) => sum + bytes, 0))
      await engine.put('after', 'the checkpoint')
      await engine.close()
      const again = await openDb()
      for (const report of again.recovery) expect(report.checkpointSequence).toBeGreaterThan(0)
      expect(again.recovery.reduce((sum, report) => sum + report.checkpointRecords, 0)).toBe(900)
      expect(again.recovery.reduce((sum, report) => sum + report.batchesReplayed, 0)).toBe(1)
      for (let index = 0; index < 1000; index++) {
        expect(text(await again.get(`key-${index}`))).toBe(index < 100 ? undefined : valueOf(3, index))
      }
      expect(text(await again.get('after'))).toBe('the checkpoint')
    })

    it('checkpoints by itself past autoCheckpoint.logBytes, while writes go on, and compact() during a write storm loses nothing', async () => {
      const engine = await openDb({ shards: 2, segmentBytes: 64 * 1024, autoCheckpoint: { logBytes: 64 * 1024 } })
      const valueOf = (round: number, index: number): string => `${round}:${index}:`.padEnd(300, 'w')
      let compactions = 0
      let writing = true
      const compacting = (async () => {
        while (writing) {
          await engine.compact()
          compactions++
        }
      })()
      const rounds = 16
      for (let round = 0; round < rounds; round++) {
        await Promise.all(Array.from({ length: 500 }, (_, index) => engine.put(`storm-${index}`, valueOf(round, index))))
      }
      writing = false
      await compacting
      expect(compactions).toBeGreaterThan(0)
      // Once everything is checkpointed, the log on disk is what the README's bound ("Checkpoints and disk
      // space") allows with no log after the checkpoint: the segment its point is in, the next one (a whole
      // one when reused) and the retired one kept for reuse (64 KiB each here), and their completion
      // segments (1/16 of that): far below everything written.
      await engine.compact()
      const stats = engine.stats().shards
      for (const [shard, shardStats] of stats.entries()) {
        expect(shardStats.checkpoints).toBeGreaterThan(1)
        const logBytes = fs
          .readdirSync(shardDirectory(directory, shard))
          .filter((name) => name.endsWith('.wal'))
          .reduce((sum, name) => sum + fs.statSync(path.join(shardDirectory(directory, shard), name)).size, 0)
        expect(logBytes).toBeLessThanOrEqual(3 * 64 * 1024 + 3 * 4 * 1024)
        expect(shardStats.segmentsReused).toBeGreaterThan(0)
        expect(shardStats.bytes).toBeGreaterThan(5 * logBytes)
      }
      await engine.close()
      const again = await openDb()
      for (let index = 0; index < 500; index++) expect(text(await again.get(`storm-${index}`))).toBe(valueOf(rounds - 1, index))
    })

    it('backup() during a write storm: the backup opens and holds every write acknowledged before the call', async () => {
      const engine = await openDb({ shards: 2, segmentBytes: 64 * 1024, autoCheckpoint: { logBytes: 64 * 1024 } })
      const target = `${directory}-backup`
      const valueOf = (round: number, index: number): string => `${round}:${index}:`.padEnd(150, 'b')
      try {
        const acknowledged = new Map<string, string>()
        let round = 0
        let writing = true
        const storm = (async () => {
          while (writing) {
            const current = round++
            await Promise.all(
              Array.from({ length: 300 }, async (_, index) => {
                await engine.put(`b-${index}`, valueOf(current, index))
                acknowledged.set(`b-${index}`, valueOf(current, index))
              }),
            )
          }
        })()
        while (round < 3) await new Promise((resolve) => setTimeout(resolve, 5))
        const before = new Map(acknowledged)
        await engine.backup(target)
        writing = false
        await storm
        // The source goes on; the backup is a database of its own, opened while the source is open.
        await engine.put('only-in-source', 'x')
        const copy = await open(target, { backend })
        try {
          expect(copy.shards).toBe(2)
          for (const report of copy.recovery) expect(report.repaired).toBeUndefined()
          for (const [key, value] of before) {
            const got = text(await copy.get(key))
            // every write acknowledged before the call, or a later one of the same key (a prefix of what came after)
            const round = Number(got?.split(':')[0])
            expect(round, `${key}: ${got}`).toBeGreaterThanOrEqual(Number(value.split(':')[0]))
            expect(got).toBe(valueOf(round, Number(key.slice(2))))
          }
          expect(await copy.get('only-in-source')).toBeUndefined()
        } finally {
          await copy.close()
        }
      } finally {
        fs.rmSync(target, { recursive: true, force: true })
      }
    })

    it('backup() refuses a target that is not empty, or is the database or inside it, with BACKUP_TARGET_INVALID', async () => {
      const engine = await openDb({ shards: 1 })
      await engine.put('k', 'v')
      const occupied = `${directory}-occupied`
      fs.mkdirSync(occupied)
      fs.writeFileSync(path.join(occupied, 'file'), 'x')
      try {
        for (const target of [occupied, directory, path.join(directory, 'inside'), path.dirname(directory)]) {
          await expect(engine.backup(target)).rejects.toMatchObject({ name: 'EngineError', code: 'BACKUP_TARGET_INVALID' })
        }
        expect(fs.readdirSync(occupied)).toEqual(['file'])
        expect(fs.existsSync(path.join(directory, 'inside'))).toBe(false)
        await expect(engine.backup('')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' })
      } finally {
        fs.rmSync(occupied, { recursive: true, force: true })
      }
    })

    it('answers every call after close with ENGINE_CLOSED, and close twice is fine', async () => {
      const engine = await openDb({ shards: 2 })
      const write = engine.put('in flight', 'at close')
      await engine.close()
      await write // a write issued before close completes
      await engine.close()
      const calls = [
        () => engine.put('a', 'b'),
        () => engine.get('a'),
        () => engine.getMany(['a']),
        () => engine.has('a'),
        () => engine.delete('a'),
        () => engine.batch([]),
        () => engine.compact(),
        () => engine.backup(`${directory}-never`),
      ]
      for (const call of calls) {
        await expect(call()).rejects.toMatchObject({ name: 'EngineError', code: 'ENGINE_CLOSED' })
      }
      expect(() => engine.stats()).toThrow(expect.objectContaining({ code: 'ENGINE_CLOSED' }))
      db = await openDb()
      expect(text(await db.get('in flight'))).toBe('at close')
    })

    it('refuses a second open of the same directory with ENGINE_LOCKED, and frees it on close', async () => {
      const engine = await openDb({ shards: 2 })
      const error = await open(directory, { backend }).then(
        () => undefined,
        (caught: unknown) => caught,
      )
      expect(error).toBeInstanceOf(EngineError)
      expect((error as EngineError).code).toBe('ENGINE_LOCKED')
      await engine.put('still', 'works')
      await engine.close()
      db = await openDb()
      expect(text(await db.get('still'))).toBe('works')
    })

    it('refuses an open from another process while open here, and the other way round', async () => {
      const engine = await openDb({ shards: 2 })
      expect((await childOpen(directory, backend)).said).toBe('error ENGINE_LOCKED')
      await engine.close()
      db = undefined
      const child = await childOpen(directory, backend)
      expect(child.said).toBe('open')
      await expect(open(directory, { backend })).rejects.toMatchObject({ code: 'ENGINE_LOCKED' })
      await child.close()
      db = await openDb()
    })

    it('refuses another shard count for an existing directory', async () => {
      const engine = await openDb({ shards: 2 })
      await engine.put('a', 'b')
      await engine.close()
      await expect(open(directory, { backend, shards: 3 })).rejects.toMatchObject({ code: 'SHARD_COUNT_MISMATCH' })
      db = await openDb({ shards: 2 })
      expect(text(await db.get('a'))).toBe('b')
    })
  })
}
