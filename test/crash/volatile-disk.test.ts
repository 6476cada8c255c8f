// The volatile disk itself (volatile-disk.ts), before any file system trusts it: a write it has not flushed
// may be lost at a power cut, exactly as the cut's seed says (gone, whole, or torn by sector); a flushed
// write never is; a loop device over it has a write-back cache, and its cache flush (an fsync of the block
// device) reaches the disk as FUSE_FSYNC, while a write it only wrote back does not become stable.
import { execFileSync } from 'node:child_process'
import { closeSync, fsyncSync, openSync, readFileSync, readSync, writeSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { model } from './harness.js'
import { announceSkip, loopSkipReason } from './loopfs.js'
import { abortAllVolatileDisks, destroyAllVolatileDisks, VolatileDisk, volatileDiskSkipReason, type CutReport } from './volatile-disk.js'

const sectorBytes = 512
const diskBytes = 64 * 1024 * 1024
const skip = announceSkip('volatile disk', loopSkipReason([]) ?? volatileDiskSkipReason())

afterAll(() => {
  abortAllVolatileDisks()
  destroyAllVolatileDisks()
})

/** The fate the cut gives a single cached write under `seed`: the server's first draw (mulberry32, as model.mjs). */
function fateOf(seed: number): 'vanished' | 'whole' | 'torn' {
  return (['vanished', 'whole', 'torn'] as const)[Math.floor(model.random(seed).next() * 3)]!
}

/** The first seed from 1 whose cut gives a single cached write this fate. */
function seedWhere(fate: 'vanished' | 'whole' | 'torn'): number {
  for (let seed = 1; ; seed++) if (fateOf(seed) === fate) return seed
}

/** For a torn single write of `sectors` sectors under `seed`: which sectors keep the new bytes. */
function tornSectorsKept(seed: number, sectors: number): boolean[] {
  const random = model.random(seed)
  random.next() // the fate
  return Array.from({ length: sectors }, () => random.next() >= 0.5)
}

/** `sectors` sectors, each filled with its own byte (`tag` + its index), so a read says which survived. */
function pattern(tag: number, sectors: number): Buffer {
  const bytes = Buffer.alloc(sectors * sectorBytes)
  for (let sector = 0; sector < sectors; sector++) bytes.fill((tag + sector) & 0xff, sector * sectorBytes, (sector + 1) * sectorBytes)
  return bytes
}

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r')
  try {
    const bytes = Buffer.alloc(length)
    expect(readSync(fd, bytes, 0, length, offset)).toBe(length)
    return bytes
  } finally {
    closeSync(fd)
  }
}

