// Unit tests of the Ring against the real kernel: every assertion is on a real CQE, a real file, a real errno.
// Tests that need something this machine may lack (io_uring, root to mount a tmpfs) skip and print why.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { ECANCELED, EBADF, errnoName } from './errno.js';
import { lockFile } from './lock.js';
import { type Completion, probeIoUring, Ring, RingIoError, type RingWait, ringEntriesMax } from './ring.js';

const probe = probeIoUring();
const ioUringMissing = probe.available ? null : `io_uring unavailable (${errnoName(probe.errno)}): ${probe.reason}`;
if (ioUringMissing !== null) console.warn(`SKIP ring tests: ${ioUringMissing}`);

const temporaryDirectory = fs.mkdtempSync(path.join(os.tmpdir(), 'ringkv-wal-native-'));
let tmpfsMounted = false;
afterAll(() => {
  if (tmpfsMounted) execFileSync('umount', [mountPoint]);
  fs.rmSync(temporaryDirectory, { recursive: true, force: true });
});

function temporaryFile(name: string, flags = 'w+'): number {
  return fs.openSync(path.join(temporaryDirectory, name), flags);
}

function submitAndWait(ring: Ring, waitCount: number): Promise<Completion[]> {
  return new Promise((resolve, reject) =>
    ring.submitAndWait(waitCount, (error, completions) => (error === null ? resolve(completions) : reject(error))),
  );
}

function writeDurable(ring: Ring, fd: number, buffer: Uint8Array, fileOffset: number): Promise<RingIoError | null> {
  return new Promise((resolve) => ring.writeDurable(fd, buffer, fileOffset, resolve));
}

function patterned(length: number, seed: number): Buffer {
  const buffer = Buffer.alloc(length);
  for (let index = 0; index < length; index++) buffer[index] = (index * 31 + seed * 7) & 0xff;
  return buffer;
}

const waits: RingWait[] = ['threadpool', 'thread'];

