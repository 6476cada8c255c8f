// The `ringkv` command, run as a child process, on real databases: each command; dump | load round-trips
// random binary keys and values across shard counts and both formats; verify finds damage to an
// acknowledged batch without changing a byte; load stops at a bad line with its batches before it durable
// and nothing after; bad arguments print the usage and exit 64 without touching the directory.

import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { open, shardOf } from '@ringkv/engine'
import { temporaryDirectory } from './conformance/temp.js'

const cli = fileURLToPath(new URL('../packages/engine/dist/cli.js', import.meta.url))

function ringkv(args: string[], input?: Buffer | string): { status: number; stdout: Buffer; stderr: string } {
  const result = spawnSync(process.execPath, [cli, ...args], { input, maxBuffer: 256 * 1024 * 1024 })
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr.toString() }
}

const directories: (() => void)[] = []
afterAll(() => directories.forEach((remove) => remove()))

function scratch(name: string): string {
  const { directory, remove } = temporaryDirectory(name)
  directories.push(remove)
  return directory
}

/** Every file under `directory` with a hash of its bytes. */
function fingerprint(directory: string): Record<string, string> {
  const files: Record<string, string> = {}
  const walk = (folder: string): void => {
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      const full = path.join(folder, entry.name)
      if (entry.isDirectory()) walk(full)
      else files[path.relative(directory, full)] = createHash('sha256').update(fs.readFileSync(full)).digest('hex')
    }
  }
  walk(directory)
  return files
}

/** A deterministic stream of bytes: entries with random binary keys and values, the empty key among them. */
function randomEntries(count: number, seed: number): Map<string, Buffer> {
  let state = seed
  // The high half of a linear congruential step: its low bits repeat with short periods.
  const next = (): number => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 16
  const entries = new Map<string, Buffer>()
  entries.set('', Buffer.from('the empty key'))
  while (entries.size < count) {
    const key = Buffer.from(Array.from({ length: 1 + (next() % 40) }, () => next() & 0xff))
    // Some valid UTF-8 text (dumped as strings), most arbitrary bytes (dumped as base64).
    const value =
      next() % 3 === 0 ? Buffer.from(`text ${next()} ✓`) : Buffer.from(Array.from({ length: next() % 300 }, () => next() & 0xff))
    entries.set(key.toString('latin1'), value)
  }
  return entries
}

async function contents(directory: string): Promise<Map<string, Buffer>> {
  const db = await open(directory)
  const found = new Map<string, Buffer>()
  for await (const [key, value] of db.iterator()) found.set(Buffer.from(key).toString('latin1'), Buffer.from(value))
  await db.close()
  return found
}

