// I/O errors while running, on a real ext4 on a loop device:
// - EROFS: mounted with errors=remount-ro, then /sys/fs/ext4/<dev>/trigger_fs_error makes the kernel
//   treat the file system as damaged; every later write and fdatasync fails with EROFS.
// - ENOSPC: a small file system, mostly taken by a filler file, runs out of space under the writer.
// In both: every failure the callers see is an EngineError 'IO_ERROR' whose cause names the errno; the
// writer process does not crash; reads of acknowledged data keep working and never show a failed write;
// close works; and after a remount (or freeing the space) a reopen holds every acknowledged write.
import { execFileSync } from 'node:child_process'
import { readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { open, type Engine } from '@ringkv/engine'
import { baseSeed, crashBackends, CrashModel, expectRecovered, model, skipWithoutBackend, type Workload, Writer } from './harness.js'
import { announceSkip, destroyAllLoopFileSystems, loopSkipReason, LoopFileSystem } from './loopfs.js'
import { summarizeErrors } from './report.js'

const shards = 2

afterAll(destroyAllLoopFileSystems)

/** Waits for the writer to finish by itself (every client stopped on its error), or kills it after `ms`. */
async function writerFinished(writer: Writer, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const timer = setTimeout(() => writer.child.kill('SIGKILL'), ms)
  try {
    return await writer.exited
  } finally {
    clearTimeout(timer)
  }
}

/** What every fault test checks about the writer once it has finished. */
function expectHonestFailure(writer: Writer, where: string, causeCodes: string[]): Map<string, number> {
  const description = writer.describe()
  expect(writer.fatal, `${where}: the writer process crashed\n${description}`).toBeUndefined()
  expect(writer.protocolProblems, where).toEqual([])
  expect(writer.errors.length, `${where}: no write failed; the fault did not reach the engine\n${description}`).toBeGreaterThan(0)
  const dishonest = writer.errors.filter((error) => error.code !== 'IO_ERROR' || !causeCodes.includes(error.causeCode))
  expect(dishonest, `${where}: errors that are not IO_ERROR with cause ${causeCodes.join('/')}\n${description}`).toEqual([])
  // READ <ok> <bad> <failed> <first problem>
  expect(writer.readLine, `${where}: the writer never checked its reads\n${description}`).toBeDefined()
  const [ok, bad, failed, ...problem] = writer.readLine!.split(' ')
  expect({ bad: Number(bad), failed: Number(failed), problem: problem.join(' ') }, `${where}: reads after the failure`).toEqual({
    bad: 0,
    failed: 0,
    problem: '-',
  })
  expect(Number(ok), `${where}: reads checked`).toBeGreaterThan(0)
  expect(writer.closedLine, `${where}: close after the failure\n${description}`).toBe('ok')
  const counts = new Map<string, number>()
  summarizeErrors(writer.errors, counts)
  return counts
}

describe('I/O errors while running (ext4 on a loop device)', () => {
  const skip = announceSkip('I/O error tests', loopSkipReason(['ext4']))

  for (const backend of crashBackends()) {
    it.skipIf(skip !== undefined)(`${backend}: EROFS (errors=remount-ro + trigger_fs_error)`, async (context) => {
      const fileSystem = LoopFileSystem.create({ kind: 'ext4', sizeBytes: 256 * 1024 * 1024, mountOptions: 'errors=remount-ro' })
      try {
        await skipWithoutBackend(context, `EROFS with ${backend}`, backend, fileSystem.mountPoint)
        const seed = model.mix(baseSeed, 4, backend === 'io_uring' ? 1 : 2)
        const where = `EROFS ${backend} (RINGKV_CRASH_SEED=${baseSeed})`
        const dir = join(fileSystem.mountPoint, 'db')
        const crashModel = new CrashModel(model.workloadDefaults, seed)
        const writer = new Writer(crashModel.writerConfig(dir, backend, shards))
        await writer.ready
        expect(writer.openFailure, where).toBeUndefined()
        await writer.acknowledgements(200 + model.random(seed).integer(2000))
        fileSystem.triggerExt4Error()
        const exit = await writerFinished(writer, 60_000)
        expect(exit, `${where}: the writer must finish by itself\n${writer.describe()}`).toEqual({ code: 0, signal: null })
        // An fdatasync already waiting on the journal when it aborts fails with EIO (jbd2), later ones with EROFS.
        const counts = expectHonestFailure(writer, where, ['EROFS', 'EIO'])
        await fileSystem.remount()
        expectRecovered(await crashModel.check(dir, backend, shards, writer.acknowledged), dir, writer, where)
        console.log(
          `[crash] ${where}: ${writer.acknowledgementCount} acknowledged, errors ${JSON.stringify(Object.fromEntries(counts))}; recovered`,
        )
      } finally {
        fileSystem.destroy()
      }
    })

    it.skipIf(skip !== undefined)(
      `${backend}: ENOSPC during a checkpoint: compact() fails with IO_ERROR, the shard goes on, a reopen recovers everything`,
      async (context) => {
        const fileSystem = LoopFileSystem.create({ kind: 'ext4', sizeBytes: 64 * 1024 * 1024 })
        try {
          await skipWithoutBackend(context, `ENOSPC during a checkpoint with ${backend}`, backend, fileSystem.mountPoint)
          const dir = join(fileSystem.mountPoint, 'db')
          const valueOf = (round: number, index: number): string => `${round}:${index}:`.padEnd(2048, 'c')
          const keys = 2000 // about 4 MiB of live data
          const writeRound = (db: Engine, round: number): Promise<unknown> =>
            Promise.all(Array.from({ length: keys }, (_, index) => db.put(`key-${index}`, valueOf(round, index))))
          let db = await open(dir, { shards: 1, backend, segmentBytes: 1024 * 1024, autoCheckpoint: false })
          await writeRound(db, 1)
          await db.compact() // the previous checkpoint, which must stay usable
          await writeRound(db, 2)
          await new Promise((resolve) => setTimeout(resolve, 200)) // the log's zero-fill ahead settles
          // Leave about 1 MiB: less than the 4 MiB checkpoint needs.
          const filler = join(fileSystem.mountPoint, 'filler')
          const freeBytes = Number(
            execFileSync('df', ['-B1', '--output=avail', fileSystem.mountPoint], { encoding: 'utf8' }).split('\n')[1],
          )
          execFileSync('fallocate', ['-l', String(Math.max(0, freeBytes - 1024 * 1024)), filler])
          const failure = await db.compact().then(
            () => undefined,
            (error: unknown) => error,
          )
          expect(failure).toMatchObject({ name: 'EngineError', code: 'IO_ERROR', cause: { code: 'ENOSPC' } })
          const stats = db.stats().shards[0]!
          expect(stats.checkpointFailures).toBe(1)
          expect(readdirSync(join(dir, 'shard-000')).filter((name) => name.endsWith('.tmp'))).toEqual([])
          for (let index = 0; index < keys; index += 97)
            expect(Buffer.from((await db.get(`key-${index}`))!).toString()).toBe(valueOf(2, index))
          rmSync(filler)
          await db.put('after', 'the space was freed') // the log never failed: the shard goes on
          await db.close()
          db = await open(dir, { backend })
          expect(db.recovery[0]!.checkpointSequence).toBe(stats.checkpointSequence) // the previous checkpoint
          for (let index = 0; index < keys; index++) expect(Buffer.from((await db.get(`key-${index}`))!).toString()).toBe(valueOf(2, index))
          expect(Buffer.from((await db.get('after'))!).toString()).toBe('the space was freed')
          await db.close()
        } finally {
          fileSystem.destroy()
        }
      },
      120_000,
    )

    it.skipIf(skip !== undefined)(`${backend}: ENOSPC (a small file system fills up)`, async (context) => {
      const fileSystem = LoopFileSystem.create({ kind: 'ext4', sizeBytes: 64 * 1024 * 1024 })
      try {
        await skipWithoutBackend(context, `ENOSPC with ${backend}`, backend, fileSystem.mountPoint)
        // Leave about 8 MiB free: the writer fills it within a second or two.
        const filler = join(fileSystem.mountPoint, 'filler')
        const freeBytes = Number(execFileSync('df', ['-B1', '--output=avail', fileSystem.mountPoint], { encoding: 'utf8' }).split('\n')[1])
        execFileSync('fallocate', ['-l', String(Math.max(0, freeBytes - 8 * 1024 * 1024)), filler])
        const seed = model.mix(baseSeed, 5, backend === 'io_uring' ? 1 : 2)
        const where = `ENOSPC ${backend} (RINGKV_CRASH_SEED=${baseSeed})`
        const dir = join(fileSystem.mountPoint, 'db')
        const workload: Workload = {
          ...model.workloadDefaults,
          valueBytesMax: 32 * 1024,
          largeValueOneIn: 8,
          largeValueBytesMax: 512 * 1024,
        }
        const crashModel = new CrashModel(workload, seed)
        const writer = new Writer(crashModel.writerConfig(dir, backend, shards))
        const exit = await writerFinished(writer, 60_000)
        expect(writer.openFailure, where).toBeUndefined()
        expect(exit, `${where}: the writer must finish by itself\n${writer.describe()}`).toEqual({ code: 0, signal: null })
        const counts = expectHonestFailure(writer, where, ['ENOSPC'])
        rmSync(filler)
        expectRecovered(await crashModel.check(dir, backend, shards, writer.acknowledged), dir, writer, where)
        console.log(
          `[crash] ${where}: ${writer.acknowledgementCount} acknowledged, errors ${JSON.stringify(Object.fromEntries(counts))}; recovered`,
        )
      } finally {
        fileSystem.destroy()
      }
    })
  }
})
