// The disk's own limits, measured by fio in the same run and on the same file system as the engines, so
// each engine's figure can be read as a fraction of what the disk allows:
// - fdatasync'd 4 KiB appends: one writer, `write(4 KiB)` then `fdatasync` at the end of a growing file
//   (file_append, no preallocation: the size changes with every write, as a log's does);
// - the dual log's floor: two writers at once, each `write(4 KiB)` then `fdatasync` on its own file, over
//   space written before (as ringkv's intent and completion logs write into zero-filled segments): no
//   engine that acknowledges after an fdatasync of two files can answer one writer faster than this;
// - sequential write bandwidth: 1 MiB O_DIRECT writes, 16 in flight.
// Without fio the section is skipped and says why; nothing else depends on it.

import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface DiskLimits {
  available: boolean
  skippedReason?: string
  fioVersion?: string
  fdatasyncAppend4KiB?: {
    perSecond: number
    /** Median of the write call plus median of the fdatasync call: one append's p50. */
    latencyUsP50: number
    writeLatencyUsP50: number
    fdatasyncLatencyUsP50: number
    fdatasyncLatencyUsP99: number
  }
  /** Two files written and fdatasync'd in parallel: one pair's p50 (the slower writer's write + fdatasync). */
  parallelPair4KiB?: { latencyUsP50: number }
  sequentialWrite?: { mebibytesPerSecond: number }
}

interface FioJob {
  write: { iops: number; bw_bytes: number; clat_ns: { percentile?: Record<string, number> } }
  sync?: { lat_ns: { percentile?: Record<string, number> } }
}

async function fioJobs(directory: string, arguments_: string[]): Promise<FioJob[]> {
  const { stdout } = await run('fio', ['--output-format=json', `--directory=${directory}`, ...arguments_], {
    maxBuffer: 16 * 1024 * 1024,
  })
  const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: FioJob[] }
  if (report.jobs.length === 0) throw new Error('fio reported no job')
  return report.jobs
}

async function fio(directory: string, arguments_: string[]): Promise<FioJob> {
  return (await fioJobs(directory, arguments_))[0]!
}

/** One job's p50 of write plus p50 of fdatasync, in microseconds. */
function appendLatencyUsP50(job: FioJob): number {
  return percentileUs(job.write.clat_ns.percentile, '50.000000') + percentileUs(job.sync?.lat_ns.percentile, '50.000000')
}

function percentileUs(percentiles: Record<string, number> | undefined, key: string): number {
  const value = percentiles?.[key]
  if (value === undefined) throw new Error(`fio reported no ${key} percentile`)
  return value / 1000
}

export async function measureDiskLimits(parent: string, runtimeSeconds: number): Promise<DiskLimits> {
  let fioVersion: string
  try {
    fioVersion = (await run('fio', ['--version'])).stdout.trim()
  } catch {
    return { available: false, skippedReason: 'fio is not installed (bash scripts/system-deps.sh installs it)' }
  }
  const directory = await mkdtemp(join(parent, 'fio-'))
  try {
    // write(4 KiB) then fdatasync, again and again for the whole runtime.
    const fdatasyncWrites = ['--rw=write', '--bs=4k', '--ioengine=sync', '--fdatasync=1', `--runtime=${runtimeSeconds}`, '--time_based']
    const append = await fio(directory, [
      '--name=fdatasync-append-4k',
      ...fdatasyncWrites,
      '--file_append=1',
      '--fallocate=none',
      '--size=4g',
    ])
    await rm(directory, { recursive: true, force: true })
    await mkdir(directory)
    const pair = await fioJobs(directory, [
      '--name=fdatasync-pair-4k',
      ...fdatasyncWrites,
      '--numjobs=2',
      '--size=64m', // laid out (written) before the job starts: the writes go over written space
    ])
    // Each job's file is gone before the next job lays out its own.
    await rm(directory, { recursive: true, force: true })
    await mkdir(directory)
    const sequential = await fio(directory, [
      '--name=sequential-write-1m',
      '--rw=write',
      '--bs=1m',
      '--ioengine=libaio',
      '--direct=1',
      '--iodepth=16',
      `--size=${runtimeSeconds > 2 ? '1g' : '128m'}`,
      `--runtime=${runtimeSeconds}`,
      '--time_based',
    ])
    const writeLatencyUsP50 = percentileUs(append.write.clat_ns.percentile, '50.000000')
    const fdatasyncLatencyUsP50 = percentileUs(append.sync?.lat_ns.percentile, '50.000000')
    const pairLatencyUsP50 = Math.max(...pair.map(appendLatencyUsP50))
    return {
      available: true,
      fioVersion,
      fdatasyncAppend4KiB: {
        perSecond: append.write.iops,
        latencyUsP50: writeLatencyUsP50 + fdatasyncLatencyUsP50,
        writeLatencyUsP50,
        fdatasyncLatencyUsP50,
        fdatasyncLatencyUsP99: percentileUs(append.sync?.lat_ns.percentile, '99.000000'),
      },
      parallelPair4KiB: { latencyUsP50: pairLatencyUsP50 },
      sequentialWrite: { mebibytesPerSecond: sequential.write.bw_bytes / (1024 * 1024) },
    }
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim().split('\n').pop()
    return { available: false, fioVersion, skippedReason: `fio failed: ${stderr || (error as Error).message.split('\n')[0]}` }
  } finally {
    await rm(directory, { recursive: true, force: true })
  }
}
