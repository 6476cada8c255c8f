// Unit tests of the Ring against the real kernel: every assertion is on a real CQE, a real file, a real errno.
// Tests that need something this machine may lack (io_uring, root to mount a tmpfs) skip and print why.
// A programmer error (EBADF, EFAULT) must escape the ring as an uncaught exception: those tests run the ring in
// a worker thread, as a shard does, and watch the worker fail.

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import { afterAll, describe, expect, it } from 'vitest'
import {
  EAGAIN,
  EBADF,
  EBADFD,
  EBUSY,
  ECANCELED,
  EDQUOT,
  EEXIST,
  EFAULT,
  EFBIG,
  EINTR,
  EINVAL,
  EIO,
  ENOSPC,
  ENXIO,
  EOPNOTSUPP,
  EROFS,
  errnoName,
  errnoOutcome,
} from './errno.js'
import { lockFile } from './lock.js'
import { type Completion, probeIoUring, Ring, RingIoError, type RingWait, ringEntriesMax } from './ring.js'

const probe = probeIoUring()
const ioUringMissing = probe.available ? null : `io_uring unavailable (${errnoName(probe.errno)}): ${probe.reason}`
if (ioUringMissing !== null) console.warn(`SKIP ring tests: ${ioUringMissing}`)

const temporaryDirectory = fs.mkdtempSync(path.join(os.tmpdir(), 'ringkv-wal-native-'))
let tmpfsMounted = false
afterAll(() => {
  if (tmpfsMounted) execFileSync('umount', [mountPoint])
  fs.rmSync(temporaryDirectory, { recursive: true, force: true })
})

function temporaryFile(name: string, flags = 'w+'): number {
  return fs.openSync(path.join(temporaryDirectory, name), flags)
}

function submitAndWait(ring: Ring, waitCount: number): Promise<Completion[]> {
  return new Promise((resolve, reject) =>
    ring.submitAndWait(waitCount, (error, completions) => (error === null ? resolve(completions) : reject(error))),
  )
}

function writeDurable(ring: Ring, fd: number, buffer: Uint8Array, fileOffset: number): Promise<RingIoError | null> {
  return new Promise((resolve) => ring.writeDurable(fd, buffer, fileOffset, resolve))
}

function patterned(length: number, seed: number): Buffer {
  const buffer = Buffer.alloc(length)
  for (let index = 0; index < length; index++) buffer[index] = (index * 31 + seed * 7) & 0xff
  return buffer
}

const waits: RingWait[] = ['threadpool', 'thread']

let built: { entry: string; nativeEntry: string } | null = null

/** A worker thread cannot run TypeScript: build the package (once) and load the output. */
function builtPackage(): { entry: string; nativeEntry: string } {
  if (built !== null) return built
  const packageDirectory = fileURLToPath(new URL('..', import.meta.url))
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '-b', packageDirectory], { stdio: 'inherit' })
  built = {
    entry: pathToFileURL(path.join(packageDirectory, 'dist/index.js')).href,
    nativeEntry: pathToFileURL(path.join(packageDirectory, 'dist/native.js')).href,
  }
  return built
}

/** How a worker thread's writeDurable ended: what it reported first, whether it called back, what it threw. */
interface WorkerWriteOutcome {
  fd: number | null
  /** The fd was closed (fstat said EBADF) right before writeDurable. */
  fdClosed: boolean | null
  /** Free fd numbers kept below `fd`, so that an open elsewhere in the process takes one of them, not `fd`. */
  freeBelow: number | null
  /** The callback's error code (null for success); undefined when it never called back. */
  calledBack: string | null | undefined
  /** The worker's uncaught exception, as the parent sees it. */
  thrown: (Error & { code?: string; errno?: number; operation?: string }) | undefined
  exitCode: number
}

/**
 * In a worker thread, set up a ring waiting on `wait`, prepare `scenario` (in the worker, with `fs` and
 * wal-native's `native` module in scope; it returns `{ fd, buffer }` and may set `report`), writeDurable it
 * at offset 0, and report how that ended.
 */
