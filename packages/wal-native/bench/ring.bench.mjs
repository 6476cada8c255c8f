// Ring benchmarks, run against the built package (`pnpm --filter @ringkv/wal-native run bench`).
//
//   latency [count]     writeDurable of a 4 KiB append to a file on the work disk: median and p99 of `count`.
//   threadpool          whether rings share the libuv threadpool: ring A waits on a slow fdatasync while
//                       ring B commits 4 KiB to /dev/shm (instant fsync); B's latency is measured in child
//                       processes with UV_THREADPOOL_SIZE=1 and =4. If koffi's .async used threads of its own,
//                       B would not wait for A in either.
//
// Small by default so it cannot rot; pass a larger count by hand.

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Ring } from '../dist/index.js'

const [mode = 'all', countArgument] = process.argv.slice(2)

function writeDurable(ring, fd, buffer, fileOffset) {
  return new Promise((resolve, reject) =>
    ring.writeDurable(fd, buffer, fileOffset, (error) => (error === null ? resolve() : reject(error))),
  )
}

function percentile(sorted, fraction) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))]
}

async function latency(count) {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'ringkv-bench-'))
  const fd = fs.openSync(path.join(directory, 'log'), 'w+')
  const ring = Ring.setup(64)
  const buffer = Buffer.alloc(4096, 0x61)
  const latenciesUs = []
  for (let index = 0; index < count; index++) {
    const started = process.hrtime.bigint()
    await writeDurable(ring, fd, buffer, index * buffer.byteLength)
    latenciesUs.push(Number(process.hrtime.bigint() - started) / 1000)
  }
  ring.close()
  fs.closeSync(fd)
  fs.rmSync(directory, { recursive: true })
  latenciesUs.sort((a, b) => a - b)
  console.log(
    `latency: 4 KiB writeDurable append, n=${count}: median ${percentile(latenciesUs, 0.5).toFixed(0)} us, ` +
      `p99 ${percentile(latenciesUs, 0.99).toFixed(0)} us`,
  )
}

/**
 * Runs in a child with UV_THREADPOOL_SIZE set. Ring A waits on one slow fdatasync (64 MiB made dirty first,
 * then a lone IORING_OP_FSYNC: a single io_uring_enter wait for its whole length); once A's wait is in the
 * kernel, ring B commits 4 KiB on /dev/shm, which needs a threadpool thread of its own to wait on.
 */
async function threadpoolChild() {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'ringkv-bench-'))
  const shmDirectory = fs.mkdtempSync(path.join('/dev/shm', 'ringkv-bench-'))
  const slowFd = fs.openSync(path.join(directory, 'slow'), 'w+')
  const fastFd = fs.openSync(path.join(shmDirectory, 'fast'), 'w+')
  fs.writeSync(slowFd, Buffer.alloc(64 * 1024 * 1024, 0x62), 0, undefined, 0)
  const slowRing = Ring.setup(8)
  const fastRing = Ring.setup(8)
  const fastBuffer = Buffer.alloc(4096, 0x63)
  const slowStarted = performance.now()
  slowRing.prepFsync(slowFd, 1, true, false)
  const slow = new Promise((resolve, reject) =>
    slowRing.submitAndWait(1, (error) => (error === null ? resolve(performance.now() - slowStarted) : reject(error))),
  )
  await new Promise((resolve) => setTimeout(resolve, 5))
  const fastStarted = performance.now()
  const fast = writeDurable(fastRing, fastFd, fastBuffer, 0).then(() => performance.now() - fastStarted)
  const [slowMs, fastMs] = await Promise.all([slow, fast])
  for (const ring of [slowRing, fastRing]) ring.close()
  for (const fd of [slowFd, fastFd]) fs.closeSync(fd)
  fs.rmSync(directory, { recursive: true })
  fs.rmSync(shmDirectory, { recursive: true })
  console.log(JSON.stringify({ slowMs, fastMs }))
}

function threadpool() {
  const script = fileURLToPath(import.meta.url)
  for (const size of [1, 4]) {
    const output = execFileSync(process.execPath, [script, 'threadpool-child'], {
      env: { ...process.env, UV_THREADPOOL_SIZE: String(size) },
      encoding: 'utf8',
    })
    const { slowMs, fastMs } = JSON.parse(output.trim().split('\n').at(-1))
    console.log(
      `threadpool: UV_THREADPOOL_SIZE=${size}: ring A's fdatasync of 64 MiB ${slowMs.toFixed(1)} ms, ` +
        `ring B's 4 KiB tmpfs commit (started 5 ms later) ${fastMs.toFixed(1)} ms`,
    )
  }
}

if (mode === 'threadpool-child') await threadpoolChild()
else {
  if (mode === 'all' || mode === 'latency') await latency(Number(countArgument ?? 200))
  if (mode === 'all' || mode === 'threadpool') threadpool()
}