describe('the ringkv command', () => {
  it('put, get, delete, dump, info, verify, compact and backup on a real database', async () => {
    const directory = scratch('cli-commands')
    const db = await open(directory, { shards: 2 })
    await db.batch(
      Array.from({ length: 50 }, (_, index) => ({ type: 'put' as const, key: `k${String(index).padStart(3, '0')}`, value: `v${index}` })),
    )
    await db.close()

    expect(ringkv(['put', directory, 'hello', 'world']).status).toBe(0)
    const got = ringkv(['get', directory, 'hello'])
    expect(got.status).toBe(0)
    expect(got.stdout.toString()).toBe('world')
    expect(ringkv(['delete', directory, 'k001']).status).toBe(0)
    const missing = ringkv(['get', directory, 'k001'])
    expect(missing.status).toBe(1)
    expect(missing.stderr).toContain('no key')

    const dumped = ringkv(['dump', directory, '--gte', 'k010', '--lt', 'k014'])
    expect(dumped.status).toBe(0)
    expect(dumped.stdout.toString().trim().split('\n')).toEqual(
      [10, 11, 12, 13].map((index) => JSON.stringify({ key: `k0${index}`, value: `v${index}` })),
    )
    const limited = ringkv(['dump', directory, '--limit', '3'])
    expect(limited.stdout.toString().trim().split('\n').length).toBe(3)

    const info = ringkv(['info', directory, '--json'])
    expect(info.status).toBe(0)
    const report = JSON.parse(info.stdout.toString()) as {
      manifest: { shards: number }
      openElsewhere: boolean
      intact: boolean
      shards: { liveEntries: number; recovery: { cleanShutdown: boolean } }[]
    }
    expect(report.manifest.shards).toBe(2)
    expect(report.openElsewhere).toBe(false)
    expect(report.intact).toBe(true)
    expect(report.shards.reduce((sum, shard) => sum + shard.liveEntries, 0)).toBe(50) // 50 + hello - k001
    expect(report.shards.every((shard) => shard.recovery.cleanShutdown)).toBe(true)
    expect(ringkv(['info', directory]).stdout.toString()).toMatch(/live: \d+ entries/)

    const verify = ringkv(['verify', directory])
    expect(verify.status).toBe(0)
    expect(verify.stdout.toString()).toContain('intact')

    // Open elsewhere: info says so and still reads; commands that open the database refuse (exit 2).
    const holder = await open(directory)
    try {
      const busy = JSON.parse(ringkv(['info', directory, '--json']).stdout.toString()) as { openElsewhere: boolean }
      expect(busy.openElsewhere).toBe(true)
      const refused = ringkv(['get', directory, 'hello'])
      expect(refused.status).toBe(2)
      expect(refused.stderr).toContain('ENGINE_LOCKED')
    } finally {
      await holder.close()
    }

    const compacted = ringkv(['compact', directory, '--json'])
    expect(compacted.status).toBe(0)
    expect(
      (JSON.parse(compacted.stdout.toString()) as { shards: { checkpointSequence: number }[] }).shards.every(
        (shard) => shard.checkpointSequence > 0,
      ),
    ).toBe(true)
    const target = path.join(scratch('cli-backup'), 'copy')
    expect(ringkv(['backup', directory, target]).status).toBe(0)
    expect(ringkv(['dump', target]).stdout.equals(ringkv(['dump', directory]).stdout)).toBe(true)
    expect(ringkv(['verify', target]).status).toBe(0)
  })

  it('dump | load round-trips random binary keys and values across shard counts, in both formats', async () => {
    const entries = randomEntries(2000, 7)
    const source = scratch('cli-source')
    const db = await open(source, { shards: 3 })
    await db.batch([...entries].map(([key, value]) => ({ type: 'put' as const, key: Buffer.from(key, 'latin1'), value })))
    await db.close()
    for (const [format, shards] of [
      ['ndjson', '1'],
      ['binary', '2'],
    ] as const) {
      const dumped = ringkv(['dump', source, '--format', format])
      expect(dumped.status).toBe(0)
      const target = scratch(`cli-load-${format}`)
      const loaded = ringkv(['load', target, '--shards', shards, '--batch', '300', '--format', format], dumped.stdout)
      expect(loaded.stderr).toBe('')
      expect(loaded.status).toBe(0)
      const found = await contents(target)
      expect(found.size).toBe(entries.size)
      for (const [key, value] of entries) expect(found.get(key)?.equals(value), key).toBe(true)
      expect(ringkv(['dump', target, '--format', format]).stdout.equals(dumped.stdout)).toBe(true)
    }
  })

  it('verify finds damage to an acknowledged batch, says where, exits 1, and changes no byte', async () => {
    const directory = scratch('cli-damage')
    const db = await open(directory, { shards: 1, autoCheckpoint: false })
    for (let batch = 0; batch < 5; batch++) {
      await db.batch(
        Array.from({ length: 20 }, (_, index) => ({ type: 'put' as const, key: `b${batch}-${index}`, value: 'x'.repeat(100) })),
      )
    }
    await db.close()
    // A byte in the middle of the first batch's body (the intent segment starts with it).
    const segment = path.join(directory, 'shard-000', 'intent-00000001.wal')
    const bytes = fs.readFileSync(segment)
    bytes[600] = bytes[600]! ^ 0x40
    fs.writeFileSync(segment, bytes)
    const before = fingerprint(directory)

    const verify = ringkv(['verify', directory])
    expect(verify.status).toBe(1)
    expect(verify.stdout.toString()).toContain('DAMAGED')
    const report = JSON.parse(ringkv(['verify', directory, '--json']).stdout.toString()) as {
      intact: boolean
      shards: { damage: { details: { shard: number; file: string } } | undefined }[]
    }
    expect(report.intact).toBe(false)
    expect(report.shards[0]!.damage?.details.file).toContain('intent-00000001.wal')
    expect(ringkv(['info', directory]).status).toBe(1)
    expect(fingerprint(directory)).toEqual(before)
  })

  it('load stops at a bad line: the batches before it are durable, nothing from its batch on is written', async () => {
    const directory = scratch('cli-bad-line')
    const lines = Array.from({ length: 25 }, (_, index) =>
      JSON.stringify({ key: `line${String(index + 1).padStart(2, '0')}`, value: `${index + 1}` }),
    )
    lines[16] = '{"key": "line17", "value": {"base64": "not base64!"}}'
    const loaded = ringkv(['load', directory, '--batch', '10'], `${lines.join('\n')}\n`)
    expect(loaded.status).toBe(1)
    expect(loaded.stderr).toContain('line 17')
    const found = await contents(directory)
    expect([...found.keys()].sort()).toEqual(Array.from({ length: 10 }, (_, index) => `line${String(index + 1).padStart(2, '0')}`))
  })

  it('a load killed with SIGKILL leaves a database that opens with its batches in order: per shard, all of a batch or none', async () => {
    const directory = scratch('cli-killed-load')
    const shards = 2
    const batch = 1000
    const total = 600_000
    const keyOf = (index: number): string => `k${String(index).padStart(7, '0')}`
    const input = Array.from({ length: total }, (_, index) => `{"key":"${keyOf(index)}","value":"${index}"}\n`).join('')
    const child = spawn(process.execPath, [cli, 'load', directory, '--shards', String(shards), '--batch', String(batch)], {
      stdio: ['pipe', 'ignore', 'ignore'],
    })
    child.stdin.on('error', () => {}) // the pipe breaks when the child is killed
    child.stdin.end(input)
    const exited = new Promise((resolve) => child.on('exit', resolve))
    // Killed once batches have landed, well before the input ends. The segment is zero-filled ahead when it is
    // made, so its size says nothing: wait until its written bytes pass 64 KiB, a few batches' part on this
    // shard (a batch goes only once the one before is durable, so the first is acknowledged by then).
    const segment = path.join(directory, 'shard-000', 'intent-00000001.wal')
    const writtenEnd = (): number => {
      if (!fs.existsSync(segment)) return 0
      const bytes = fs.readFileSync(segment)
      let end = bytes.length
      while (end > 0 && bytes[end - 1] === 0) end--
      return end
    }
    const started = Date.now()
    while (writtenEnd() <= 64 * 1024 && Date.now() - started < 30_000) await new Promise((resolve) => setTimeout(resolve, 5))
    child.kill('SIGKILL')
    await exited

    const db = await open(directory)
    const present = new Set<string>()
    for await (const key of db.keys()) present.add(Buffer.from(key).toString())
    await db.close()
    const batches = Math.ceil(total / batch)
    const keysOf = (index: number): string[] =>
      Array.from({ length: Math.min(batch, total - index * batch) }, (_, offset) => keyOf(index * batch + offset))
    let complete = 0
    while (complete < batches && keysOf(complete).every((key) => present.has(key))) complete++
    expect(complete).toBeGreaterThan(0)
    expect(complete).toBeLessThan(batches) // killed mid-load, or the test proves nothing
    // The batch after the complete ones: on each shard, all of its part or none; nothing after it.
    const next = keysOf(complete)
    for (let shard = 0; shard < shards; shard++) {
      const part = next.filter((key) => shardOf(Buffer.from(key), shards) === shard)
      const landed = part.filter((key) => present.has(key)).length
      expect([0, part.length], `shard ${shard}`).toContain(landed)
    }
    const expectedCount = complete * batch + next.filter((key) => present.has(key)).length
    expect(present.size).toBe(expectedCount)
  })

  it('bad arguments print the usage and exit 64, and touch no directory', () => {
    const directory = path.join(scratch('cli-usage'), 'never')
    const cases = [
      [],
      ['frobnicate', directory],
      ['dump'],
      ['dump', directory, '--limit', '0'],
      ['dump', directory, '--format', 'xml'],
      ['dump', directory, '--nope'],
      ['load', directory, '--batch', 'many'],
      ['put', directory, 'only-a-key'],
      ['get', directory, 'a', 'b'],
    ]
    for (const args of cases) {
      const result = ringkv(args)
      expect(result.status, args.join(' ')).toBe(64)
      expect(result.stdout.toString() + result.stderr, args.join(' ')).toContain('Exit codes')
      expect(fs.existsSync(directory), args.join(' ')).toBe(false)
    }
    expect(ringkv(['verify', directory]).status).toBe(2) // not a database: cannot read
    expect(fs.existsSync(directory)).toBe(false)
    const help = ringkv(['dump', '--help'])
    expect(help.status).toBe(0)
    expect(help.stdout.toString()).toContain('ringkv dump DIR')
  })
})
