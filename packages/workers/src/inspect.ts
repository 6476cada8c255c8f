// A look into a database directory without opening it, for the operator's command line (the engine's
// cli.ts): its manifest, whether it is open now, and per shard its files and what recovery makes of them.
// Read-only: recovery (log/recovery.ts) only reads and decides; cutting a torn tail, removing files and
// writing are the shard's, at open, and nothing here does them. No lock is taken (one is tried and dropped
// at once, to tell whether the database is open): a database open elsewhere can still be read, and its
// newest batch may then be seen half written, which recovery reads as a torn tail.

import fs from 'node:fs'
import path from 'node:path'
import { EngineError } from './errors.js'
import { isOpenElsewhere, readDatabaseManifest, shardDirectory, type Manifest } from './directory.js'
import { isCheckpointName } from './format/checkpoint.js'
import { segmentName, segmentNumbers } from './format/segment-files.js'
import { recover } from './log/recovery.js'
import type { RecoveryReport } from './protocol.js'
import { FsStorage } from './storage/fs.js'
import { WasmTable } from './table/wasm-table.js'

export interface ShardInspection {
  shard: number
  directory: string
  intentSegments: number
  completionSegments: number
  /** Bytes of the log segments (both logs, zero-filled space included), and of checkpoint files. */
  logBytes: number
  checkpointBytes: number
  /** What a strict recovery found (undefined when it could not finish: see `damage` and `failure`). */
  recovery: RecoveryReport | undefined
  /** With `table`: the live entries after recovery, and their bytes as records (16 + key + value each). */
  liveEntries: number | undefined
  liveBytes: number | undefined
  /** Damage to acknowledged data: what WAL_CORRUPT says (the same details an open would carry). */
  damage: { message: string; details: Record<string, unknown> | undefined } | undefined
  /** The shard could not be read at all (a missing directory, a read error). */
  failure: string | undefined
}

export interface DatabaseInspection {
  directory: string
  manifest: Manifest
  /** The lock is held: the database is open, here or in another process. */
  openElsewhere: boolean
  shards: ShardInspection[]
}

export interface InspectOptions {
  /** Replay into a table to count live entries and bytes (info); verify only checks. */
  table: boolean
  /** Called before the first shard (`done` 0) and after each, for progress. */
  onShard?: (done: number, total: number) => void
}

/** Inspects every shard of the database at `directory` (NOT_A_DATABASE, or WAL_CORRUPT for a bad manifest, are thrown). */
export function inspectDatabase(directory: string, options: InspectOptions): DatabaseInspection {
  const manifest = readDatabaseManifest(directory)
  const openElsewhere = isOpenElsewhere(directory)
  const shards: ShardInspection[] = []
  options.onShard?.(0, manifest.shards)
  for (let shard = 0; shard < manifest.shards; shard++) {
    shards.push(inspectShard(shardDirectory(directory, shard), shard, options.table))
    options.onShard?.(shard + 1, manifest.shards)
  }
  return { directory, manifest, openElsewhere, shards }
}

function inspectShard(directory: string, shard: number, withTable: boolean): ShardInspection {
  const inspection: ShardInspection = {
    shard,
    directory,
    intentSegments: 0,
    completionSegments: 0,
    logBytes: 0,
    checkpointBytes: 0,
    recovery: undefined,
    liveEntries: undefined,
    liveBytes: undefined,
    damage: undefined,
    failure: undefined,
  }
  let names: string[]
  try {
    names = fs.readdirSync(directory)
  } catch (error) {
    inspection.failure = `cannot list ${directory}: ${(error as Error).message}`
    return inspection
  }
  const intent = segmentNumbers(names, 'intent')
  const completion = segmentNumbers(names, 'completion')
  inspection.intentSegments = intent.length
  inspection.completionSegments = completion.length
  const bytesOf = (name: string): number => fs.statSync(path.join(directory, name)).size
  for (const segment of intent) inspection.logBytes += bytesOf(segmentName('intent', segment))
  for (const segment of completion) inspection.logBytes += bytesOf(segmentName('completion', segment))
  for (const name of names.filter(isCheckpointName)) inspection.checkpointBytes += bytesOf(name)
  const table = withTable ? WasmTable.create() : undefined
  try {
    const result = recover(
      new FsStorage('read-only inspection'),
      { mode: 'strict', shard, directory },
      table === undefined
        ? { apply: () => {}, expect: () => {} }
        : { apply: (body, count) => table.applyBatch(body, count), expect: (entries, bytes) => table.expect(entries, bytes) },
    )
    inspection.recovery = result.report
    if (table !== undefined) {
      inspection.liveEntries = table.size
      inspection.liveBytes = table.liveBytes
    }
  } catch (error) {
    if (error instanceof EngineError && error.code === 'WAL_CORRUPT') {
      inspection.damage = { message: error.message, details: error.details }
    } else {
      inspection.failure = error instanceof Error ? error.message : String(error)
    }
  } finally {
    table?.dispose()
  }
  return inspection
}