async function writeInWorker(wait: RingWait, scenario: string): Promise<WorkerWriteOutcome> {
  const { entry, nativeEntry } = builtPackage()
  const workerSource = `
    const { parentPort, workerData } = require('node:worker_threads');
    const fs = require('node:fs');
    Promise.all([import(workerData.entry), import(workerData.nativeEntry)]).then(([{ Ring }, native]) => {
      const ring = Ring.setup(8, { wait: workerData.wait });
      const report = {};
      const { fd, buffer } = (() => { ${scenario} })();
      parentPort.postMessage({ ...report, fd });
      ring.writeDurable(fd, buffer, 0, (error) =>
        parentPort.postMessage({ calledBack: error === null ? null : error.code }),
      );
    });
  `
  const worker = new Worker(workerSource, {
    eval: true,
    workerData: { entry, nativeEntry, wait, directory: temporaryDirectory },
  })
  const outcome: WorkerWriteOutcome = {
    fd: null,
    fdClosed: null,
    freeBelow: null,
    calledBack: undefined,
    thrown: undefined,
    exitCode: -1,
  }
  worker.on('message', (message: Partial<WorkerWriteOutcome>) => Object.assign(outcome, message))
  worker.on('error', (error) => (outcome.thrown = error))
  outcome.exitCode = await new Promise<number>((resolve) => worker.once('exit', resolve))
  return outcome
}

