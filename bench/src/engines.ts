// One adapter per engine, each in its best honest durable configuration, each answering the same calls.
// A put's promise resolves only once the engine says the write is on stable storage, and each engine gets
// the grouping of concurrent puts that its API lets a user get from it:
//
// | row              | durable acknowledgement                            | grouping of concurrent puts                  |
// |------------------|----------------------------------------------------|----------------------------------------------|
// | ringkv (default) | open(dir), no options: put() resolves after the    | the engine's own group commit, per shard     |
// |                  | shard's fdatasync; shards = shardsDefault()        |                                              |
// | ringkv <b> ×<n>  | the same, with backend <b> and <n> shards forced   | the same                                     |
// | lmdb             | overlappingSync: false: the commit includes sync   | c put() promises in flight: lmdb-js commits  |
// |                  |                                                    | what a tick queued in one transaction        |
// | classic-level    | put() with { sync: true }                          | c put() promises in flight: LevelDB's writer |
// |                  |                                                    | queue joins them into one synced write       |
// | better-sqlite3   | journal_mode=WAL, synchronous=FULL                 | here: every pending put in one transaction   |
// | node:fs log      | one write, then fdatasync                          | here: every pending put in one write + sync  |
//
// Why lmdb runs with overlappingSync off: with it on (lmdb-js's default on Linux) a write transaction
// begins with MDB_NOSYNC and put() resolves once the commit is visible, while the sync runs afterwards
// (README "Overlapping Sync Options"; write.js resolves on TXN_COMMITTED, which writer.cpp sets right after
// mdb_txn_commit). Waiting for `db.flushed` instead would make a put wait for every later commit too.
// With it off, mdb_txn_commit syncs before it returns, so a resolved put is durable, and nothing else waits.
//
// better-sqlite3 is synchronous: while a transaction commits, the thread is busy, so no put can arrive.
// The best grouping a user can write is therefore to commit every put that arrived since the last commit
// in one transaction (GroupCommitter below): in a closed loop of c clients, c puts per transaction. The
// node:fs log is grouped the same way (one write and one fdatasync per group). Two places to run that
// commit were measured against each other; the next event-loop turn was never slower (`groupingDefault`).
//
// Synchronous engines (better-sqlite3, the fs log's index) answer gets at once; the clients still
// `await` them, as every client awaits every engine.

