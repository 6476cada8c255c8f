#!/usr/bin/env node
// `ringkv`: the operator's command line, installed as the bin of @ringkv/engine. It looks into a database
// without writing it (info, verify: inspect.ts in @ringkv/workers, read-only, no lock kept), and does the
// rest through the engine's own calls (dump, load, get, put, delete, compact, backup open the database as
// any program would, and so need it closed elsewhere). Arguments are parsed by node:util's parseArgs; the
// progress bars (verify and info per shard, load per batch) are cli-progress's, drawn only on a terminal.
//
// Exit codes (also in `ringkv --help` and the README):
export const exitCodes = {
  ok: 0,
  /** verify/info found damage to acknowledged data; get found no such key; load met a bad line. */
  found: 1,
  /** The database cannot be read or opened: not a database, open elsewhere, an I/O error. */
  cannotRead: 2,
  /** Bad arguments (sysexits' EX_USAGE): nothing was read or written. */
  usage: 64,
} as const
//
// The dump format, which load reads: one JSON object per line (NDJSON), {"key":…,"value":…} with each
// part as a string when its bytes are valid UTF-8, else as {"base64":"…"}; or, with --format binary,
// repeated (u32 little-endian key length, key, u32 value length, value). Either round-trips any bytes.
//
// load's rule on bad input: lines are written in batches of --batch (default 1,000) lines, each batch once
// every line of it has been read and parsed, and the next only after it is durable. A bad line stops the
// load before its batch is written: every batch before it is durable, nothing at or after it is written,
// and the line's number is reported. A batch covers several shards, and each shard takes its part
// atomically: after a crash (or SIGKILL) mid-load, every batch reported done is there, and of the batch in
// flight each shard holds all of its part or none.

import fs from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { Presets, SingleBar } from 'cli-progress'
import { EngineError, inspectDatabase, readDatabaseManifest, type DatabaseInspection } from '@ringkv/workers'
import { open, type BatchOperation, type Engine } from './engine.js'
import type { IteratorOptions } from './input.js'

class UsageError extends Error {}

const usage = `ringkv: inspect, verify, dump, load, compact and back up a ringkv database

  ringkv info DIR [--json]              the manifest, and per shard its files, checkpoint, live entries,
                                        log bytes and whether the last shutdown was clean (read-only)
  ringkv verify DIR [--json]            checks every checkpoint and log record (read-only, never repairs)
  ringkv dump DIR [--gt|--gte|--lt|--lte KEY] [--limit N] [--format ndjson|binary]
                                        entries in key order, to standard output
  ringkv load DIR [--batch N] [--shards N] [--format ndjson|binary]
                                        entries from standard input (dump's format), in durable batches
  ringkv get DIR KEY                    a value, to standard output
  ringkv put DIR KEY VALUE              a durable put
  ringkv delete DIR KEY                 a durable delete
  ringkv compact DIR [--json]           checkpoints every shard and drops the log it covers
  ringkv backup DIR TARGET [--json]     a backup into TARGET (absent or empty)

  Keys and values on the command line are UTF-8. --help after a command shows this text.

Exit codes: 0 done; 1 damage found (info, verify), no such key (get), a bad input line (load);
2 the database cannot be read or opened (not a database, open elsewhere, an I/O error); 64 bad arguments.
`

type Format = 'ndjson' | 'binary'

interface Command {
  /** Positional arguments: their names, in order. */
  positionals: string[]
  options: NonNullable<ParseArgsConfig['options']>
  run(positionals: string[], values: Record<string, string | boolean | undefined>): Promise<number>
}

const json = { json: { type: 'boolean' } } as const

