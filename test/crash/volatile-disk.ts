// A disk with a volatile write cache for the crash tests: starts the FUSE server of volatile-disk.mjs as a
// child process (it mounts a directory holding one file, `disk`, the device a loop device is put on), and
// drives it: `cut(seed)` is the power cut (the disk stops, and every write it had not flushed vanishes,
// survives, or tears by sector, by the seed), `powerOn()` starts it again over what survived. What the disk
// promises is at the top of volatile-disk.mjs.
//
// Nothing here can hang the test run on the FUSE mount: every command to the server has a deadline, past
// which the server is killed; killing it closes /dev/fuse, and the kernel then fails every request on the
// mount (ENOTCONN, EIO through the loop device), so an unmount or detach waiting on it returns. `destroy`
// (afterAll, and a process exit hook) kills the server before anything else for the same reason.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** What a power cut did to the writes the disk had not flushed. */
export interface CutReport {
  /** What fired it: the cut command, the armed FSYNC, or the armed cut's timer. */
  trigger: 'command' | 'fsync' | 'timer'
  seed: number
  /** When the disk stopped: process.hrtime.bigint() of the server, as a decimal string (CLOCK_MONOTONIC). */
  atNs: string
  cachedWrites: number
  vanished: number
  whole: number
  torn: number
  sectorsKept: number
  sectorsLost: number
}

/** The server's counters since it started. */
export interface DiskStats {
  writes: number
  writeBytes: number
  reads: number
  readBytes: number
  /** FUSE_FSYNC requests: the loop device's cache flushes. */
  fsyncs: number
  fsyncsDatasync: number
  fsyncsWithEmptyCache: number
  /** Cached writes made stable by an fsync (not by a cut). */
  stableWrites: number
  failedWhileOff: number
  unalignedWrites: number
  /** FUSE_FLUSH requests (a close of the file): answered, never a cache flush. */
  closeFlushes: number
  cuts: number
  cachedWritesMax: number
  /** Cached writes the disk wrote back by itself because its cache was full (none expected in the tests). */
  destagedWrites: number
  /** Requests the server answered ENOSYS, by opcode. */
  unknownOpcodes: Record<string, number>
  cachedWrites: number
  poweredOn: boolean
}

/** How long a command to the server may take before it is killed. */
const commandMsMax = 30_000

const serverPath = fileURLToPath(new URL('./volatile-disk.mjs', import.meta.url))