import { closeSync, fdatasync, openSync, readFileSync, write as writeFile, existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'

export type EngineName = 'ringkv' | 'lmdb' | 'classic-level' | 'better-sqlite3' | 'fs-log'

export interface EngineSpec {
  /** The row's label in the tables, e.g. `ringkv io_uring ×2`. */
  label: string
  engine: EngineName
  /** ringkv only; with neither `shards` nor `backend`, ringkv is opened with its defaults: `open(dir)`. */
  shards?: number
  /** ringkv only. */
  backend?: 'io_uring' | 'fs'
  /** better-sqlite3 and the fs log only: where the group commit runs (default `groupingDefault`). */
  grouping?: Grouping
}

export interface PutOperation {
  key: Uint8Array
  value: Uint8Array
}

export interface Engine {
  put(key: Uint8Array, value: Uint8Array): Promise<void>
  get(key: Uint8Array): Promise<Uint8Array | undefined> | Uint8Array | undefined
  /** Writes all of `operations` durably, as one unit where the engine has one. */
  putMany(operations: PutOperation[]): Promise<void>
  close(): Promise<void>
  /** What the engine reports about itself after a run (ringkv: the backend each shard really used). */
  describe(): Record<string, unknown>
  /** The configuration that really ran, in a few words for the tables (ringkv: `io_uring ×1`). */
  setup(): string
}

export async function openEngine(spec: EngineSpec, directory: string): Promise<Engine> {
  await mkdir(directory, { recursive: true })
  switch (spec.engine) {
    case 'ringkv':
      return openRingkv(spec, directory)
    case 'lmdb':
      return openLmdb(directory)
    case 'classic-level':
      return openClassicLevel(directory)
    case 'better-sqlite3':
      return openBetterSqlite3(directory, spec.grouping ?? groupingDefault)
    case 'fs-log':
      return openFsLog(directory, spec.grouping ?? groupingDefault)
  }
}

// ---- ringkv ----------------------------------------------------------------------------------------

async function openRingkv(spec: EngineSpec, directory: string): Promise<Engine> {
  // Loaded on demand so that the other engines' child processes never load ringkv (nor its threadpool size).
  const ringkv: typeof import('@ringkv/engine') = await import('@ringkv/engine')
  const defaults = spec.shards === undefined && spec.backend === undefined
  const database = defaults ? await ringkv.open(directory) : await ringkv.open(directory, { shards: spec.shards, backend: spec.backend })
  return {
    put: (key, value) => database.put(key, value),
    get: (key) => database.get(key),
    putMany: (operations) => database.batch(operations.map(({ key, value }) => ({ type: 'put' as const, key, value }))),
    close: () => database.close(),
    describe: () => {
      const shards = database.stats().shards
      return {
        backends: shards.map((shard) => shard.backend),
        backendReasons: shards.map((shard) => shard.backendReason).filter((reason) => reason !== undefined),
        fsyncLatencyUsP50: shards.map((shard) => shard.fsyncLatencyUsP50),
        batches: shards.reduce((sum, shard) => sum + shard.batches, 0),
        records: shards.reduce((sum, shard) => sum + shard.records, 0),
      }
    },
    setup: () => {
      const shards = database.stats().shards
      const backends = [...new Set(shards.map((shard) => shard.backend))].join('+')
      return `${backends} ×${shards.length}${defaults ? ` (open(dir), no options; shardsDefault() = ${ringkv.shardsDefault()})` : ''}`
    },
  }
}

// ---- lmdb-js -----------------------------------------------------------------------------------------

async function openLmdb(directory: string): Promise<Engine> {
  const lmdb = await import('lmdb')
  const database = lmdb.open<Buffer, Buffer>({
    path: directory,
    keyEncoding: 'binary',
    encoding: 'binary',
    compression: false,
    overlappingSync: false,
  })
  return {
    put: async (key, value) => {
      const written = await database.put(key as Buffer, value as Buffer)
      if (written !== true) throw new Error('lmdb put was not written')
    },
    get: (key) => database.get(key as Buffer),
    putMany: async (operations) => {
      await database.batch(() => {
        for (const { key, value } of operations) void database.put(key as Buffer, value as Buffer)
      })
    },
    close: () => database.close(),
    describe: () => ({ overlappingSync: false }),
    setup: () => 'overlappingSync: false; c put() promises in flight',
  }
}

// ---- classic-level (LevelDB) -------------------------------------------------------------------------

async function openClassicLevel(directory: string): Promise<Engine> {
  const { ClassicLevel } = await import('classic-level')
  const database = new ClassicLevel<Uint8Array, Uint8Array>(directory, { keyEncoding: 'view', valueEncoding: 'view' })
  await database.open()
  return {
    put: (key, value) => database.put(key, value, { sync: true }),
    get: (key) => database.get(key),
    putMany: (operations) =>
      database.batch(
        operations.map(({ key, value }) => ({ type: 'put' as const, key, value })),
        { sync: true },
      ),
    close: () => database.close(),
    describe: () => ({ sync: true }),
    setup: () => 'sync: true; c put() promises in flight',
  }
}

// ---- better-sqlite3 ----------------------------------------------------------------------------------

/**
 * Where a group commit runs, once the first put of a group has arrived:
 * - `microtask-drain` (process.nextTick): as soon as the promise continuations now queued have all run.
 *   When a group commits, its callers' continuations issue their next puts as microtasks, and the commit
 *   runs right after them, so every put that can arrive without the event loop joins the group;
 * - `event-loop-turn` (setImmediate): one turn of the event loop later, after any I/O callbacks.
 * Both give every pending put to one commit; they differ in the hop between two commits.
 */
export type Grouping = 'microtask-drain' | 'event-loop-turn'

/**
 * The grouping the tables use. `node bench/scripts/grouping.mjs` (c=256, sequential keys, 5 paired rounds of
 * 2 s; two runs on a 2-core machine that other work shared at the time, so noisy), median puts/s, turn against
 * drain, and drain/turn per round:
 * - better-sqlite3: 341k against 273k (0.85, 0.69–0.94: turn won every round); then 316k against 281k
 *   (1.03, 0.78–1.17);
 * - the fs log: 109k against 85k (0.97, 0.62–1.35); then 165k against 153k (1.06, 0.78–1.11).
 * Both committed every pending put together, 256 puts per group (one per client), so neither cuts a group
 * short. Turn had the higher median in all four and drain never won clearly; drain also keeps a synchronous
 * engine's event loop from ever turning while clients keep putting. So the per-tick commit stays.
 */
export const groupingDefault: Grouping = 'event-loop-turn'

/**
 * Group commit for an engine that commits one group at a time: collects the puts that arrive while no
 * commit runs and hands them all to `commit` together (where, by `grouping`). While a commit is in flight,
 * new puts wait for the next group: at most one commit in flight, as a log has one tail.
 */
class GroupCommitter {
  private pending: { operation: PutOperation; resolve: () => void; reject: (error: unknown) => void }[] = []
  private scheduled = false
  private committing = false
  groups = 0
  operations = 0

  constructor(
    private readonly grouping: Grouping,
    private readonly commit: (operations: PutOperation[]) => Promise<void> | void,
  ) {}

  enqueue(operation: PutOperation): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ operation, resolve, reject })
      this.schedule()
    })
  }

  private schedule(): void {
    if (this.scheduled || this.committing) return
    this.scheduled = true
    if (this.grouping === 'microtask-drain') process.nextTick(() => void this.flush())
    else setImmediate(() => void this.flush())
  }

  private async flush(): Promise<void> {
    this.scheduled = false
    const group = this.pending
    this.pending = []
    if (group.length === 0) return
    this.committing = true
    this.groups += 1
    this.operations += group.length
    try {
      await this.commit(group.map((entry) => entry.operation))
      for (const entry of group) entry.resolve()
    } catch (error) {
      for (const entry of group) entry.reject(error)
    } finally {
      this.committing = false
      if (this.pending.length > 0) this.schedule()
    }
  }
}

