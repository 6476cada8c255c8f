// A disk with a volatile write cache, served over FUSE, for the crash tests (test/crash/volatile-disk.ts
// starts it and drives it). It speaks the FUSE kernel protocol (include/uapi/linux/fuse.h, 7.31 subset)
// on /dev/fuse itself, mounts one directory holding one regular file, `disk`, of a fixed size, and a loop
// device over that file is the block device the file system under test lives on.
//
// What the file promises, read as a disk:
// - A WRITE is acknowledged once it is in the cache: memory in this process, a list of writes in the order
//   they arrived (offsets and lengths in whole 512-byte sectors). A READ sees the cache over the stable
//   image.
// - An FSYNC is the disk's cache flush: every cached write reaches the stable image (a sparse file on the
//   real disk), in order, before the FSYNC is answered. The loop device turns a REQ_PREFLUSH into
//   vfs_fsync of this file, which arrives here as FUSE_FSYNC; it advertises no FUA (queue/fua is 0), so the
//   block layer sends a FUA write as the write and then a flush. Nothing else makes a write stable: not
//   FUSE_FLUSH (a close), not time; only a cache past cacheBytesMax writes its oldest writes back by itself,
//   as a real disk's does (counted: destagedWrites).
// - Open replies FOPEN_DIRECT_IO, so no FUSE page cache sits between the loop device and this cache:
//   every write arrives here as a WRITE when the loop device performs it.
// - FALLOCATE (a discard or write-zeroes, through the loop device) is answered ENOSYS, like every request a
//   disk has no use for: the file has no fallocate, the loop device fails those requests as unsupported,
//   and the kernel's zeroing falls back to writing zeros, which are ordinary writes.
// - `cut <seed>` on stdin is the power cut; `arm <seed> <n> <ms>` cuts instead as the n-th FSYNC from now
//   arrives (that flush fails, and everything since the last one is still in the cache: the moment that
//   holds the most acknowledged-but-unflushed data), or after <ms> if fewer flushes come. From then on every WRITE, READ and FSYNC fails with EIO, and
//   each cached write is resolved, in order, by a PRNG seeded with <seed> (mulberry32, as model.mjs): it
//   vanishes, survives whole, or is torn sector by sector (each 512-byte sector old or new), one third
//   each, as SimulatedStorage.crash() does. Each write is resolved on its own, so a sector written twice
//   may keep the older write's bytes. What survives is written to the stable image; the cache is empty.
//   `on` powers the disk back on: the stable image is the disk, and I/O works again.
// - Only acknowledged writes can survive, and a write answered with EIO never reaches the image.
//
// Control, one line each way: stdin `cut <seed>` -> stdout `CUT <json>`; `arm <seed> <n> <ms>` -> `ARMED`,
// and `CUT <json>` when the cut happens; `on` -> `ON`; `stats` -> `STATS <json>`. At start: `READY <json>` once mounted, or `FAILED <message>` and exit 1. End of stdin
// (the test process is gone) ends the server, and with it the FUSE connection: the kernel then fails
// every request on the mount, so nothing above can wait for an answer forever.
//
// Usage: node volatile-disk.mjs '<json: { mountPoint, stableImage, sizeBytes }>' (run as root).
import { spawn } from 'node:child_process'
import { closeSync, ftruncateSync, openSync, read, readSync, writeSync } from 'node:fs'

const config = JSON.parse(process.argv[2] ?? '{}')
const { mountPoint, stableImage, sizeBytes } = config
const sectorBytes = 512
if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % sectorBytes !== 0) {
  throw new RangeError(`sizeBytes must be a positive multiple of ${sectorBytes}`)
}

// ---------------------------------------------------------------------------------------------------------
// The protocol: opcodes, errnos and sizes from include/uapi/linux/fuse.h and asm-generic/errno*.h