describe.skipIf(ioUringMissing !== null)('Ring', () => {
  it('rejects bad entries with RangeError and probes io_uring as available', () => {
    for (const entries of [0, -1, 1.5, Number.NaN, ringEntriesMax + 1, 2 ** 31]) {
      expect(() => Ring.setup(entries)).toThrow(RangeError)
    }
    expect(probeIoUring()).toEqual({ available: true })
    expect(() => Ring.setup(8, { wait: 'spin' as RingWait })).toThrow(RangeError)
    const ring = Ring.setup(ringEntriesMax)
    expect(ring.sqEntries).toBe(ringEntriesMax)
    ring.close()
  })

  describe.each(waits)('waiting on the %s', (wait) => {
    it('writes and fdatasyncs through a linked pair (low level)', async () => {
      const ring = Ring.setup(8, { wait })
      const fd = temporaryFile('linked.dat')
      const data = patterned(10_000, 1)
      ring.prepWrite(fd, data, 0, 1, true)
      ring.prepFsync(fd, 2, true, false)
      expect(ring.inFlight).toBe(2)
      const completions = await submitAndWait(ring, 2)
      expect(completions.map((completion) => completion.userData).sort()).toEqual([1, 2])
      const write = completions.find((completion) => completion.userData === 1)!
      const fsync = completions.find((completion) => completion.userData === 2)!
      expect(write.result).toBe(data.byteLength)
      expect(fsync.result).toBe(0)
      expect(ring.inFlight).toBe(0)
      expect(fs.readFileSync(path.join(temporaryDirectory, 'linked.dat')).equals(data)).toBe(true)
      fs.closeSync(fd)
      ring.close()
    })

    it('hands a low-level caller the raw -EBADF of a write to a read-only fd and -ECANCELED of its fsync', async () => {
      fs.writeFileSync(path.join(temporaryDirectory, 'readonly.dat'), 'x')
      const fd = temporaryFile('readonly.dat', 'r')
      const ring = Ring.setup(8, { wait })
      ring.prepWrite(fd, Buffer.from('nope'), 0, 10, true)
      ring.prepFsync(fd, 11, true, false)
      const completions = await submitAndWait(ring, 2)
      expect(completions.find((completion) => completion.userData === 10)!.result).toBe(-EBADF)
      expect(completions.find((completion) => completion.userData === 11)!.result).toBe(-ECANCELED)
      expect(ring.inFlight).toBe(0)
      fs.closeSync(fd)
      ring.close()
    })

    it('calls back with an I/O error (ENOSPC from /dev/full) as a RingIoError', async () => {
      const ring = Ring.setup(8, { wait })
      const fd = fs.openSync('/dev/full', 'w')
      const error = await writeDurable(ring, fd, patterned(4096, 6), 0)
      expect(error).toBeInstanceOf(RingIoError)
      expect(error!.code).toBe('ENOSPC')
      expect(error!.errno).toBe(ENOSPC)
      expect(error!.operation).toBe('write')
      expect(ring.inFlight).toBe(0)
      fs.closeSync(fd)
      ring.close()
    })

    it('completes many concurrent durable writes at different offsets, past the ring size', async () => {
      const ring = Ring.setup(8, { wait }) // 8 SQ slots = 4 write + fsync pairs: the rest wait in pendingWrites.
      const fd = temporaryFile('concurrent.dat')
      const otherFd = temporaryFile('concurrent-other.dat')
      const count = 200
      const blockBytes = 4096
      const blocks = Array.from({ length: count }, (_, index) => patterned(blockBytes, index))
      const results = Promise.all(
        blocks.flatMap((block, index) => [
          writeDurable(ring, fd, block, index * blockBytes),
          writeDurable(ring, otherFd, block, (count - 1 - index) * blockBytes),
        ]),
      )
      expect(ring.pending).toBeGreaterThan(0)
      expect((await results).every((error) => error === null)).toBe(true)
      expect(ring.inFlight).toBe(0)
      expect(ring.pending).toBe(0)
      const file = fs.readFileSync(path.join(temporaryDirectory, 'concurrent.dat'))
      const other = fs.readFileSync(path.join(temporaryDirectory, 'concurrent-other.dat'))
      expect(file.equals(Buffer.concat(blocks))).toBe(true)
      expect(other.equals(Buffer.concat([...blocks].reverse()))).toBe(true)
      fs.closeSync(fd)
      fs.closeSync(otherFd)
      ring.close()
    })

    it('asserts its queue limits and its single wait', async () => {
      const ring = Ring.setup(2, { wait })
      const fd = temporaryFile('limits.dat')
      ring.prepFsync(fd, 1, true, false)
      expect(() => ring.prepFsync(fd, 1, true, false)).toThrow(/already in flight/)
      ring.prepFsync(fd, 2, true, false)
      expect(() => ring.prepFsync(fd, 3, true, false)).toThrow(/ring is full/)
      expect(() => ring.close()).toThrow(/in flight/)
      const waited = submitAndWait(ring, 2)
      expect(() => ring.submitAndWait(1, () => {})).toThrow(/already in flight/)
      expect((await waited).map((completion) => completion.result)).toEqual([0, 0])
      expect(() => ring.prepWrite(fd, new Uint8Array(0), 0, 4, false)).toThrow(RangeError)
      expect(() => ring.prepWrite(fd, new Uint8Array(1), -1, 4, false)).toThrow(RangeError)
      fs.closeSync(fd)
      ring.close()
      expect(() => ring.prepFsync(fd, 5, true, false)).toThrow(/closed/)
    })
  })

  it('keeps a worker thread timer firing during a 64 MiB durable write (wait: threadpool)', async () => {
    const { entry } = builtPackage()
    const file = path.join(temporaryDirectory, 'long-commit.dat')
    const workerSource = `
      const { parentPort, workerData } = require('node:worker_threads');
      const fs = require('node:fs');
      import(workerData.entry).then(({ Ring }) => {
        const ring = Ring.setup(8);
        const fd = fs.openSync(workerData.file, 'w+');
        const buffer = Buffer.alloc(64 * 1024 * 1024, 0x5a);
        const intervalMs = 2;
        let ticks = 0;
        let last = performance.now();
        let gapMaxMs = 0;
        const timer = setInterval(() => {
          const now = performance.now();
          gapMaxMs = Math.max(gapMaxMs, now - last);
          last = now;
          ticks++;
        }, intervalMs);
        const started = performance.now();
        ring.writeDurable(fd, buffer, 0, (error) => {
          const elapsedMs = performance.now() - started;
          clearInterval(timer);
          const size = fs.fstatSync(fd).size;
          fs.closeSync(fd);
          ring.close();
          parentPort.postMessage({ error: error && error.message, ticks, elapsedMs, gapMaxMs, intervalMs, size });
        });
      });
    `
    const worker = new Worker(workerSource, { eval: true, workerData: { entry, file } })
    const result = await new Promise<{
      error: string | null
      ticks: number
      elapsedMs: number
      gapMaxMs: number
      intervalMs: number
      size: number
    }>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    })
    await worker.terminate()
    console.log(
      `64 MiB writeDurable: ${result.elapsedMs.toFixed(1)} ms, ${result.ticks} timer ticks, ` +
        `largest gap between ticks ${result.gapMaxMs.toFixed(1)} ms`,
    )
    expect(result.error).toBeNull()
    expect(result.size).toBe(64 * 1024 * 1024)
    // A blocked event loop would show one tick and one gap as long as the commit.
    expect(result.ticks).toBeGreaterThanOrEqual(Math.max(3, Math.floor(result.elapsedMs / result.intervalMs / 4)))
    expect(result.gapMaxMs).toBeLessThan(Math.max(50, result.elapsedMs / 4))
  })
})

