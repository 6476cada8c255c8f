// A database directory: its manifest, its lock, and where each shard lives. Used by the façade on the
// main thread before any worker starts.
//
// Layout:
//   <dir>/ringkv.json      manifest: { "format": 3, "shards": N, "routing": "fnv1a32-mod" }
//   <dir>/LOCK             flock'ed (exclusive, non-blocking) for as long as the database is open
//   <dir>/shard-000/ …     one directory per shard, owned by that shard's worker: intent-NNNNNNNN.wal and
//                          completion-NNNNNNNN.wal segments (format/segment-files.ts)
//
// The shard count is fixed when the directory is created: keys are routed by hash modulo the count, so
// opening with another count would look for keys in the wrong shard. A different count is refused.

import fs from 'node:fs'
import path from 'node:path'
import { lockFile } from '@ringkv/wal-native'
import { EngineError } from './errors.js'
import { syncDirectory } from './storage/storage.js'

export const manifestName = 'ringkv.json'
export const lockName = 'LOCK'
export const formatVersion = 3
export const routingName = 'fnv1a32-mod'
export const shardsMax = 256

export interface Manifest {
  format: number
  shards: number
  routing: string
}

/**
 * The manifest of the database at `directory`, read without opening it: NOT_A_DATABASE when there is none,
 * WAL_CORRUPT when it does not hold.
 */
export function readDatabaseManifest(directory: string): Manifest {
  const manifestPath = path.join(directory, manifestName)
  if (!fs.existsSync(manifestPath)) {
    throw new EngineError('NOT_A_DATABASE', `${directory} holds no ringkv database (no ${manifestName})`, { details: { directory } })
  }
  return readManifest(manifestPath)
}

/** Whether the database at `directory` is open now (its lock is held), in this process or another. Takes no lock that stays. */
export function isOpenElsewhere(directory: string): boolean {
  let fd: number
  try {
    fd = fs.openSync(path.join(directory, lockName), fs.constants.O_RDONLY)
  } catch {
    return false // no lock file: never opened, or not a database
  }
  try {
    return !lockFile(fd)
  } finally {
    fs.closeSync(fd) // drops the lock if we took it
  }
}

export function shardDirectory(directory: string, shard: number): string {
  return path.join(directory, `shard-${String(shard).padStart(3, '0')}`)
}

export class DatabaseDirectory {
  private lockFd: number | undefined

  private constructor(
    readonly path: string,
    readonly shards: number,
    lockFd: number,
  ) {
    this.lockFd = lockFd
  }

  /**
   * Creates the directory if missing, takes its lock, and reads or writes its manifest. `shards` is
   * what the caller asked for (undefined: the recorded count, or `shardsDefault` for a new directory).
   */
  static open(directory: string, shards: number | undefined, shardsDefault: number): DatabaseDirectory {
    fs.mkdirSync(directory, { recursive: true })
    const lockFd = fs.openSync(path.join(directory, lockName), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644)
    let locked = false
    try {
      locked = lockFile(lockFd)
      if (!locked) {
        throw new EngineError('ENGINE_LOCKED', `${directory} is already open (in this process or another)`, {
          details: { directory },
        })
      }
      const manifestPath = path.join(directory, manifestName)
      let count: number
      if (fs.existsSync(manifestPath)) {
        const manifest = readManifest(manifestPath)
        if (shards !== undefined && shards !== manifest.shards) {
          throw new EngineError(
            'SHARD_COUNT_MISMATCH',
            `${directory} was created with ${manifest.shards} shards; it cannot be opened with ${shards} ` +
              '(keys are routed by hash modulo the shard count). Omit `shards` to use the recorded count.',
            { details: { recorded: manifest.shards, requested: shards } },
          )
        }
        count = manifest.shards
      } else {
        count = shards ?? shardsDefault
        writeManifest(directory, manifestPath, { format: formatVersion, shards: count, routing: routingName })
      }
      return new DatabaseDirectory(directory, count, lockFd)
    } catch (error) {
      fs.closeSync(lockFd) // closing the descriptor also drops the lock, if we held it
      throw error
    }
  }

  /** Drops the lock. */
  release(): void {
    if (this.lockFd === undefined) return
    fs.closeSync(this.lockFd)
    this.lockFd = undefined
  }
}

/**
 * Prepares `target` for a backup of a database of `shards` shards at `source`: refuses a target that is the
 * database, inside it or around it, or that exists and is not empty (BACKUP_TARGET_INVALID); creates it and
 * writes its manifest. The shards' files are the shards' to copy (checkpoint/backup.ts).
 */
export function prepareBackupTarget(source: string, target: string, shards: number): void {
  const inside = (child: string, parent: string): boolean => {
    const relative = path.relative(parent, child)
    return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative))
  }
  const refuse = (reason: string): never => {
    throw new EngineError('BACKUP_TARGET_INVALID', `cannot back ${source} up into ${target}: ${reason}`, {
      details: { source, target, reason },
    })
  }
  const real = (directory: string): string => {
    try {
      return fs.realpathSync(directory)
    } catch {
      return directory
    }
  }
  if (inside(real(target), real(source)) || inside(real(source), real(target)))
    refuse('it is the database itself, or inside it, or holds it')
  if (fs.existsSync(target) && (!fs.statSync(target).isDirectory() || fs.readdirSync(target).length > 0)) {
    refuse('it exists and is not an empty directory')
  }
  fs.mkdirSync(target, { recursive: true })
  writeManifest(target, path.join(target, manifestName), { format: formatVersion, shards, routing: routingName })
}

function readManifest(manifestPath: string): Manifest {
  const text = fs.readFileSync(manifestPath, 'utf8')
  let manifest: Manifest
  try {
    manifest = JSON.parse(text) as Manifest
  } catch (error) {
    throw new EngineError('WAL_CORRUPT', `${manifestPath} is not valid JSON`, { cause: error })
  }
  if (manifest.format !== formatVersion || manifest.routing !== routingName) {
    throw new EngineError(
      'WAL_CORRUPT',
      `${manifestPath} has format ${manifest.format} / routing ${manifest.routing}; this version reads format ${formatVersion} / ${routingName}`,
    )
  }
  if (!Number.isInteger(manifest.shards) || manifest.shards < 1 || manifest.shards > shardsMax) {
    throw new EngineError('WAL_CORRUPT', `${manifestPath} records an impossible shard count ${manifest.shards}`)
  }
  return manifest
}

/** Writes the manifest atomically and durably: a temp file, fsync, rename, fsync of the directory. */
function writeManifest(directory: string, manifestPath: string, manifest: Manifest): void {
  const temporary = `${manifestPath}.tmp`
  const fd = fs.openSync(temporary, 'w', 0o644)
  try {
    fs.writeSync(fd, `${JSON.stringify(manifest)}\n`)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(temporary, manifestPath)
  syncDirectory(directory)
}
