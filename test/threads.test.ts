// One database, several threads: handles made by share() in the thread that opened it and attach() in a
// worker thread (threads-writer.mjs) talk to the shards directly. What must hold across threads: the same key
// reaches the same shard from every thread; closing the database fails a handle's calls with ENGINE_CLOSED
// and loses nothing acknowledged; a writer thread terminated mid-storm leaves the database usable, with no
// bytes or iterator snapshots held for it and no half batch; the bound on bytes in flight holds for all
// threads together; and open + close leaves no thread or file descriptor behind.
import { once } from 'node:events'
import fs from 'node:fs'
import { Worker } from 'node:worker_threads'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { attach, open, shardOf, threadLingerMs, type Engine } from '@ringkv/engine'
import { backendCases } from './conformance/backends.js'
import { temporaryDirectory } from './conformance/temp.js'

const writerModule = new URL('./threads-writer.mjs', import.meta.url)
const text = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : Buffer.from(value).toString())

type WriterMessage = { read: (string | null)[] } | { acknowledged: [number, number] } | { failed: string } | { after: string }

/** A worker thread running `job` (threads-writer.mjs) on a handle of `db`, and what it reported so far. */
class Writer {
  readonly worker: Worker
  /** Per loop, the last round acknowledged (-1: none). */
  readonly lastRound = new Map<number, number>()
  acknowledged = 0
  failed: string | undefined
  after: Promise<string>
  read: Promise<(string | null)[]>
  /** Listened for from the start: the thread may end before the test gets to wait for it. */
  readonly exited: Promise<unknown>

  constructor(db: Engine, job: Record<string, unknown>) {
    const share = db.share()
    this.worker = new Worker(writerModule, { workerData: { share, job }, transferList: share.transferList })
    this.exited = once(this.worker, 'exit')
    let after!: (code: string) => void
    let read!: (values: (string | null)[]) => void
    this.after = new Promise((resolve) => (after = resolve))
    this.read = new Promise((resolve) => (read = resolve))
    this.worker.on('message', (message: WriterMessage) => {
      if ('acknowledged' in message) {
        const [loop, round] = message.acknowledged
        expect(round).toBe((this.lastRound.get(loop) ?? -1) + 1) // each loop's batches are acknowledged in order
        this.lastRound.set(loop, round)
        this.acknowledged++
      } else if ('failed' in message) this.failed = message.failed
      else if ('after' in message) after(message.after)
      else read(message.read)
    })
  }