const commands: Record<string, Command> = {
  info: { positionals: ['DIR'], options: json, run: ([directory], values) => inspect(directory!, values.json === true, true) },
  verify: { positionals: ['DIR'], options: json, run: ([directory], values) => inspect(directory!, values.json === true, false) },
  dump: {
    positionals: ['DIR'],
    options: {
      gt: { type: 'string' },
      gte: { type: 'string' },
      lt: { type: 'string' },
      lte: { type: 'string' },
      limit: { type: 'string' },
      format: { type: 'string', default: 'ndjson' },
    },
    run: ([directory], values) => dump(directory!, values),
  },
  load: {
    positionals: ['DIR'],
    options: { batch: { type: 'string', default: '1000' }, shards: { type: 'string' }, format: { type: 'string', default: 'ndjson' } },
    run: ([directory], values) => load(directory!, values),
  },
  get: {
    positionals: ['DIR', 'KEY'],
    options: {},
    run: ([directory, key]) =>
      withDatabase(directory!, async (db) => {
        const value = await db.get(key!)
        if (value === undefined) {
          process.stderr.write(`ringkv: no key ${JSON.stringify(key)}\n`)
          return exitCodes.found
        }
        await writeOut(value)
        return exitCodes.ok
      }),
  },
  put: {
    positionals: ['DIR', 'KEY', 'VALUE'],
    options: {},
    run: ([directory, key, value]) => withDatabase(directory!, async (db) => (await db.put(key!, value!), exitCodes.ok)),
  },
  delete: {
    positionals: ['DIR', 'KEY'],
    options: {},
    run: ([directory, key]) => withDatabase(directory!, async (db) => (await db.delete(key!), exitCodes.ok)),
  },
  compact: {
    positionals: ['DIR'],
    options: json,
    run: ([directory], values) =>
      withDatabase(directory!, async (db) => {
        await db.compact()
        report(values.json === true, { compacted: directory, shards: db.stats().shards.map(shardSummary) }, () =>
          db
            .stats()
            .shards.map((shard) => `shard ${shard.shard}: checkpoint ${shard.checkpointSequence}, log ${shard.logDiskBytes} bytes`)
            .join('\n'),
        )
        return exitCodes.ok
      }),
  },
  backup: {
    positionals: ['DIR', 'TARGET'],
    options: json,
    run: ([directory, target], values) =>
      withDatabase(directory!, async (db) => {
        await db.backup(target!)
        report(values.json === true, { backup: target, of: directory }, () => `backed ${directory} up into ${target}`)
        return exitCodes.ok
      }),
  },
}

function shardSummary(shard: ReturnType<Engine['stats']>['shards'][number]): Record<string, number> {
  return {
    shard: shard.shard,
    checkpointSequence: shard.checkpointSequence,
    logDiskBytes: shard.logDiskBytes,
    liveEntries: shard.liveEntries,
  }
}