// EBADF and EFAULT from a durable write are bugs in ringkv or its caller: the ring throws RingBugError from where
// it runs callbacks, the write never calls back, and the thread (here a worker, as for a shard) fails.
describe.skipIf(ioUringMissing !== null).each(waits)('Ring meeting a programmer error (wait: %s)', (wait) => {
  function expectBug(outcome: WorkerWriteOutcome, errnoValue: number): void {
    expect(outcome.calledBack).toBeUndefined()
    expect(outcome.thrown).toBeDefined()
    expect(outcome.thrown!.name).toBe('RingBugError')
    expect(outcome.thrown!.code).toBe(errnoName(errnoValue))
    expect(outcome.thrown!.errno).toBe(errnoValue)
    expect(outcome.thrown!.operation).toBe('write')
    expect(outcome.thrown!.message).toContain(`fd ${outcome.fd} at offset 0`)
    expect(outcome.exitCode).toBe(1)
  }

  it('throws RingBugError EBADF for a write to a closed fd, and never calls back', async () => {
    const outcome = await writeInWorker(
      wait,
      `
      // Sixteen descriptors opened first and closed after the file's: the kernel hands out the lowest free number,
      // so an open anywhere else in the process takes one of those, and the closed fd's number stays unused.
      const placeholders = Array.from({ length: 16 }, () => fs.openSync('/dev/null', 'r'));
      const fd = fs.openSync(workerData.directory + '/closed-' + workerData.wait + '.dat', 'w');
      fs.closeSync(fd);
      for (const placeholder of placeholders) fs.closeSync(placeholder);
      report.freeBelow = placeholders.filter((placeholder) => placeholder < fd).length;
      try {
        fs.fstatSync(fd);
        report.fdClosed = false;
      } catch (error) {
        report.fdClosed = error.code === 'EBADF';
      }
      return { fd, buffer: Buffer.alloc(4096, 1) };
      `,
    )
    expect(outcome.fdClosed).toBe(true)
    expect(outcome.freeBelow).toBe(16)
    expectBug(outcome, EBADF)
  })

  it('throws RingBugError EBADF for a write to an fd not open for writing', async () => {
    const outcome = await writeInWorker(
      wait,
      `
      const file = workerData.directory + '/read-only-' + workerData.wait + '.dat';
      fs.writeFileSync(file, 'x');
      return { fd: fs.openSync(file, 'r'), buffer: Buffer.from('nope') };
      `,
    )
    expectBug(outcome, EBADF)
  })

  it('throws RingBugError EFAULT for a write from memory the kernel cannot read', async () => {
    // A Uint8Array over a PROT_NONE anonymous mapping: a real address the kernel refuses to read (EFAULT), that
    // stays mapped (so nothing else can be mapped there meanwhile), and that JavaScript never touches.
    const outcome = await writeInWorker(
      wait,
      `
      const protNone = 0, mapPrivate = 0x02, mapAnonymous = 0x20;
      const pointer = native.mmap(4096, protNone, mapPrivate | mapAnonymous, -1, 0);
      if (pointer === native.mapFailed) throw new Error('mmap of a PROT_NONE page failed');
      const fd = fs.openSync(workerData.directory + '/unreadable-' + workerData.wait + '.dat', 'w');
      return { fd, buffer: new Uint8Array(native.view(pointer, 4096)) };
      `,
    )
    expectBug(outcome, EFAULT)
  })
})

// A small tmpfs gives real short writes: a write larger than the space left gets the bytes that fit, and the
// next one gets ENOSPC. Truncating a ballast file on the same tmpfs frees space between the two.
const mountPoint = path.join(temporaryDirectory, 'tmpfs')
const tmpfsBytes = 64 * 1024

