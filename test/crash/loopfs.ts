// Real file systems on loop devices for the crash tests: an image file under os.tmpdir(), attached with
// losetup, formatted, mounted at a unique mount point; shut down with `xfs_io -x -c shutdown` (the file
// system drops everything not yet durable, as a power cut would), unmounted and mounted again (journal
// recovery). Every LoopFileSystem registers itself so that `destroyAllLoopFileSystems` (afterAll, and a
// process exit hook) unmounts and detaches it even when a test failed halfway.
//
// What this simulates and what it does not: after a shutdown the file system issues no more I/O, so what
// it had not written to the loop device is lost; what it had written is in the backing file and survives.
// Over a plain image file the loop device has no volatile write cache of its own, so a missing cache flush
// (REQ_PREFLUSH) is not caught, only a missing or misplaced fsync/fdatasync in ringkv. With `image` set to
// a VolatileDisk's file (volatile-disk.ts) the device does have one, and loses what was not flushed.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'

export type FileSystemKind = 'ext4' | 'xfs'

function which(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

/** Why the loop-device tests cannot run here, or undefined when they can. */
export function loopSkipReason(kinds: FileSystemKind[] = ['ext4']): string | undefined {
  if (process.platform !== 'linux') return `needs Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return 'needs root (losetup, mount)'
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control (loop devices unavailable)'
  const commands = ['losetup', 'mount', 'umount', 'xfs_io']
  if (kinds.includes('ext4')) commands.push('mkfs.ext4')
  if (kinds.includes('xfs')) commands.push('mkfs.xfs')
  const missing = commands.filter((command) => !which(command))
  if (missing.length > 0) return `missing ${missing.join(', ')} (scripts/system-deps.sh installs them)`
  return undefined
}

/** Prints the reason a test is skipped, so a skip is never silent. */
export function announceSkip(what: string, reason: string | undefined): string | undefined {
  if (reason !== undefined) console.log(`[crash] SKIP ${what}: ${reason}`)
  return reason
}

function run(command: string, args: string[], timeoutMs = 60_000): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs })
  } catch (error) {
    const failure = error as { stderr?: string; stdout?: string; message: string }
    throw new Error(`${command} ${args.join(' ')} failed: ${failure.stderr || failure.stdout || failure.message}`)
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

const live = new Set<LoopFileSystem>()

export interface LoopFileSystemOptions {
  kind: FileSystemKind
  /** Size of the image file this creates; unused with `image`. */
  sizeBytes: number
  /** Mount options, e.g. 'errors=remount-ro' for ext4. */
  mountOptions?: string
  /**
   * An existing file to put the loop device on (a VolatileDisk's), instead of an image file created here;
   * it is neither created nor removed. mkfs then neither discards nor leaves tables to initialize lazily:
   * such a disk answers no discard, and every byte mkfs leaves should go through its cache like any write.
   */
  image?: string
}

export class LoopFileSystem {
  readonly root: string
  readonly image: string
  readonly mountPoint: string
  device: string | undefined
  mounted = false

  private constructor(readonly options: LoopFileSystemOptions) {
    this.root = mkdtempSync(join(tmpdir(), `ringkv-crash-${options.kind}-`))
    this.image = options.image ?? join(this.root, 'image')
    this.mountPoint = join(this.root, 'mnt')
    mkdirSync(this.mountPoint)
  }

  static create(options: LoopFileSystemOptions): LoopFileSystem {
    const fileSystem = new LoopFileSystem(options)
    live.add(fileSystem)
    try {
      if (options.image === undefined) run('truncate', ['-s', String(options.sizeBytes), fileSystem.image])
      fileSystem.attach()
      const device = fileSystem.device!
      const given = options.image !== undefined
      if (options.kind === 'ext4') {
        // -m 0: no blocks reserved for root (the tests run as root, and ENOSPC must mean full).
        const extended = given ? ['-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0'] : []
        run('mkfs.ext4', ['-q', '-F', '-m', '0', ...extended, device])
      } else {
        run('mkfs.xfs', ['-q', '-f', ...(given ? ['-K'] : []), device])
      }
      fileSystem.mount()
    } catch (error) {
      fileSystem.destroy()
      throw error
    }
    return fileSystem
  }

  /** The device's name under /sys/fs/ext4/, e.g. 'loop3'. */
  get deviceName(): string {
    if (this.device === undefined) throw new Error('no loop device attached')
    return basename(this.device)
  }

  /** Puts a loop device on the image. */
  attach(): void {
    if (this.device !== undefined) throw new Error(`${this.image} is already attached to ${this.device}`)
    this.device = run('losetup', ['--find', '--show', this.image]).trim()
  }

  /**
   * Removes the loop device (after unmount), so that nothing it or the kernel cached of the image outlives
   * it: the next `attach` reads the image afresh.
   */
  detach(): void {
    if (this.mounted) throw new Error(`${this.mountPoint} is still mounted`)
    if (this.device === undefined) return
    run('losetup', ['-d', this.device])
    this.device = undefined
  }

  mount(): void {
    if (this.device === undefined) throw new Error('no loop device attached')
    const args = this.options.mountOptions ? ['-o', this.options.mountOptions] : []
    run('mount', [...args, this.device, this.mountPoint])
    this.mounted = true
  }

  /**
   * Unmounts, retrying while the mount is busy: a killed process's io_uring is torn down asynchronously
   * and holds its files open for a moment after the process has exited.
   */
  async unmount(): Promise<void> {
    if (!this.mounted) return
    let lastError: unknown
    for (let attempt = 0; attempt < 100; attempt++) {
      const result = spawnSync('umount', [this.mountPoint], { encoding: 'utf8' })
      if (result.status === 0) {
        this.mounted = false
        return
      }
      lastError = result.stderr
      await sleep(100)
    }
    throw new Error(`umount ${this.mountPoint} still failing after 10 s: ${lastError}`)
  }

  async remount(): Promise<void> {
    await this.unmount()
    this.mount()
  }

  /**
   * Power loss: the file system stops all I/O at once and forgets whatever it had not made durable
   * (no log flush). Then proves the shutdown took effect: creating a file must now fail.
   */
  shutdown(): void {
    try {
      run('xfs_io', ['-x', '-c', 'shutdown', this.mountPoint])
    } catch (error) {
      // On a device that already fails every write (a VolatileDisk after its cut) the file system may have
      // shut itself down, and xfs_io cannot even stat it. Either way the probe below proves it is stopped.
      if (!/Input\/output error/.test((error as Error).message)) throw error
    }
    this.assertUnwritable('shutdown')
  }

  /** ext4 with errors=remount-ro: make the kernel treat the file system as damaged (remount read-only). */
  triggerExt4Error(): void {
    if (this.options.kind !== 'ext4') throw new Error('trigger_fs_error is an ext4 feature')
    writeFileSync(`/sys/fs/ext4/${this.deviceName}/trigger_fs_error`, '1')
    this.assertUnwritable('trigger_fs_error')
  }

  private assertUnwritable(what: string): void {
    const probe = join(this.mountPoint, `.ringkv-probe-${process.pid}-${Date.now()}`)
    try {
      writeFileSync(probe, 'x')
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EIO' || code === 'EROFS') return
      throw new Error(`after ${what}, writing a probe file failed with ${code}, not EIO/EROFS`)
    }
    rmSync(probe, { force: true })
    throw new Error(`${what} did not take effect: a new file could still be written on ${this.mountPoint}`)
  }

  /** Unmounts (lazily if it must), detaches the loop device and removes the image. Never throws. */
  destroy(): void {
    if (this.mounted) {
      for (let attempt = 0; attempt < 50 && this.mounted; attempt++) {
        if (spawnSync('umount', [this.mountPoint]).status === 0) this.mounted = false
        else spawnSync('sleep', ['0.1'])
      }
      if (this.mounted) {
        spawnSync('umount', ['-l', this.mountPoint])
        this.mounted = false
      }
    }
    if (this.device !== undefined) {
      spawnSync('losetup', ['-d', this.device])
      this.device = undefined
    }
    rmSync(this.root, { recursive: true, force: true })
    live.delete(this)
  }
}

export function destroyAllLoopFileSystems(): void {
  for (const fileSystem of [...live]) fileSystem.destroy()
}

process.once('exit', destroyAllLoopFileSystems)