const opcode = {
  lookup: 1,
  forget: 2,
  getattr: 3,
  setattr: 4,
  open: 14,
  read: 15,
  write: 16,
  statfs: 17,
  release: 18,
  fsync: 20,
  flush: 25,
  init: 26,
  opendir: 27,
  readdir: 28,
  releasedir: 29,
  fsyncdir: 30,
  access: 34,
  interrupt: 36,
  destroy: 38,
  batchForget: 42,
}
const opcodeNames = Object.fromEntries(Object.entries(opcode).map(([name, number]) => [number, name]))
const errno = { EIO: 5, ENOENT: 2, EINVAL: 22, ENOSYS: 38, EINTR: 4, EAGAIN: 11, ENODEV: 19 }
const kernelMajor = 7
const serverMinor = 31
const inHeaderBytes = 40 // fuse_in_header
const outHeaderBytes = 16 // fuse_out_header
const attrBytes = 88 // fuse_attr
const writeMax = 1024 * 1024 // max_write: one WRITE carries at most this much
const pagesMax = writeMax / 4096 // max_pages (FUSE_MAX_PAGES)
const readBufferBytes = writeMax + 4096 // the kernel wants room for in_header + write_in + max_write
/** Past this many cached bytes the oldest cached writes reach the stable image by themselves. */
const cacheBytesMax = 256 * 1024 * 1024
const initFlags = {
  bigWrites: 1 << 5,
  maxPages: 1 << 22,
}
const fopenDirectIo = 1 << 0
const rootNode = 1
const diskNode = 2
const diskName = 'disk'
const modeDirectory = 0o040000
const modeRegular = 0o100000

// ---------------------------------------------------------------------------------------------------------
// The disk: stable image, cache, power

const stable = openSync(stableImage, 'w+')
ftruncateSync(stable, sizeBytes)

/** Cached writes in arrival order: { offset, data } (whole sectors). */
let cache = []
let cacheBytes = 0
/** Sector index -> the newest cached bytes of that sector, for reads. */
let cachedSectors = new Map()
let poweredOn = true

const stats = {
  writes: 0,
  writeBytes: 0,
  reads: 0,
  readBytes: 0,
  fsyncs: 0,
  fsyncsDatasync: 0,
  fsyncsWithEmptyCache: 0,
  stableWrites: 0,
  failedWhileOff: 0,
  unalignedWrites: 0,
  closeFlushes: 0,
  cuts: 0,
  cachedWritesMax: 0,
  destagedWrites: 0,
  unknownOpcodes: {},
}

function cacheWrite(offset, data) {
  cache.push({ offset, data })
  cacheBytes += data.length
  indexSectors(offset, data)
  if (cache.length > stats.cachedWritesMax) stats.cachedWritesMax = cache.length
  if (cacheBytes > cacheBytesMax) destage()
}

function indexSectors(offset, data) {
  const first = offset / sectorBytes
  for (let sector = 0; sector < data.length / sectorBytes; sector++) {
    cachedSectors.set(first + sector, data.subarray(sector * sectorBytes, (sector + 1) * sectorBytes))
  }
}

/** The cache is full: its oldest writes reach the stable image, until half of it is free. */
function destage() {
  let count = 0
  while (cacheBytes > cacheBytesMax / 2) {
    const { offset, data } = cache[count++]
    writeStable(data, offset)
    cacheBytes -= data.length
  }
  stats.destagedWrites += count
  cache = cache.slice(count)
  // Rebuilt from the writes left, so that reads see the stable image under the ones that went.
  cachedSectors = new Map()
  for (const { offset, data } of cache) indexSectors(offset, data)
}

function writeStable(data, offset) {
  let written = 0
  while (written < data.length) written += writeSync(stable, data, written, data.length - written, offset + written)
}

/** The cache flush: every cached write reaches the stable image, in order. */
function flushCache() {
  for (const { offset, data } of cache) writeStable(data, offset)
  stats.stableWrites += cache.length
  cache = []
  cacheBytes = 0
  cachedSectors = new Map()
}

function readDisk(offset, length, into) {
  let done = 0
  while (done < length) {
    const count = readSync(stable, into, done, length - done, offset + done)
    if (count === 0) break // past the end: the rest stays zero
    done += count
  }
  if (cachedSectors.size === 0) return
  const first = Math.floor(offset / sectorBytes)
  const last = Math.ceil((offset + length) / sectorBytes)
  for (let sector = first; sector < last; sector++) {
    const bytes = cachedSectors.get(sector)
    if (bytes === undefined) continue
    const from = Math.max(sector * sectorBytes, offset)
    const to = Math.min((sector + 1) * sectorBytes, offset + length)
    bytes.copy(into, from - offset, from - sector * sectorBytes, to - sector * sectorBytes)
  }
}