function writeAt(path: string, offset: number, bytes: Buffer, flush: boolean): void {
  const fd = openSync(path, 'r+')
  try {
    expect(writeSync(fd, bytes, 0, bytes.length, offset)).toBe(bytes.length)
    if (flush) fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/** Which sectors of `bytes` hold `written`'s bytes (true) or zeros, the disk's old content (false). */
function sectorsNew(bytes: Buffer, written: Buffer): boolean[] {
  const result: boolean[] = []
  for (let offset = 0; offset < bytes.length; offset += sectorBytes) {
    const sector = bytes.subarray(offset, offset + sectorBytes)
    if (sector.equals(written.subarray(offset, offset + sectorBytes))) result.push(true)
    else if (sector.every((byte) => byte === 0)) result.push(false)
    else throw new Error(`sector at ${offset} is neither old nor new`)
  }
  return result
}

describe.skipIf(skip !== undefined)('a disk with a volatile write cache (FUSE)', () => {
  let disk: VolatileDisk
  let offset = 0
  /** A fresh place on the disk for each case, so each starts from zeros. */
  const nextOffset = () => (offset += 1024 * 1024)

  beforeAll(async () => {
    disk = await VolatileDisk.start(diskBytes)
  })

  /** Writes 8 sectors at a fresh offset, flushed or not, cuts with `seed`, powers on, and returns what survived. */
  async function writeCutRead(seed: number, flush: boolean): Promise<{ survived: boolean[]; cut: CutReport }> {
    const at = nextOffset()
    const written = pattern(at / 1024 / 1024, 8)
    writeAt(disk.image, at, written, flush)
    expect(readAt(disk.image, at, written.length).equals(written), 'a read sees the cache').toBe(true)
    const cut = await disk.cut(seed)
    expect(() => readAt(disk.image, at, sectorBytes), 'a cut disk answers nothing').toThrow(/EIO|input\/output/i)
    expect(() => writeAt(disk.image, at, written, false), 'a cut disk takes no write').toThrow(/EIO|input\/output/i)
    await disk.powerOn()
    return { survived: sectorsNew(readAt(disk.image, at, written.length), written), cut }
  }

  it('a write it has not flushed is resolved by the seed: gone, whole, or torn by sector', async () => {
    const gone = await writeCutRead(seedWhere('vanished'), false)
    expect(gone.cut).toMatchObject({ cachedWrites: 1, vanished: 1, sectorsLost: 8 })
    expect(gone.survived).toEqual(new Array(8).fill(false))

    const whole = await writeCutRead(seedWhere('whole'), false)
    expect(whole.cut).toMatchObject({ cachedWrites: 1, whole: 1, sectorsKept: 8 })
    expect(whole.survived).toEqual(new Array(8).fill(true))

    // The first torn seed whose tear keeps some sectors and loses others, so the case shows a tear.
    let tornSeed = seedWhere('torn')
    const mixed = (seed: number) => new Set(tornSectorsKept(seed, 8)).size === 2
    while (fateOf(tornSeed) !== 'torn' || !mixed(tornSeed)) tornSeed++
    const torn = await writeCutRead(tornSeed, false)
    const expected = tornSectorsKept(tornSeed, 8)
    expect(torn.cut).toMatchObject({ cachedWrites: 1, torn: 1, sectorsKept: expected.filter(Boolean).length })
    expect(torn.survived).toEqual(expected)
  })

  it('a flushed write survives every cut', async () => {
    for (const fate of ['vanished', 'whole', 'torn'] as const) {
      const flushed = await writeCutRead(seedWhere(fate), true)
      expect(flushed.cut, `cut with a seed that would leave a cached write ${fate}`).toMatchObject({ cachedWrites: 0 })
      expect(flushed.survived).toEqual(new Array(8).fill(true))
    }
  })

  it('an armed cut fires as the n-th flush arrives: that flush fails, and only the writes since the last one are at risk', async () => {
    const gone = seedWhere('vanished')
    const flushedAt = nextOffset()
    const cachedAt = nextOffset()
    const flushedBytes = pattern(0x10, 8)
    const cachedBytes = pattern(0x20, 8)
    const { cut } = await disk.armCut(gone, 2, 30_000)
    writeAt(disk.image, flushedAt, flushedBytes, true) // flush 1: this write is stable
    const fd = openSync(disk.image, 'r+')
    try {
      writeSync(fd, cachedBytes, 0, cachedBytes.length, cachedAt)
      expect(() => fsyncSync(fd), 'flush 2 is where the power fails').toThrow(/EIO|input\/output/i)
    } finally {
      closeSync(fd)
    }
    expect(await cut).toMatchObject({ trigger: 'fsync', cachedWrites: 1, vanished: 1 })
    await disk.powerOn()
    expect(sectorsNew(readAt(disk.image, flushedAt, flushedBytes.length), flushedBytes)).toEqual(new Array(8).fill(true))
    expect(sectorsNew(readAt(disk.image, cachedAt, cachedBytes.length), cachedBytes)).toEqual(new Array(8).fill(false))
  })

  it('a loop device over it has a write-back cache whose flush arrives as FSYNC; what it only wrote back is lost', async () => {
    const device = execFileSync('losetup', ['--find', '--show', disk.image], { encoding: 'utf8' }).trim()
    try {
      const name = device.replace('/dev/', '')
      expect(readFileSync(`/sys/block/${name}/queue/write_cache`, 'utf8').trim()).toBe('write back')
      const gone = seedWhere('vanished')

      // Written back (the last close of a block device writes its dirty pages back) but never flushed.
      let at = nextOffset()
      const before = await disk.stats()
      const unflushed = pattern(0x40, 8)
      writeAt(device, at, unflushed, false)
      const written = await disk.stats()
      expect(written.writes, 'the loop device wrote to the disk').toBeGreaterThan(before.writes)
      expect(written.fsyncs, 'and sent no cache flush').toBe(before.fsyncs)
      expect(written.cachedWrites).toBeGreaterThan(0)
      await disk.cut(gone)
      await disk.powerOn()
      expect(sectorsNew(readAt(disk.image, at, unflushed.length), unflushed)).toEqual(new Array(8).fill(false))

      // fsync of the block device: a REQ_PREFLUSH, which the loop device turns into FUSE_FSYNC.
      at = nextOffset()
      const flushedBytes = pattern(0x80, 8)
      writeAt(device, at, flushedBytes, true)
      const flushed = await disk.stats()
      expect(flushed.fsyncs, 'the flush arrived as FSYNC').toBeGreaterThan(written.fsyncs)
      expect(flushed.cachedWrites).toBe(0)
      const cut = await disk.cut(gone)
      expect(cut.cachedWrites).toBe(0)
      await disk.powerOn()
      expect(sectorsNew(readAt(disk.image, at, flushedBytes.length), flushedBytes)).toEqual(new Array(8).fill(true))
    } finally {
      execFileSync('losetup', ['-d', device])
    }
  })
})