async function openBetterSqlite3(directory: string, grouping: Grouping): Promise<Engine> {
  const { default: Database } = await import('better-sqlite3')
  const database = new Database(join(directory, 'kv.sqlite'))
  database.pragma('journal_mode = WAL')
  database.pragma('synchronous = FULL')
  const journalMode = database.pragma('journal_mode', { simple: true })
  const synchronous = database.pragma('synchronous', { simple: true })
  if (journalMode !== 'wal' || synchronous !== 2) throw new Error(`sqlite settings not applied: ${journalMode} ${synchronous}`)
  database.exec('CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID')
  const insert = database.prepare('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)')
  const select = database.prepare<[Uint8Array], { v: Buffer }>('SELECT v FROM kv WHERE k = ?')
  const insertAll = database.transaction((operations: PutOperation[]) => {
    for (const { key, value } of operations) insert.run(key, value)
  })
  const committer = new GroupCommitter(grouping, (operations) => insertAll(operations))
  return {
    put: (key, value) => committer.enqueue({ key, value }),
    get: (key) => select.get(key)?.v,
    putMany: async (operations) => insertAll(operations),
    close: async () => {
      database.close()
    },
    describe: () => ({
      journalMode,
      synchronous: 'FULL',
      grouping,
      groups: committer.groups,
      operations: committer.operations,
      sqlite: database.prepare('select sqlite_version() v').pluck().get(),
    }),
    setup: () => `WAL, synchronous=FULL; every pending put in one transaction (${grouping})`,
  }
}

// ---- a hand-written node:fs group-commit log --------------------------------------------------------

// What a careful developer writes by hand: an append-only file of records, each
//   u32 crc32 (over the rest of the record) | u16 key length | u32 value length | key | value   (little-endian)
// one write plus one fdatasync per group of concurrent puts, and a Map in memory for reads. Reopening
// reads the file once and stops at the first record that is short or fails its checksum.

const fsLogHeaderBytes = 10

function encodeRecords(operations: PutOperation[]): Buffer {
  let total = 0
  for (const { key, value } of operations) total += fsLogHeaderBytes + key.length + value.length
  const buffer = Buffer.allocUnsafe(total)
  let offset = 0
  for (const { key, value } of operations) {
    const start = offset
    buffer.writeUInt16LE(key.length, start + 4)
    buffer.writeUInt32LE(value.length, start + 6)
    buffer.set(key, start + fsLogHeaderBytes)
    buffer.set(value, start + fsLogHeaderBytes + key.length)
    offset = start + fsLogHeaderBytes + key.length + value.length
    buffer.writeUInt32LE(crc32(buffer.subarray(start + 4, offset)), start)
  }
  return buffer
}

function writeAll(fd: number, buffer: Buffer, offset: number): Promise<void> {
  return new Promise((resolve, reject) => {
    writeFile(fd, buffer, offset, buffer.length - offset, null, (error, written) => {
      if (error) reject(error)
      else if (offset + written < buffer.length) writeAll(fd, buffer, offset + written).then(resolve, reject)
      else resolve()
    })
  })
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
}

function syncData(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())))
}

async function openFsLog(directory: string, grouping: Grouping): Promise<Engine> {
  const path = join(directory, 'log')
  const index = new Map<string, Uint8Array>()
  if (existsSync(path)) {
    const contents = readFileSync(path)
    let offset = 0
    while (offset + fsLogHeaderBytes <= contents.length) {
      const keyLength = contents.readUInt16LE(offset + 4)
      const valueLength = contents.readUInt32LE(offset + 6)
      const end = offset + fsLogHeaderBytes + keyLength + valueLength
      if (end > contents.length || crc32(contents.subarray(offset + 4, end)) !== contents.readUInt32LE(offset)) break
      const keyStart = offset + fsLogHeaderBytes
      index.set(contents.toString('latin1', keyStart, keyStart + keyLength), contents.subarray(keyStart + keyLength, end))
      offset = end
    }
  }
  const fd = openSync(path, 'a')
  const commit = async (operations: PutOperation[]): Promise<void> => {
    await writeAll(fd, encodeRecords(operations), 0)
    await syncData(fd)
    for (const { key, value } of operations) index.set(latin1(key), Uint8Array.prototype.slice.call(value))
  }
  const committer = new GroupCommitter(grouping, commit)
  return {
    put: (key, value) => committer.enqueue({ key, value }),
    get: (key) => index.get(latin1(key)),
    putMany: commit,
    close: async () => closeSync(fd),
    describe: () => ({ grouping, groups: committer.groups, operations: committer.operations }),
    setup: () => `every pending put in one write + fdatasync (${grouping})`,
  }
}