describe.skipIf(ioUringMissing !== null)('Ring', () => {
  it('rejects bad entries with RangeError and probes io_uring as available', () => {
    for (const entries of [0, -1, 1.5, Number.NaN, ringEntriesMax + 1, 2 ** 31]) {
      expect(() => Ring.setup(entries)).toThrow(RangeError);
    }
    expect(probeIoUring()).toEqual({ available: true });
    expect(() => Ring.setup(8, { wait: 'spin' as RingWait })).toThrow(RangeError);
    const ring = Ring.setup(ringEntriesMax);
    expect(ring.sqEntries).toBe(ringEntriesMax);
    ring.close();
  });

  describe.each(waits)('waiting on the %s', (wait) => {
    it('writes and fdatasyncs through a linked pair (low level)', async () => {
      const ring = Ring.setup(8, { wait });
      const fd = temporaryFile('linked.dat');
      const data = patterned(10_000, 1);
      ring.prepWrite(fd, data, 0, 1, true);
      ring.prepFsync(fd, 2, true, false);
      expect(ring.inFlight).toBe(2);
      const completions = await submitAndWait(ring, 2);
      expect(completions.map((completion) => completion.userData).sort()).toEqual([1, 2]);
      const write = completions.find((completion) => completion.userData === 1)!;
      const fsync = completions.find((completion) => completion.userData === 2)!;
      expect(write.result).toBe(data.byteLength);
      expect(fsync.result).toBe(0);
      expect(ring.inFlight).toBe(0);
      expect(fs.readFileSync(path.join(temporaryDirectory, 'linked.dat')).equals(data)).toBe(true);
      fs.closeSync(fd);
      ring.close();
    });

    it('fails a write to a read-only fd with EBADF and cancels its linked fsync', async () => {
      fs.writeFileSync(path.join(temporaryDirectory, 'readonly.dat'), 'x');
      const fd = temporaryFile('readonly.dat', 'r');
      const ring = Ring.setup(8, { wait });
      ring.prepWrite(fd, Buffer.from('nope'), 0, 10, true);
      ring.prepFsync(fd, 11, true, false);
      const completions = await submitAndWait(ring, 2);
      expect(completions.find((completion) => completion.userData === 10)!.result).toBe(-EBADF);
      expect(completions.find((completion) => completion.userData === 11)!.result).toBe(-ECANCELED);

      const error = await writeDurable(ring, fd, Buffer.from('nope'), 0);
      expect(error).toBeInstanceOf(RingIoError);
      expect(error!.code).toBe('EBADF');
      expect(error!.errno).toBe(EBADF);
      expect(error!.operation).toBe('write');
      expect(ring.inFlight).toBe(0);
      fs.closeSync(fd);
      ring.close();
    });

    it('completes many concurrent durable writes at different offsets, past the ring size', async () => {
      const ring = Ring.setup(8, { wait }); // 8 SQ slots = 4 write + fsync pairs: the rest wait in pendingWrites.
      const fd = temporaryFile('concurrent.dat');
      const otherFd = temporaryFile('concurrent-other.dat');
      const count = 200;
      const blockBytes = 4096;
      const blocks = Array.from({ length: count }, (_, index) => patterned(blockBytes, index));
      const results = Promise.all(
        blocks.flatMap((block, index) => [
          writeDurable(ring, fd, block, index * blockBytes),
          writeDurable(ring, otherFd, block, (count - 1 - index) * blockBytes),
        ]),
      );
      expect(ring.pending).toBeGreaterThan(0);
      expect((await results).every((error) => error === null)).toBe(true);
      expect(ring.inFlight).toBe(0);
      expect(ring.pending).toBe(0);
      const file = fs.readFileSync(path.join(temporaryDirectory, 'concurrent.dat'));
      const other = fs.readFileSync(path.join(temporaryDirectory, 'concurrent-other.dat'));
      expect(file.equals(Buffer.concat(blocks))).toBe(true);
      expect(other.equals(Buffer.concat([...blocks].reverse()))).toBe(true);
      fs.closeSync(fd);
      fs.closeSync(otherFd);
      ring.close();
    });

    it('asserts its queue limits and its single wait', async () => {
      const ring = Ring.setup(2, { wait });
      const fd = temporaryFile('limits.dat');
      ring.prepFsync(fd, 1, true, false);
      expect(() => ring.prepFsync(fd, 1, true, false)).toThrow(/already in flight/);
      ring.prepFsync(fd, 2, true, false);
      expect(() => ring.prepFsync(fd, 3, true, false)).toThrow(/ring is full/);
      expect(() => ring.close()).toThrow(/in flight/);
      const waited = submitAndWait(ring, 2);
      expect(() => ring.submitAndWait(1, () => {})).toThrow(/already in flight/);
      expect((await waited).map((completion) => completion.result)).toEqual([0, 0]);
      expect(() => ring.prepWrite(fd, new Uint8Array(0), 0, 4, false)).toThrow(RangeError);
      expect(() => ring.prepWrite(fd, new Uint8Array(1), -1, 4, false)).toThrow(RangeError);
      fs.closeSync(fd);
      ring.close();
      expect(() => ring.prepFsync(fd, 5, true, false)).toThrow(/closed/);
    });
  });

  it('keeps a worker thread timer firing during a 64 MiB durable write (wait: threadpool)', async () => {
    // A worker thread cannot run TypeScript: build the package and load the output.
    const packageDirectory = fileURLToPath(new URL('..', import.meta.url));
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-b', packageDirectory], { stdio: 'inherit' });
    const entry = pathToFileURL(path.join(packageDirectory, 'dist/index.js')).href;
    const file = path.join(temporaryDirectory, 'long-commit.dat');
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
    `;
    const worker = new Worker(workerSource, { eval: true, workerData: { entry, file } });
    const result = await new Promise<{
      error: string | null;
      ticks: number;
      elapsedMs: number;
      gapMaxMs: number;
      intervalMs: number;
      size: number;
    }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    console.log(
      `64 MiB writeDurable: ${result.elapsedMs.toFixed(1)} ms, ${result.ticks} timer ticks, ` +
        `largest gap between ticks ${result.gapMaxMs.toFixed(1)} ms`,
    );
    expect(result.error).toBeNull();
    expect(result.size).toBe(64 * 1024 * 1024);
    // A blocked event loop would show one tick and one gap as long as the commit.
    expect(result.ticks).toBeGreaterThanOrEqual(Math.max(3, Math.floor(result.elapsedMs / result.intervalMs / 4)));
    expect(result.gapMaxMs).toBeLessThan(Math.max(50, result.elapsedMs / 4));
  });
});

// A small tmpfs gives real short writes: a write larger than the space left gets the bytes that fit, and the
// next one gets ENOSPC. Truncating a ballast file on the same tmpfs frees space between the two.
const mountPoint = path.join(temporaryDirectory, 'tmpfs');
const tmpfsBytes = 64 * 1024;

/** Mount the small tmpfs, or say why it cannot be. */
function mountTmpfs(): string | null {
  if (ioUringMissing !== null) return ioUringMissing;
  if (process.getuid?.() !== 0) return 'not root: cannot mount a tmpfs for short writes';
  try {
    fs.mkdirSync(mountPoint);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsBytes}`, 'tmpfs', mountPoint], { stdio: 'pipe' });
    tmpfsMounted = true;
    return null;
  } catch (error) {
    return `cannot mount a tmpfs: ${(error as Error).message.split('\n')[0]}`;
  }
}
const mountMissing = mountTmpfs();
if (mountMissing !== null) console.warn(`SKIP short-write tests: ${mountMissing}`);