/** mulberry32, as model.mjs: the power cut's choices are a pure function of its seed. */
function random(seed) {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The power cut: the device stops, and each cached write vanishes, survives whole, or tears by sector. */
/** An armed cut: { seed, fsyncs (left until it fires), timer }. */
let armed

/** Cuts the power and says so, once per command; `trigger` says what fired it: 'command', 'fsync' or 'timer'. */
function cutNow(seed, trigger) {
  if (armed !== undefined) clearTimeout(armed.timer)
  armed = undefined
  say(`CUT ${JSON.stringify({ trigger, ...cut(seed) })}`)
}

function cut(seed) {
  // When the disk stopped, on CLOCK_MONOTONIC (the same clock as every process's process.hrtime).
  const atNs = String(process.hrtime.bigint())
  poweredOn = false
  stats.cuts++
  const next = random(seed)
  const report = { seed, atNs, cachedWrites: cache.length, vanished: 0, whole: 0, torn: 0, sectorsKept: 0, sectorsLost: 0 }
  for (const { offset, data } of cache) {
    const sectors = data.length / sectorBytes
    const mode = Math.floor(next() * 3)
    if (mode === 0) {
      report.vanished++
      report.sectorsLost += sectors
    } else if (mode === 1) {
      report.whole++
      report.sectorsKept += sectors
      writeStable(data, offset)
    } else {
      report.torn++
      for (let sector = 0; sector < sectors; sector++) {
        if (next() < 0.5) {
          report.sectorsLost++
          continue
        }
        report.sectorsKept++
        writeStable(data.subarray(sector * sectorBytes, (sector + 1) * sectorBytes), offset + sector * sectorBytes)
      }
    }
  }
  cache = []
  cacheBytes = 0
  cachedSectors = new Map()
  return report
}

// ---------------------------------------------------------------------------------------------------------
// Requests and replies

const fuse = openSync('/dev/fuse', 'r+')

function reply(unique, error, body) {
  const length = outHeaderBytes + (body?.length ?? 0)
  const out = Buffer.alloc(length)
  out.writeUInt32LE(length, 0)
  out.writeInt32LE(-error, 4)
  out.writeBigUInt64LE(unique, 8)
  if (body !== undefined) body.copy(out, outHeaderBytes)
  try {
    writeSync(fuse, out)
  } catch (failure) {
    // ENOENT: the request was interrupted or the connection aborted meanwhile; nobody waits for it.
    if (failure.code !== 'ENOENT' && failure.code !== 'ENODEV') throw failure
  }
}

function attributes(node) {
  const attr = Buffer.alloc(attrBytes)
  const isDisk = node === diskNode
  attr.writeBigUInt64LE(BigInt(node), 0) // ino
  attr.writeBigUInt64LE(BigInt(isDisk ? sizeBytes : 0), 8) // size
  attr.writeBigUInt64LE(BigInt(isDisk ? sizeBytes / 512 : 0), 16) // blocks
  attr.writeUInt32LE(isDisk ? modeRegular | 0o600 : modeDirectory | 0o755, 60) // mode
  attr.writeUInt32LE(isDisk ? 1 : 2, 64) // nlink
  attr.writeUInt32LE(4096, 80) // blksize
  return attr
}

function entryOut(node) {
  const body = Buffer.alloc(40 + attrBytes)
  body.writeBigUInt64LE(BigInt(node), 0) // nodeid
  body.writeBigUInt64LE(3600n, 16) // entry_valid (s)
  body.writeBigUInt64LE(3600n, 24) // attr_valid (s)
  attributes(node).copy(body, 40)
  return body
}

function attrOut(node) {
  const body = Buffer.alloc(16 + attrBytes)
  body.writeBigUInt64LE(3600n, 0) // attr_valid (s)
  attributes(node).copy(body, 16)
  return body
}

function directoryEntries(offset) {
  const entries = [
    [rootNode, '.', 4],
    [rootNode, '..', 4],
    [diskNode, diskName, 8],
  ]
  const parts = []
  for (let index = Number(offset); index < entries.length; index++) {
    const [ino, name, type] = entries[index]
    const nameBytes = Buffer.from(name)
    const size = Math.ceil((24 + nameBytes.length) / 8) * 8
    const dirent = Buffer.alloc(size)
    dirent.writeBigUInt64LE(BigInt(ino), 0)
    dirent.writeBigUInt64LE(BigInt(index + 1), 8) // off: where the next read starts
    dirent.writeUInt32LE(nameBytes.length, 16)
    dirent.writeUInt32LE(type, 20)
    nameBytes.copy(dirent, 24)
    parts.push(dirent)
  }
  return Buffer.concat(parts)
}

let initialized = false

function handle(request) {
  const length = request.readUInt32LE(0)
  const code = request.readUInt32LE(4)
  const unique = request.readBigUInt64LE(8)
  const node = Number(request.readBigUInt64LE(16))
  const body = request.subarray(inHeaderBytes, length)
  switch (code) {
    case opcode.init: {
      const major = body.readUInt32LE(0)
      const minor = body.readUInt32LE(4)
      if (major !== kernelMajor) throw new Error(`FUSE kernel protocol ${major}.${minor}, this server speaks ${kernelMajor}`)
      const out = Buffer.alloc(64)
      out.writeUInt32LE(kernelMajor, 0)
      out.writeUInt32LE(Math.min(minor, serverMinor), 4)
      out.writeUInt32LE(0, 8) // max_readahead
      out.writeUInt32LE(initFlags.bigWrites | initFlags.maxPages, 12)
      out.writeUInt16LE(16, 16) // max_background
      out.writeUInt16LE(12, 18) // congestion_threshold
      out.writeUInt32LE(writeMax, 20) // max_write
      out.writeUInt32LE(1, 24) // time_gran
      out.writeUInt16LE(pagesMax, 28) // max_pages
      reply(unique, 0, out)
      initialized = true
      return
    }
    case opcode.lookup: {
      const name = body.subarray(0, body.indexOf(0)).toString()
      if (node === rootNode && name === diskName) reply(unique, 0, entryOut(diskNode))
      else reply(unique, errno.ENOENT)
      return
    }
    case opcode.getattr:
    case opcode.setattr: // a size or mode change is not a disk's business: answered with what it is
      reply(unique, 0, attrOut(node))
      return
    case opcode.open:
    case opcode.opendir: {
      const out = Buffer.alloc(16)
      out.writeBigUInt64LE(BigInt(node), 0) // fh
      out.writeUInt32LE(code === opcode.open ? fopenDirectIo : 0, 8)
      reply(unique, 0, out)
      return
    }
    case opcode.readdir: {
      const offset = body.readBigUInt64LE(8)
      const size = body.readUInt32LE(16)
      reply(unique, 0, directoryEntries(offset).subarray(0, size))
      return
    }
    case opcode.read: {
      const offset = Number(body.readBigUInt64LE(8))
      const size = body.readUInt32LE(16)
      if (!poweredOn) return failWhileOff(unique)
      const length = Math.max(0, Math.min(size, sizeBytes - offset))
      const out = Buffer.alloc(length)
      readDisk(offset, length, out)
      stats.reads++
      stats.readBytes += length
      reply(unique, 0, out)
      return
    }
    case opcode.write: {
      const offset = Number(body.readBigUInt64LE(8))
      const size = body.readUInt32LE(16)
      const data = body.subarray(40, 40 + size)
      if (!poweredOn) return failWhileOff(unique)
      if (offset % sectorBytes !== 0 || size % sectorBytes !== 0 || offset + size > sizeBytes || data.length !== size) {
        stats.unalignedWrites++
        return reply(unique, errno.EINVAL)
      }
      cacheWrite(offset, Buffer.from(data)) // a copy: the request buffer is read into again
      stats.writes++
      stats.writeBytes += size
      const out = Buffer.alloc(8)
      out.writeUInt32LE(size, 0)
      reply(unique, 0, out)
      return
    }
    case opcode.fsync: {
      if (!poweredOn) return failWhileOff(unique)
      if (armed !== undefined && --armed.fsyncs === 0) {
        cutNow(armed.seed, 'fsync') // the power fails as this flush arrives: it never happens
        return failWhileOff(unique)
      }
      stats.fsyncs++
      if ((body.readUInt32LE(8) & 1) !== 0) stats.fsyncsDatasync++
      if (cache.length === 0) stats.fsyncsWithEmptyCache++
      flushCache()
      reply(unique, 0)
      return
    }
    case opcode.flush:
      stats.closeFlushes++
      reply(unique, 0)
      return
    case opcode.release:
    case opcode.releasedir:
    case opcode.access:
    case opcode.fsyncdir:
      reply(unique, 0)
      return
    case opcode.statfs: {
      const out = Buffer.alloc(80)
      out.writeUInt32LE(4096, 40) // bsize
      out.writeUInt32LE(255, 44) // namelen
      out.writeUInt32LE(4096, 48) // frsize
      reply(unique, 0, out)
      return
    }
    case opcode.forget:
    case opcode.batchForget:
    case opcode.interrupt: // every request is answered at once, so there is nothing to interrupt
      return
    case opcode.destroy:
      reply(unique, 0)
      return
    default:
      stats.unknownOpcodes[code] = (stats.unknownOpcodes[code] ?? 0) + 1
      reply(unique, errno.ENOSYS) // FALLOCATE, IOCTL, LSEEK, GETXATTR, STATX …: not a disk's
  }
}

function failWhileOff(unique) {
  stats.failedWhileOff++
  reply(unique, errno.EIO)
}

// ---------------------------------------------------------------------------------------------------------
// The loops: /dev/fuse is read on the libuv threadpool (a blocking read), so the main thread stays free
// for the control channel; each request is answered before the next is read, in arrival order.

const requestBuffer = Buffer.alloc(readBufferBytes)
let stopped = false

function readNext() {
  read(fuse, requestBuffer, 0, requestBuffer.length, null, (failure, count) => {
    if (stopped) return
    if (failure) {
      if (failure.code === 'EINTR' || failure.code === 'EAGAIN' || failure.code === 'ENOENT') return readNext()
      if (failure.code === 'ENODEV') return stop(0) // unmounted, or the connection was aborted
      return fail(`read /dev/fuse: ${failure.message}`)
    }
    try {
      handle(requestBuffer.subarray(0, count))
    } catch (error) {
      return fail(`${opcodeNames[requestBuffer.readUInt32LE(4)] ?? requestBuffer.readUInt32LE(4)}: ${error.stack ?? error}`)
    }
    readNext()
  })
}

function say(line) {
  writeSync(1, line + '\n')
}

function fail(message) {
  say(`FAILED ${message.replace(/\n/g, ' ')}`)
  stop(1)
}

function stop(code) {
  stopped = true
  try {
    closeSync(fuse)
  } catch {
    // already closed
  }
  process.exit(code)
}

let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk) => {
  input += chunk
  let newline
  while ((newline = input.indexOf('\n')) !== -1) {
    const [command, ...numbers] = input
      .slice(0, newline)
      .trim()
      .split(' ')
      .map((word, index) => (index === 0 ? word : Number(word)))
    input = input.slice(newline + 1)
    if (!poweredOn && (command === 'cut' || command === 'arm')) say('FAILED the power is already off')
    else if (command === 'cut') cutNow(numbers[0], 'command')
    else if (command === 'arm') {
      const [seed, fsyncs, ms] = numbers
      armed = { seed, fsyncs, timer: setTimeout(() => cutNow(seed, 'timer'), ms) }
      say('ARMED')
    } else if (command === 'on') {
      poweredOn = true
      say('ON')
    } else if (command === 'stats') say(`STATS ${JSON.stringify({ ...stats, cachedWrites: cache.length, poweredOn })}`)
    else say(`FAILED unknown command ${command}`)
  }
})
// The test process is gone. A read of /dev/fuse is blocked on a threadpool thread, and process.exit would
// wait for that thread forever; SIGKILL ends the process, which closes /dev/fuse and aborts the connection.
process.stdin.on('end', () => process.kill(process.pid, 'SIGKILL'))

const options = `fd=3,rootmode=40000,user_id=0,group_id=0,allow_other,max_read=${writeMax}`
const mount = spawn('mount', ['-i', '-t', 'fuse', '-o', options, 'ringkv-volatile-disk', mountPoint], {
  stdio: ['ignore', 'pipe', 'pipe', fuse],
})
let mountOutput = ''
mount.stdout.on('data', (chunk) => (mountOutput += chunk))
mount.stderr.on('data', (chunk) => (mountOutput += chunk))
mount.on('error', (error) => fail(`mount: ${error.message}`))
mount.on('close', (code) => {
  if (code !== 0) return fail(`mount exited with ${code}: ${mountOutput.trim()}`)
  readNext()
  const waitForInit = () => (initialized ? say(`READY ${JSON.stringify({ mountPoint, sizeBytes })}`) : setTimeout(waitForInit, 5))
  waitForInit()
})
