// One adapter per engine, each opened in its strictest durable setting, each answering the same four calls.
// A put's promise resolves only once the engine says the write is on stable storage:
//
// | engine        | durable acknowledgement                                   | grouping of concurrent puts          |
// |---------------|-----------------------------------------------------------|--------------------------------------|
// | ringkv        | put() resolves after the shard's fdatasync                | the engine's own (per shard)         |
// | lmdb          | overlappingSync: false, so commit includes the sync       | lmdb-js's own (one txn per tick)     |
// | classic-level | put/batch with { sync: true }                             | LevelDB's own writer queue           |
// | better-sqlite3| journal_mode=WAL, synchronous=FULL                        | here: one transaction per tick       |
// | node:fs log   | write, then fdatasync                                     | here: one write+fdatasync per group  |
//
// Why lmdb runs with overlappingSync off: with it on (lmdb-js's default on Linux) a write transaction
// begins with MDB_NOSYNC and put() resolves once the commit is visible, while the sync runs afterwards
// (README "Overlapping Sync Options"; write.js resolves on TXN_COMMITTED, which writer.cpp sets right after
// mdb_txn_commit). Waiting for `db.flushed` instead would make a put wait for every later commit too.
// With it off, mdb_txn_commit syncs before it returns, so a resolved put is durable, and nothing else waits.
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
  /** ringkv only. */
  shards?: number
  /** ringkv only. */
  backend?: 'io_uring' | 'fs'
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
      return openBetterSqlite3(directory)
    case 'fs-log':
      return openFsLog(directory)
  }
}

// ---- ringkv ----------------------------------------------------------------------------------------

async function openRingkv(spec: EngineSpec, directory: string): Promise<Engine> {
  // Loaded on demand so that the other engines' child processes never load ringkv (nor its threadpool size).
  const ringkv: typeof import('@ringkv/engine') = await import('@ringkv/engine')
  const database = await ringkv.open(directory, { shards: spec.shards, backend: spec.backend ?? 'auto' })
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
  }
}

// ---- better-sqlite3 ----------------------------------------------------------------------------------

/**
 * Collects the puts issued in one event-loop turn and hands them to `commit` together at the next
 * setImmediate: the group-commit a synchronous or callback API leaves to its caller. While a commit is in
 * flight, new puts wait for the next group (at most one commit in flight, as a log has one tail).
 */
class GroupCommitter {
  private pending: { operation: PutOperation; resolve: () => void; reject: (error: unknown) => void }[] = []
  private scheduled = false
  private committing = false
  groups = 0

  constructor(private readonly commit: (operations: PutOperation[]) => Promise<void> | void) {}

  enqueue(operation: PutOperation): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ operation, resolve, reject })
      this.schedule()
    })
  }

  private schedule(): void {
    if (this.scheduled || this.committing) return
    this.scheduled = true
    setImmediate(() => void this.flush())
  }

  private async flush(): Promise<void> {
    this.scheduled = false
    const group = this.pending
    this.pending = []
    if (group.length === 0) return
    this.committing = true
    this.groups += 1
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

async function openBetterSqlite3(directory: string): Promise<Engine> {
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
  const committer = new GroupCommitter((operations) => insertAll(operations))
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
      groups: committer.groups,
      sqlite: database.prepare('select sqlite_version() v').pluck().get(),
    }),
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

async function openFsLog(directory: string): Promise<Engine> {
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
  const committer = new GroupCommitter(commit)
  return {
    put: (key, value) => committer.enqueue({ key, value }),
    get: (key) => index.get(latin1(key)),
    putMany: commit,
    close: async () => closeSync(fd),
    describe: () => ({ groups: committer.groups }),
  }
}