describe.skipIf(mountMissing !== null).each(waits)('Ring on a full tmpfs (wait: %s)', (wait) => {
  function clear(): void {
    for (const name of fs.readdirSync(mountPoint)) fs.rmSync(path.join(mountPoint, name));
  }

  it('completes a short write by resubmitting the rest with a new linked fdatasync', async () => {
    clear();
    const ballast = path.join(mountPoint, 'ballast');
    fs.writeFileSync(ballast, Buffer.alloc(tmpfsBytes / 2));
    const fd = fs.openSync(path.join(mountPoint, 'log'), 'w+');
    const ring = Ring.setup(8, { wait });
    const shortWrites: Array<[number, number]> = [];
    ring.shortWriteHook = (_fd, bytesWritten, bytesRemaining) => {
      shortWrites.push([bytesWritten, bytesRemaining]);
      fs.truncateSync(ballast, 0); // Make room, so the resubmitted rest fits.
    };
    const data = patterned(tmpfsBytes, 3);
    const error = await writeDurable(ring, fd, data, 0);
    expect(error).toBeNull();
    expect(shortWrites).toEqual([[tmpfsBytes / 2, tmpfsBytes / 2]]);
    expect(ring.shortWrites).toBe(1);
    expect(fs.readFileSync(path.join(mountPoint, 'log')).equals(data)).toBe(true);
    fs.closeSync(fd);
    ring.close();
  });

  it('reports ENOSPC, directly and after a short write', async () => {
    clear();
    const ring = Ring.setup(8, { wait });
    const fd = fs.openSync(path.join(mountPoint, 'log'), 'w+');
    const before = ring.shortWrites;
    const shortThenFull = await writeDurable(ring, fd, patterned(tmpfsBytes * 2, 4), 0);
    expect(shortThenFull).toBeInstanceOf(RingIoError);
    expect(shortThenFull!.code).toBe('ENOSPC');
    expect(shortThenFull!.operation).toBe('write');
    expect(ring.shortWrites).toBe(before + 1);
    expect(fs.fstatSync(fd).size).toBe(tmpfsBytes);

    const full = await writeDurable(ring, fd, patterned(4096, 5), tmpfsBytes);
    expect(full).toBeInstanceOf(RingIoError);
    expect(full!.code).toBe('ENOSPC');
    expect(ring.shortWrites).toBe(before + 1);
    fs.closeSync(fd);
    ring.close();
  });
});

describe('lockFile', () => {
  it('locks once per open file description', () => {
    const file = path.join(temporaryDirectory, 'lock');
    const first = fs.openSync(file, 'w');
    const second = fs.openSync(file, 'r');
    expect(lockFile(first)).toBe(true);
    expect(lockFile(first)).toBe(true); // Re-locking one's own lock is a no-op.
    expect(lockFile(second)).toBe(false);
    fs.closeSync(first);
    expect(lockFile(second)).toBe(true);
    fs.closeSync(second);
    expect(() => lockFile(second)).toThrow(/EBADF/);
  });
});

describe('errnoName', () => {
  it('names known errnos and keeps the number of unknown ones', () => {
    expect(errnoName(5)).toBe('EIO');
    expect(errnoName(28)).toBe('ENOSPC');
    expect(errnoName(125)).toBe('ECANCELED');
    expect(errnoName(4242)).toBe('ERRNO_4242');
  });
});