/** Mount the small tmpfs, or say why it cannot be. */
function mountTmpfs(): string | null {
  if (ioUringMissing !== null) return ioUringMissing
  if (process.getuid?.() !== 0) return 'not root: cannot mount a tmpfs for short writes'
  try {
    fs.mkdirSync(mountPoint)
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsBytes}`, 'tmpfs', mountPoint], { stdio: 'pipe' })
    tmpfsMounted = true
    return null
  } catch (error) {
    return `cannot mount a tmpfs: ${(error as Error).message.split('\n')[0]}`
  }
}
const mountMissing = mountTmpfs()
if (mountMissing !== null) console.warn(`SKIP short-write tests: ${mountMissing}`)

describe.skipIf(mountMissing !== null).each(waits)('Ring on a full tmpfs (wait: %s)', (wait) => {
  function clear(): void {
    for (const name of fs.readdirSync(mountPoint)) fs.rmSync(path.join(mountPoint, name))
  }

  it('completes a short write by resubmitting the rest with a new linked fdatasync', async () => {
    clear()
    const ballast = path.join(mountPoint, 'ballast')
    fs.writeFileSync(ballast, Buffer.alloc(tmpfsBytes / 2))
    const fd = fs.openSync(path.join(mountPoint, 'log'), 'w+')
    const ring = Ring.setup(8, { wait })
    const shortWrites: Array<[number, number]> = []
    ring.shortWriteHook = (_fd, bytesWritten, bytesRemaining) => {
      shortWrites.push([bytesWritten, bytesRemaining])
      fs.truncateSync(ballast, 0) // Make room, so the resubmitted rest fits.
    }
    const data = patterned(tmpfsBytes, 3)
    const error = await writeDurable(ring, fd, data, 0)
    expect(error).toBeNull()
    expect(shortWrites).toEqual([[tmpfsBytes / 2, tmpfsBytes / 2]])
    expect(ring.shortWrites).toBe(1)
    expect(fs.readFileSync(path.join(mountPoint, 'log')).equals(data)).toBe(true)
    fs.closeSync(fd)
    ring.close()
  })

  it('reports ENOSPC, directly and after a short write', async () => {
    clear()
    const ring = Ring.setup(8, { wait })
    const fd = fs.openSync(path.join(mountPoint, 'log'), 'w+')
    const before = ring.shortWrites
    const shortThenFull = await writeDurable(ring, fd, patterned(tmpfsBytes * 2, 4), 0)
    expect(shortThenFull).toBeInstanceOf(RingIoError)
    expect(shortThenFull!.code).toBe('ENOSPC')
    expect(shortThenFull!.operation).toBe('write')
    expect(ring.shortWrites).toBe(before + 1)
    expect(fs.fstatSync(fd).size).toBe(tmpfsBytes)

    const full = await writeDurable(ring, fd, patterned(4096, 5), tmpfsBytes)
    expect(full).toBeInstanceOf(RingIoError)
    expect(full!.code).toBe('ENOSPC')
    expect(ring.shortWrites).toBe(before + 1)
    fs.closeSync(fd)
    ring.close()
  })
})

describe('lockFile', () => {
  it('locks once per open file description', () => {
    const file = path.join(temporaryDirectory, 'lock')
    const first = fs.openSync(file, 'w')
    const second = fs.openSync(file, 'r')
    expect(lockFile(first)).toBe(true)
    expect(lockFile(first)).toBe(true) // Re-locking one's own lock is a no-op.
    expect(lockFile(second)).toBe(false)
    fs.closeSync(first)
    expect(lockFile(second)).toBe(true)
    fs.closeSync(second)
    expect(() => lockFile(second)).toThrow(/EBADF/)
  })
})

describe('errnoName', () => {
  it('names known errnos and keeps the number of unknown ones', () => {
    expect(errnoName(5)).toBe('EIO')
    expect(errnoName(28)).toBe('ENOSPC')
    expect(errnoName(125)).toBe('ECANCELED')
    expect(errnoName(4242)).toBe('ERRNO_4242')
  })
})

describe("errnoOutcome (the ring's errno table)", () => {
  it("'retry': io_uring_enter is called again after EINTR, EAGAIN and EBUSY", () => {
    for (const errnoValue of [EINTR, EAGAIN, EBUSY]) expect(errnoOutcome('enter', errnoValue)).toBe('retry')
  })

  it("'io': I/O failures reach the write callback as RingIoError", () => {
    for (const errnoValue of [EIO, ENOSPC, EDQUOT, EFBIG, EROFS, EINVAL]) {
      expect(errnoOutcome('write', errnoValue)).toBe('io')
    }
    for (const errnoValue of [EIO, ENOSPC, EDQUOT, EROFS, EINVAL]) expect(errnoOutcome('fsync', errnoValue)).toBe('io')
  })

  it("'bug': EBADF and EFAULT are programmer errors, for every operation that can meet them", () => {
    expect(errnoOutcome('write', EBADF)).toBe('bug')
    expect(errnoOutcome('write', EFAULT)).toBe('bug')
    expect(errnoOutcome('fsync', EBADF)).toBe('bug')
    for (const errnoValue of [EBADF, EBADFD, EFAULT, EINVAL, EOPNOTSUPP, EEXIST]) {
      expect(errnoOutcome('enter', errnoValue)).toBe('bug')
    }
  })

  it("'unexpected': an errno outside the table (the error built from it names errno and operation)", () => {
    expect(errnoOutcome('write', ECANCELED)).toBe('unexpected')
    expect(errnoOutcome('fsync', ECANCELED)).toBe('unexpected')
    expect(errnoOutcome('enter', ENXIO)).toBe('unexpected')
    expect(errnoOutcome('write', 4242)).toBe('unexpected')
  })
})