/** Why a volatile disk cannot run here, or undefined when it can. */
export function volatileDiskSkipReason(): string | undefined {
  if (process.platform !== 'linux') return `needs Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return 'needs root (mount -t fuse, losetup)'
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse (FUSE unavailable)'
  if (!/\tfuse$/m.test(readFileSync('/proc/filesystems', 'utf8'))) return 'the kernel has no fuse file system (modprobe fuse)'
  return undefined
}

function isMountPoint(path: string): boolean {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[1] === path)
}

const live = new Set<VolatileDisk>()

export class VolatileDisk {
  readonly root: string
  readonly mountPoint: string
  /** The disk: a regular file on the FUSE mount, for losetup. */
  readonly image: string
  /** Where the disk's stable image lives, on the real disk. */
  readonly stableImage: string
  /** Set when the server failed or was killed: the disk answers nothing any more. */
  failure: string | undefined
  private server: ChildProcess | undefined
  private partial = ''
  private waiters: { prefix: string; resolve: (line: string) => void; reject: (error: Error) => void }[] = []
  private stderr = ''

  private constructor(readonly sizeBytes: number) {
    this.root = mkdtempSync(join(tmpdir(), 'ringkv-volatile-disk-'))
    this.mountPoint = join(this.root, 'mnt')
    this.image = join(this.mountPoint, 'disk')
    this.stableImage = join(this.root, 'stable.img')
    mkdirSync(this.mountPoint)
  }

  /** Starts the server and waits until the disk is mounted and answers. */
  static async start(sizeBytes: number): Promise<VolatileDisk> {
    const disk = new VolatileDisk(sizeBytes)
    live.add(disk)
    try {
      const config = { mountPoint: disk.mountPoint, stableImage: disk.stableImage, sizeBytes }
      const server = spawn(process.execPath, [serverPath, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] })
      disk.server = server
      server.stdout!.setEncoding('utf8')
      server.stdout!.on('data', (chunk: string) => disk.receive(chunk))
      server.stderr!.setEncoding('utf8')
      server.stderr!.on('data', (chunk: string) => {
        if (disk.stderr.length < 20_000) disk.stderr += chunk
      })
      server.once('exit', (code, signal) => disk.ended(`the server exited (${code ?? signal})`))
      await disk.expect('READY', commandMsMax)
      return disk
    } catch (error) {
      disk.destroy()
      throw error
    }
  }

  /**
   * The power cut: the disk stops answering (EIO) and resolves every write it had not flushed by `seed`.
   * When this returns, nothing more reaches its stable image.
   */
  async cut(seed: number): Promise<CutReport> {
    return JSON.parse(await this.command(`cut ${seed >>> 0}`, 'CUT')) as CutReport
  }

  /**
   * Arms the power cut for the worst moment: as the `fsyncs`-th cache flush from now arrives (that flush
   * fails, and every write since the previous one is still cached), or after `ms` if fewer flushes come.
   * Resolves once the disk is armed, with the cut's report to come.
   */
  async armCut(seed: number, fsyncs: number, ms: number): Promise<{ cut: Promise<CutReport> }> {
    if (!Number.isSafeInteger(fsyncs) || fsyncs < 1) throw new RangeError('fsyncs must be a positive integer')
    const cut = this.expect('CUT', ms + commandMsMax).then((rest) => JSON.parse(rest) as CutReport)
    cut.catch(() => {}) // a failure is reported by the command below, or to whoever awaits `cut`
    await this.command(`arm ${seed >>> 0} ${fsyncs} ${Math.round(ms)}`, 'ARMED')
    return { cut }
  }

  /** armCut, and the cut's report once it happened. */
  async cutAtFlush(seed: number, fsyncs: number, ms: number): Promise<CutReport> {
    return (await this.armCut(seed, fsyncs, ms)).cut
  }

  /** Power back on: the stable image is the disk, and its cache is empty. */
  async powerOn(): Promise<void> {
    await this.command('on', 'ON')
  }

  async stats(): Promise<DiskStats> {
    return JSON.parse(await this.command('stats', 'STATS')) as DiskStats
  }

  /**
   * Arms a watchdog that kills the server after `ms` unless the returned function is called first. It is a
   * process of its own, so it fires even while this process is blocked in a synchronous call (umount,
   * mount, losetup, xfs_io) that waits on the disk; the kill makes that call fail instead.
   */
  deadline(ms: number): () => void {
    const pid = this.server?.pid
    if (pid === undefined || this.failure !== undefined) return () => {}
    // Only while that pid is still this server (it could have exited and its pid been reused).
    const script = `sleep ${Math.ceil(ms / 1000)} && grep -qs volatile-disk.mjs /proc/${pid}/cmdline && kill -KILL ${pid}`
    const watchdog = spawn('sh', ['-c', script], { stdio: 'ignore', detached: true })
    watchdog.unref()
    return () => {
      try {
        process.kill(-watchdog.pid!, 'SIGKILL') // its process group: the shell and its sleep
      } catch {
        // it already ended
      }
    }
  }

  /**
   * Kills the server at once. The kernel aborts the FUSE connection: every request on the mount, and
   * every I/O of a loop device over the disk, fails from then on instead of waiting.
   */
  abort(): void {
    if (this.server !== undefined && this.server.exitCode === null && this.server.signalCode === null) this.server.kill('SIGKILL')
  }

  /** Kills the server, unmounts the FUSE mount (lazily if it is still busy) and removes everything. Never throws. */
  destroy(): void {
    this.abort()
    // Mounted or not (the server may have mounted and failed before READY): /proc/mounts says.
    if (isMountPoint(this.mountPoint) && spawnSync('umount', [this.mountPoint], { timeout: 10_000 }).status !== 0) {
      spawnSync('umount', ['-l', this.mountPoint], { timeout: 10_000 }) // still busy: a loop device holds the disk
    }
    rmSync(this.root, { recursive: true, force: true })
    live.delete(this)
  }

  describe(): string {
    return `volatile disk ${this.root}${this.failure ? `: ${this.failure}` : ''}${this.stderr ? `\n  stderr: ${this.stderr.slice(0, 2000)}` : ''}`
  }

  private async command(line: string, prefix: string): Promise<string> {
    if (this.failure !== undefined) throw new Error(`volatile disk: ${this.failure}`)
    const answer = this.expect(prefix, commandMsMax)
    this.server!.stdin!.write(line + '\n')
    return answer
  }

  /** The rest of the next line that starts with `prefix`; the server is killed if it does not come in time. */
  private expect(prefix: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.ended(`no ${prefix} within ${timeoutMs} ms`)
        this.abort()
      }, timeoutMs)
      this.waiters.push({
        prefix,
        resolve: (rest) => {
          clearTimeout(timer)
          resolve(rest)
        },
        reject: (error) => {
          clearTimeout(timer)
          reject(error)
        },
      })
    })
  }

  private receive(chunk: string): void {
    const lines = (this.partial + chunk).split('\n')
    this.partial = lines.pop()!
    for (const line of lines) {
      const space = line.indexOf(' ')
      const kind = space === -1 ? line : line.slice(0, space)
      const rest = space === -1 ? '' : line.slice(space + 1)
      if (kind === 'FAILED') {
        this.ended(`the server failed: ${rest}`)
        continue
      }
      // The first waiter for this kind of line: an armed cut's CUT may come after later commands' answers.
      const index = this.waiters.findIndex((waiter) => waiter.prefix === kind)
      if (index === -1) {
        this.ended(`unexpected line from the server: ${line.slice(0, 300)}`)
        continue
      }
      this.waiters.splice(index, 1)[0]!.resolve(rest)
    }
  }

  private ended(reason: string): void {
    this.failure ??= reason
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error(`volatile disk: ${this.describe()}`))
  }
}

/** Kills every server, so that no unmount or detach that follows can wait on one. */
export function abortAllVolatileDisks(): void {
  for (const disk of live) disk.abort()
}

export function destroyAllVolatileDisks(): void {
  for (const disk of [...live]) disk.destroy()
}

// At exit, the servers die before any other exit hook (loopfs.ts's) unmounts what lies on their disks.
process.prependOnceListener('exit', abortAllVolatileDisks)
process.once('exit', destroyAllVolatileDisks)