  until(acknowledged: number): Promise<void> {
    return until(() => this.acknowledged >= acknowledged, `${acknowledged} batches acknowledged (${this.acknowledged})`)
  }
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`still not ${what} after 10 s`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/**
 * Checks a storm's keys after a reopen: every acknowledged batch is there whole, and any later batch is, on
 * each shard, all there or not at all (a request is atomic on its shard, whatever happened to its thread).
 */
async function checkStorm(db: Engine, writer: Writer, tag: string, batchKeys: number): Promise<void> {
  for (const [loop, last] of writer.lastRound) {
    for (let round = 0; round <= last + 1; round++) {
      const keys = Array.from({ length: batchKeys }, (_, k) => `${tag}-${loop}-${round}-${k}`)
      const values = (await db.getMany(keys)).map(text)
      const perShard = new Map<number, boolean[]>()
      keys.forEach((key, index) => {
        const shard = shardOf(Buffer.from(key), db.shards)
        perShard.set(shard, [...(perShard.get(shard) ?? []), values[index] !== undefined])
        if (values[index] !== undefined) expect(values[index]!.startsWith(`${round}.`) || values[index] === `${round}`).toBe(true)
      })
      for (const [shard, present] of perShard) {
        if (round <= last) expect(present.every(Boolean), `${tag} loop ${loop} round ${round} (acknowledged) on shard ${shard}`).toBe(true)
        else expect(new Set(present).size, `${tag} loop ${loop} round ${round} on shard ${shard}: half a batch`).toBe(1)
      }
    }
  }
}

for (const { backend, skip } of backendCases) {
  describe.skipIf(skip !== undefined)(`handles in other threads, on ${backend}`, () => {
    let directory: string
    let remove: () => void
    beforeEach(() => {
      ;({ directory, remove } = temporaryDirectory(`threads-${backend}`))
    })
    afterEach(() => remove())

    it('routes every key to the same shard from every thread', async () => {
      const db = await open(directory, { backend, shards: 3 })
      const count = 600
      await Promise.all(Array.from({ length: count }, (_, index) => db.put(`m-${index}`, `from main ${index}`)))
      const writer = new Writer(db, { kind: 'routing', count })
      expect(await writer.read).toEqual(Array.from({ length: count }, (_, index) => `from main ${index}`))
      await writer.exited
      for (let index = 0; index < count; index++) expect(text(await db.get(`w-${index}`))).toBe(`from the worker ${index}`)
      const expected = [0, 0, 0]
      for (let index = 0; index < count; index++) {
        for (const key of [`m-${index}`, `w-${index}`]) expected[shardOf(Buffer.from(key), 3)]!++
      }
      expect(db.stats().shards.map((shard) => shard.records)).toEqual(expected)
      await db.close()
    })

    it('refuses to attach one share twice (two clients would take each other’s answers)', async () => {
      const db = await open(directory, { backend, shards: 2 })
      const share = db.share()
      const handle = attach(share) // in this very thread: a handle works wherever it is attached
      expect(() => attach(share)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'INVALID_ARGUMENT' }))
      await handle.put('attached once', 'yes')
      expect(text(await db.get('attached once'))).toBe('yes')
      await handle.close()
      await handle.close()
      await expect(handle.get('attached once')).rejects.toMatchObject({ code: 'ENGINE_CLOSED' })
      expect(text(await db.get('attached once'))).toBe('yes') // closing a handle leaves the database open
      await db.close()
    })

    it("closing the database fails a handle's calls with ENGINE_CLOSED; every write it acknowledged survives", async () => {
      const db = await open(directory, { backend, shards: 2 })
      const writer = new Writer(db, { kind: 'storm', tag: 'c', loops: 8, batchKeys: 10, valueBytes: 50 })
      await writer.until(40)
      await db.close()
      expect(await writer.after).toBe('ENGINE_CLOSED')
      expect(writer.failed).toBe('ENGINE_CLOSED')
      await writer.exited
      const again = await open(directory, { backend })
      await checkStorm(again, writer, 'c', 10)
      await again.close()
    })

    it('a writer thread terminated mid-storm leaves the database usable, holding nothing for it, with no half batch', async () => {
      const db = await open(directory, { backend, shards: 2, bytesInFlightMax: 64 * 1024 })
      // Enough keys that an iterator's first page is not its whole answer: the shards keep its snapshot.
      await Promise.all(Array.from({ length: 300 }, (_, index) => db.put(`before-${index}`, 'x')))
      const writer = new Writer(db, { kind: 'storm', tag: 't', loops: 64, batchKeys: 8, valueBytes: 400, holdIterator: true })
      await writer.until(100)
      expect(db.stats().shards.every((shard) => shard.iteratorsOpen === 1)).toBe(true)
      await writer.worker.terminate()
      // Its iterator's snapshots and the bytes it had reserved go with its connections.
      await until(() => db.stats().shards.every((shard) => shard.iteratorsOpen === 0 && shard.bytesInFlight === 0), 'released')
      const value = 'v'.repeat(1000)
      await Promise.all(Array.from({ length: 300 }, (_, index) => db.put(`main-${index}`, value)))
      expect(text(await db.get('main-299'))).toBe(value)
      await db.close()
      const again = await open(directory, { backend })
      await checkStorm(again, writer, 't', 8)
      expect(text(await again.get('main-0'))).toBe(value)
      await again.close()
    })

    it('bounds the bytes in flight to a shard for all threads together', async () => {
      const bound = 64 * 1024
      const db = await open(directory, { backend, shards: 1, bytesInFlightMax: bound })
      const writers = Array.from(
        { length: 4 },
        (_, index) => new Writer(db, { kind: 'storm', tag: `b${index}`, loops: 32, batchKeys: 4, valueBytes: 1000 }),
      )
      let most = 0
      const started = Date.now()
      while (Date.now() - started < 1500) {
        most = Math.max(most, db.stats().shards[0]!.bytesInFlight)
        await new Promise((resolve) => setImmediate(resolve))
      }
      expect(writers.every((writer) => writer.acknowledged > 0)).toBe(true)
      expect(most).toBeLessThanOrEqual(bound)
      expect(most).toBeGreaterThan(bound / 2) // the writers pressed against the bound
      await db.close()
      for (const writer of writers) expect(await writer.after).toBe('ENGINE_CLOSED')
    })
  })
}

describe('open and close', () => {
  const fds = (): number => fs.readdirSync('/proc/self/fd').length
  const threads = (): number => Number(/^Threads:\s+(\d+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1])

  it("leave no thread, ring or file descriptor behind, with a handle's thread each time", async () => {
    const { directory, remove } = temporaryDirectory('cycles')
    try {
      const cycle = async (index: number): Promise<void> => {
        const db = await open(directory, { shards: 2 })
        await db.put(`cycle-${index}`, 'x')
        const writer = new Writer(db, { kind: 'routing', count: 10 })
        await writer.read
        await writer.exited
        await db.close()
      }
      // The first cycle starts what stays for the process (libuv's threadpool). Its shards' threads linger
      // for the next open (threadLingerMs), with the kernel's io_uring workers of their rings, then end.
      await cycle(-1)
      await new Promise((resolve) => setTimeout(resolve, threadLingerMs + 500))
      const before = { fds: fds(), threads: threads() }
      for (let index = 0; index < 10; index++) await cycle(index)
      await until(() => threads() === before.threads, `back to ${before.threads} threads (${threads()})`)
      expect({ fds: fds(), threads: threads() }).toEqual(before)
      const db = await open(directory)
      expect(text(await db.get('cycle-9'))).toBe('x')
      await db.close()
    } finally {
      remove()
    }
  })
})