function report(asJson: boolean, value: unknown, text: () => string): void {
  process.stdout.write(asJson ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`)
}

/** Opens an existing database (never creates one), runs `work`, closes it. */
async function withDatabase(directory: string, work: (db: Engine) => Promise<number>): Promise<number> {
  readDatabaseManifest(directory)
  const db = await open(directory)
  try {
    return await work(db)
  } finally {
    await db.close()
  }
}

/** info (`table`: live entries counted) and verify: the report, and the exit code. */
async function inspect(directory: string, asJson: boolean, table: boolean): Promise<number> {
  let progress: ReturnType<typeof progressBar> | undefined
  const inspection = inspectDatabase(directory, {
    table,
    onShard: (done, total) => (progress ??= progressBar(table ? 'reading shards' : 'verifying shards', total)).update(done),
  })
  progress?.stop()
  const damaged = inspection.shards.some((shard) => shard.damage !== undefined)
  const unreadable = inspection.shards.some((shard) => shard.failure !== undefined)
  report(asJson, { ...inspection, intact: !damaged && !unreadable }, () => describeInspection(inspection, table))
  return unreadable ? exitCodes.cannotRead : damaged ? exitCodes.found : exitCodes.ok
}

function describeInspection(inspection: DatabaseInspection, table: boolean): string {
  const { manifest } = inspection
  const lines = [
    `${inspection.directory}: format ${manifest.format}, ${manifest.shards} shard(s), routing ${manifest.routing}`,
    inspection.openElsewhere
      ? 'open now (its lock is held, here or in another process): what follows is read from files being written'
      : 'not open',
  ]
  for (const shard of inspection.shards) {
    const head = `shard ${shard.shard}: ${shard.intentSegments} intent and ${shard.completionSegments} completion segment(s), log ${shard.logBytes} bytes, checkpoints ${shard.checkpointBytes} bytes`
    lines.push(head)
    if (shard.failure !== undefined) lines.push(`  cannot read: ${shard.failure}`)
    if (shard.damage !== undefined) {
      lines.push(`  DAMAGED: ${shard.damage.message}`)
      if (shard.damage.details !== undefined) lines.push(`  details: ${JSON.stringify(shard.damage.details)}`)
    }
    const recovery = shard.recovery
    if (recovery !== undefined) {
      lines.push(
        `  checkpoint ${recovery.checkpointSequence === 0 ? 'none' : `${recovery.checkpointSequence} (${recovery.checkpointRecords} records)`}, ` +
          `${recovery.batchesReplayed} batch(es) / ${recovery.recordsReplayed} record(s) after it, ` +
          `last shutdown ${recovery.cleanShutdown ? 'clean' : 'not clean'}` +
          (recovery.tailBytesDropped > 0 ? `, ${recovery.tailBytesDropped} bytes of torn tail (${recovery.tailReason ?? ''})` : ''),
      )
      if (table) lines.push(`  live: ${shard.liveEntries} entries, ${shard.liveBytes} bytes`)
      else lines.push('  intact')
    }
  }
  return lines.join('\n')
}

/**
 * A progress bar on standard error when it is a terminal (cli-progress, which draws and redraws it);
 * nothing otherwise, so that scripts and logs get only the report. `total` 0: a count without a bar.
 */
function progressBar(label: string, total: number): { update: (value: number) => void; stop: () => void } {
  if (process.stderr.isTTY !== true) return { update: () => {}, stop: () => {} }
  const format = total === 0 ? `${label} {value}` : `${label} [{bar}] {value}/{total}`
  const bar = new SingleBar({ stream: process.stderr, format, hideCursor: true }, Presets.shades_classic)
  bar.start(total, 0)
  return { update: (value) => bar.update(value), stop: () => bar.stop() }
}

function positiveInteger(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined
  const value = Number(text)
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1)
    throw new UsageError(`--${name} takes a positive integer, got ${text}`)
  return value
}

function formatOf(text: unknown): Format {
  if (text !== 'ndjson' && text !== 'binary') throw new UsageError(`--format takes ndjson or binary, got ${String(text)}`)
  return text
}

async function dump(directory: string, values: Record<string, string | boolean | undefined>): Promise<number> {
  const format = formatOf(values.format)
  const limit = positiveInteger(values.limit as string | undefined, 'limit')
  const range: IteratorOptions = {}
  for (const bound of ['gt', 'gte', 'lt', 'lte'] as const) if (typeof values[bound] === 'string') range[bound] = values[bound] as string
  if (limit !== undefined) range.limit = limit
  return withDatabase(directory, async (db) => {
    const iterator = db.iterator(range)
    try {
      for (;;) {
        const entries = await iterator.nextv(1000)
        if (entries.length === 0) break
        const chunks = entries.map(([key, value]) =>
          format === 'ndjson' ? Buffer.from(`${dumpLine(key, value)}\n`) : binaryRecord(key, value),
        )
        await writeOut(Buffer.concat(chunks))
      }
    } finally {
      await iterator.close()
    }
    return exitCodes.ok
  })
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

function dumpPart(bytes: Uint8Array): string | { base64: string } {
  try {
    return utf8.decode(bytes)
  } catch {
    return { base64: Buffer.from(bytes).toString('base64') }
  }
}

function dumpLine(key: Uint8Array, value: Uint8Array): string {
  return JSON.stringify({ key: dumpPart(key), value: dumpPart(value) })
}

function binaryRecord(key: Uint8Array, value: Uint8Array): Buffer {
  const record = Buffer.alloc(8 + key.length + value.length)
  record.writeUInt32LE(key.length, 0)
  record.set(key, 4)
  record.writeUInt32LE(value.length, 4 + key.length)
  record.set(value, 8 + key.length)
  return record
}

/** A part of a dump line back to bytes; a message for what is wrong with it. */
function loadPart(part: unknown, name: string): Uint8Array | string {
  if (typeof part === 'string') return Buffer.from(part, 'utf8')
  if (typeof part === 'object' && part !== null && typeof (part as { base64?: unknown }).base64 === 'string') {
    const text = (part as { base64: string }).base64
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return `"${name}" has invalid base64`
    return Buffer.from(text, 'base64')
  }
  return `"${name}" must be a string or {"base64": string}`
}

/** The entries of standard input, one at a time with its line (ndjson) or record (binary) number; a string is a bad entry. */
async function* readEntries(format: Format): AsyncGenerator<{ number: number; entry: [Uint8Array, Uint8Array] | string }> {
  let pending: Buffer = Buffer.alloc(0)
  let number = 0
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    for (;;) {
      if (format === 'ndjson') {
        const end = pending.indexOf(10)
        if (end === -1) break
        const line = pending.subarray(0, end).toString('utf8')
        pending = pending.subarray(end + 1)
        number++
        if (line.trim() === '') continue
        yield { number, entry: parseLine(line) }
      } else {
        if (pending.length < 4) break
        const keyLength = pending.readUInt32LE(0)
        if (pending.length < 8 + keyLength) break
        const valueLength = pending.readUInt32LE(4 + keyLength)
        if (pending.length < 8 + keyLength + valueLength) break
        number++
        const key = Buffer.from(pending.subarray(4, 4 + keyLength))
        const value = Buffer.from(pending.subarray(8 + keyLength, 8 + keyLength + valueLength))
        pending = pending.subarray(8 + keyLength + valueLength)
        yield { number, entry: [key, value] }
      }
    }
  }
  if (format === 'ndjson' && pending.toString('utf8').trim() !== '')
    yield { number: number + 1, entry: parseLine(pending.toString('utf8')) }
  else if (format === 'binary' && pending.length > 0)
    yield { number: number + 1, entry: `a truncated record (${pending.length} bytes at the end of the input)` }
}

function parseLine(line: string): [Uint8Array, Uint8Array] | string {
  let parsed: unknown
  try {
    parsed = JSON.parse(line)
  } catch (error) {
    return `not JSON: ${(error as Error).message}`
  }
  if (typeof parsed !== 'object' || parsed === null) return 'not a JSON object'
  const key = loadPart((parsed as { key?: unknown }).key, 'key')
  const value = loadPart((parsed as { value?: unknown }).value, 'value')
  if (typeof key === 'string') return key
  if (typeof value === 'string') return value
  return [key, value]
}

async function load(directory: string, values: Record<string, string | boolean | undefined>): Promise<number> {
  const format = formatOf(values.format)
  const batchSize = positiveInteger(values.batch as string | undefined, 'batch')!
  const shards = positiveInteger(values.shards as string | undefined, 'shards')
  const db = await open(directory, shards === undefined ? {} : { shards })
  const progress = progressBar('entries loaded:', 0)
  let loaded = 0
  try {
    let batch: BatchOperation[] = []
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return
      await db.batch(batch)
      loaded += batch.length
      batch = []
      progress.update(loaded)
    }
    for await (const { number, entry } of readEntries(format)) {
      if (typeof entry === 'string') {
        progress.stop()
        process.stderr.write(
          `ringkv load: ${format === 'ndjson' ? 'line' : 'record'} ${number}: ${entry}; ${loaded} entries loaded before it, none after\n`,
        )
        return exitCodes.found
      }
      batch.push({ type: 'put', key: entry[0], value: entry[1] })
      if (batch.length >= batchSize) await flush()
    }
    await flush()
    return exitCodes.ok
  } finally {
    progress.stop()
    await db.close()
  }
}

function writeOut(bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(bytes, (error) => (error ? reject(error) : resolve())))
}

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage)
    return name === undefined ? exitCodes.usage : exitCodes.ok
  }
  const command = commands[name]
  try {
    if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)}`)
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(usage)
      return exitCodes.ok
    }
    let parsed: ReturnType<typeof parseArgs>
    try {
      parsed = parseArgs({ args: [...rest], options: command.options, allowPositionals: true, strict: true })
    } catch (error) {
      throw new UsageError((error as Error).message)
    }
    if (parsed.positionals.length !== command.positionals.length) {
      throw new UsageError(`${name} takes ${command.positionals.join(' ')}, got ${parsed.positionals.length} argument(s)`)
    }
    return await command.run(parsed.positionals, parsed.values as Record<string, string | boolean | undefined>)
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`ringkv: ${error.message}\n\n${usage}`)
      return exitCodes.usage
    }
    if (error instanceof EngineError) {
      process.stderr.write(`ringkv: ${error.code}: ${error.message}\n`)
      if (error.details !== undefined) process.stderr.write(`details: ${JSON.stringify(error.details)}\n`)
      return error.code === 'WAL_CORRUPT' ? exitCodes.found : exitCodes.cannotRead
    }
    if (error instanceof TypeError || error instanceof RangeError) {
      process.stderr.write(`ringkv: ${error.message}\n`)
      return exitCodes.usage
    }
    process.stderr.write(`ringkv: ${error instanceof Error ? error.message : String(error)}\n`)
    return exitCodes.cannotRead
  }
}

// Run as the `ringkv` command (not when imported).
if (process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(new URL(import.meta.url).pathname)) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (error: unknown) => {
      process.stderr.write(`ringkv: ${String(error)}\n`)
      process.exitCode = exitCodes.cannotRead
    },
  )
}
