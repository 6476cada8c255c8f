// The simulated storage does what it says: nothing completes by itself, a crash keeps exactly the durable
// image plus whole sectors of unsynced writes, a seed gives the same run, and each fault does what its
// name says.
import { describe, expect, it } from 'vitest'
import type { IoFailure } from '../errors.js'
import { Prng, sectorBytes, SimulatedStorage, type SimulatedFile } from './simulated-storage.js'

type Outcome = 'waiting' | null | IoFailure

function writeTracked(file: SimulatedFile, bytes: Uint8Array, fileOffset: number): { outcome: Outcome } {
  const state: { outcome: Outcome } = { outcome: 'waiting' }
  file.writeDurable(bytes, fileOffset, (failure) => {
    if (state.outcome !== 'waiting') throw new Error('called back twice')
    state.outcome = failure
  })
  return state
}

function filled(length: number, byte: number): Uint8Array {
  return new Uint8Array(length).fill(byte)
}

/** A storage with one file whose durable image is `durable`. */
function storageWith(seed: number, durable: Uint8Array, options: Partial<ConstructorParameters<typeof SimulatedStorage>[0]> = {}) {
  const storage = new SimulatedStorage({ seed, ...options })
  const file = storage.open('/d/log', 'intent') as SimulatedFile
  if (durable.length > 0) {
    writeTracked(file, durable, 0)
    storage.runUntilIdle()
  }
  return { storage, file }
}

describe('simulated storage: completion', () => {
  it('completes nothing by itself: the write, then its fdatasync, each at a step', () => {
    const { storage, file } = storageWith(1, new Uint8Array(0))
    const write = writeTracked(file, filled(1000, 7), 0)
    expect(write.outcome).toBe('waiting')
    expect(storage.pendingCount).toBe(1)
    expect(storage.step()).toBe(true) // the write reaches the cache
    expect(write.outcome).toBe('waiting')
    expect(file.readAll()).toEqual(filled(1000, 7))
    expect(file.durable.length).toBe(0)
    expect(storage.step()).toBe(true) // the fdatasync
    expect(write.outcome).toBeNull()
    expect(file.durable.contents()).toEqual(filled(1000, 7))
    expect(storage.step()).toBe(false)
  })

  it('completes operations of two logs in every interleaving, by seed', () => {
    const orders = new Set<string>()
    for (let seed = 0; seed < 64; seed++) {
      const storage = new SimulatedStorage({ seed })
      const intent = storage.open('/d/intent', 'intent')
      const completion = storage.open('/d/completion', 'completion')
      const order: string[] = []
      intent.writeDurable(filled(10, 1), 0, () => order.push('intent'))
      completion.writeDurable(filled(10, 2), 0, () => order.push('completion'))
      storage.runUntilIdle()
      orders.add(order.join(','))
    }
    expect(orders).toEqual(new Set(['intent,completion', 'completion,intent']))
  })

  it('zero-fills durably, and calls back even when the file is long enough already', () => {
    const { storage, file } = storageWith(2, filled(100, 9))
    const outcomes: (IoFailure | null)[] = []
    file.zeroFill(4096, (failure) => outcomes.push(failure))
    file.zeroFill(50, (failure) => outcomes.push(failure))
    expect(outcomes).toEqual([])
    storage.runUntilIdle()
    expect(outcomes).toEqual([null, null])
    const contents = file.durable.contents()
    expect(contents.length).toBe(4096)
    expect(contents.subarray(0, 100)).toEqual(filled(100, 9))
    expect(contents.subarray(100).every((byte) => byte === 0)).toBe(true)
  })

  it('truncates durably; lists, reads and removes files', () => {
    const { storage, file } = storageWith(3, filled(3000, 5))
    writeTracked(file, filled(10, 6), 3000) // dirty until truncate syncs it
    storage.step()
    file.truncate(1000)
    expect(file.durable.contents()).toEqual(filled(1000, 5))
    storage.open('/d/other', 'completion')
    storage.open('/elsewhere/x', 'completion')
    expect(storage.list('/d')).toEqual(['log', 'other'])
    expect(storage.read('/d/log')).toEqual(filled(1000, 5))
    storage.remove('/d/other')
    expect(storage.list('/d')).toEqual(['log'])
    expect(() => storage.read('/d/other')).toThrow(/ENOENT/)
  })
})

describe('simulated storage: crash', () => {
  it('keeps exactly the durable image plus whole sectors of each unsynced write', () => {
    const old = new Prng(99).fill(new Uint8Array(3 * sectorBytes + 100))
    const offset = 300 // not sector aligned: the first and last sectors are partial
    const length = 5 * sectorBytes
    const mixes = new Set<string>()
    for (let seed = 0; seed < 100; seed++) {
      const { storage, file } = storageWith(seed, old)
      const fresh = new Prng(seed + 1000).fill(new Uint8Array(length))
      writeTracked(file, fresh, offset)
      storage.step() // in the cache, not synced
      expect(storage.pendingCount).toBe(1)
      const survivor = storage.crash().read('/d/log')

      // Outside the write: the durable image, unchanged.
      expect(survivor.subarray(0, offset)).toEqual(old.subarray(0, offset))
      // Each sector of the write: all old (or zeros past the old end, or cut off) or all new.
      const mix: string[] = []
      const firstSector = Math.floor(offset / sectorBytes) * sectorBytes
      for (let sector = firstSector; sector < offset + length; sector += sectorBytes) {
        const from = Math.max(sector, offset)
        const to = Math.min(sector + sectorBytes, offset + length)
        const seen = survivor.subarray(from, to)
        const wasNew = seen.length === to - from && Buffer.from(seen).equals(Buffer.from(fresh.subarray(from - offset, to - offset)))
        const wasOld = seen.length === 0 || [...seen].every((byte, index) => byte === (from + index < old.length ? old[from + index] : 0))
        expect(wasNew || wasOld, `seed ${seed}, sector at ${sector}`).toBe(true)
        mix.push(wasNew ? 'n' : 'o')
      }
      // The file grows only as far as its last surviving sector.
      const newSectors = mix.map((kind, index) => (kind === 'n' ? index : -1)).filter((index) => index >= 0)
      const lastNewEnd = newSectors.length === 0 ? 0 : Math.min(firstSector + (newSectors.at(-1)! + 1) * sectorBytes, offset + length)
      expect(survivor.length).toBe(Math.max(old.length, lastNewEnd))
      mixes.add(mix.join(''))
    }
    expect(mixes.size).toBeGreaterThan(10) // torn in many ways, not only all-or-nothing
    expect(mixes).toContain('oooooo')
    expect(mixes).toContain('nnnnnn')
  })

  it('keeps a synced write whole, and no pending operation ever calls back', () => {
    const { storage, file } = storageWith(4, new Uint8Array(0))
    const synced = writeTracked(file, filled(2000, 1), 0)
    storage.runUntilIdle()
    const pending = writeTracked(file, filled(10, 2), 2000)
    const crashed = storage.crash()
    expect(synced.outcome).toBeNull()
    expect(crashed.read('/d/log').subarray(0, 2000)).toEqual(filled(2000, 1))
    expect(pending.outcome).toBe('waiting')
    expect(() => storage.step()).toThrow(/crashed/)
    expect(crashed.step()).toBe(false)
  })

  it('gives the same run for the same seed, byte for byte, and another for another seed', () => {
    const run = (seed: number) => {
      let storage = new SimulatedStorage({ seed, faults: { lost: 0.1, misdirected: 0.1, fsyncEio: 0.1, bitFlip: 1 } })
      const files = [storage.open('/d/a', 'intent'), storage.open('/d/b', 'completion')]
      const outcomes: string[] = []
      for (let index = 0; index < 40; index++) {
        const file = files[index % 2]!
        file.writeDurable(new Prng(index).fill(new Uint8Array(700)), index * 700, (failure) =>
          outcomes.push(`${index}:${failure?.code ?? 'ok'}`),
        )
        if (index % 3 === 0) storage.step()
      }
      storage.step()
      storage = storage.crash()
      return { outcomes, digest: storage.traceDigest, a: storage.read('/d/a'), b: storage.read('/d/b') }
    }
    expect(run(7)).toEqual(run(7))
    expect(run(7)).not.toEqual(run(8))
  })
})

describe('simulated storage: faults', () => {
  const base = filled(4 * sectorBytes, 0xaa)

  it('lost: reported successful, never applied', () => {
    const { storage, file } = storageWith(5, base)
    storage.inject({ kind: 'lost' })
    const write = writeTracked(file, filled(100, 0x55), 512)
    storage.runUntilIdle()
    expect(write.outcome).toBeNull()
    expect(storage.crash().read('/d/log')).toEqual(base)
    expect(storage.faults).toMatchObject([{ kind: 'lost', fileOffset: 512, length: 100, log: 'intent' }])
  })

  it('misdirected: lands whole at another sector-shifted offset of the same file, not where it should', () => {
    const { storage, file } = storageWith(6, base)
    storage.inject({ kind: 'misdirected' })
    const bytes = filled(100, 0x55)
    const write = writeTracked(file, bytes, 600)
    storage.runUntilIdle()
    expect(write.outcome).toBeNull()
    const [fault] = storage.faults
    const landedAt = fault!.landedAt!
    expect(landedAt).not.toBe(600)
    expect((landedAt - 600) % sectorBytes).toBe(0)
    const survivor = storage.crash().read('/d/log')
    expect(survivor.subarray(landedAt, landedAt + 100)).toEqual(bytes)
    const expected = base.slice()
    expected.set(bytes, landedAt)
    expect(survivor).toEqual(expected)
  })

  it('writeEio and writeEnospc: the callback gets the errno, nothing is applied, no fdatasync runs', () => {
    for (const [kind, errno, code] of [
      ['writeEio', 5, 'EIO'],
      ['writeEnospc', 28, 'ENOSPC'],
    ] as const) {
      const { storage, file } = storageWith(7, base)
      storage.inject({ kind })
      const write = writeTracked(file, filled(100, 0x55), 0)
      expect(storage.step()).toBe(true)
      expect(write.outcome).toEqual({ operation: 'write', errno, code, path: '/d/log' })
      expect(storage.pendingCount).toBe(0)
      expect(storage.crash().read('/d/log')).toEqual(base)
    }
  })

  it('an injected fault waits for the operation it matches (log, operation, after)', () => {
    const { storage, file } = storageWith(8, base)
    const other = storage.open('/d/other', 'completion') as SimulatedFile
    storage.inject({ kind: 'writeEio', log: 'intent', operation: 'writeDurable', after: 1 })
    const outcomes = [writeTracked(other, filled(10, 1), 0), writeTracked(file, filled(10, 1), 0)]
    storage.runUntilIdle()
    file.zeroFill(8192, () => {})
    storage.runUntilIdle()
    outcomes.push(writeTracked(file, filled(10, 1), 10))
    storage.runUntilIdle()
    expect(outcomes.map((outcome) => (outcome.outcome === null ? 'ok' : (outcome.outcome as IoFailure).code))).toEqual(['ok', 'ok', 'EIO'])
  })

  it('fsyncEio: the callback gets EIO; each dirty sector reached the disk or not; the file is clean after', () => {
    const mixes = new Set<string>()
    for (let seed = 0; seed < 40; seed++) {
      const { storage, file } = storageWith(seed, base)
      storage.inject({ kind: 'fsyncEio' })
      const fresh = filled(4 * sectorBytes, 0x55)
      const write = writeTracked(file, fresh, 0)
      storage.runUntilIdle()
      expect(write.outcome).toEqual({ operation: 'fsync', errno: 5, code: 'EIO', path: '/d/log' })
      expect(file.dirty).toEqual([])
      const durable = file.durable.contents()
      expect(storage.crash().read('/d/log')).toEqual(durable) // nothing left to tear: the kernel called it clean
      let mix = ''
      for (let sector = 0; sector < durable.length; sector += sectorBytes) {
        const bytes = durable.subarray(sector, sector + sectorBytes)
        expect(bytes.every((byte) => byte === bytes[0])).toBe(true)
        mix += bytes[0] === 0x55 ? 'n' : 'o'
      }
      mixes.add(mix)
    }
    expect(mixes.size).toBeGreaterThan(4)
  })

  it('bitFlip: exactly one bit of acknowledged durable data flips', () => {
    const storage = new SimulatedStorage({ seed: 9, faults: { bitFlip: 1 } })
    const file = storage.open('/d/log', 'intent') as SimulatedFile
    file.zeroFill(8192, () => {})
    storage.runUntilIdle()
    const data = new Prng(1).fill(new Uint8Array(300))
    writeTracked(file, data, 1000)
    storage.runUntilIdle()
    const before = file.durable.contents()
    const after = storage.crash().read('/d/log')
    let flipped = 0
    for (let index = 0; index < before.length; index++) {
      const difference = before[index]! ^ after[index]!
      if (difference === 0) continue
      expect(index).toBeGreaterThanOrEqual(1000) // in the acknowledged write, not the zero fill
      expect(index).toBeLessThan(1300)
      expect(difference & (difference - 1)).toBe(0)
      flipped++
    }
    expect(flipped).toBe(1)
    expect(storage.faults).toMatchObject([{ kind: 'bitFlip', path: '/d/log' }])
  })

  it('rates: a rate of 1 hits every operation it can', () => {
    const storage = new SimulatedStorage({ seed: 10, faults: { lost: 1 } })
    const file = storage.open('/d/log', 'intent') as SimulatedFile
    for (let index = 0; index < 5; index++) writeTracked(file, filled(10, 1), index * 10)
    file.zeroFill(4096, () => {}) // a zero fill is never lost
    storage.runUntilIdle()
    expect(storage.faults.map((fault) => fault.kind)).toEqual(['lost', 'lost', 'lost', 'lost', 'lost'])
    expect(storage.crash().read('/d/log')).toEqual(new Uint8Array(4096))
  })

  it('acknowledgeBeforeSync (deliberately broken): calls back when the write reaches the cache, so a crash can lose it', () => {
    let lost = 0
    for (let seed = 0; seed < 20; seed++) {
      const { storage, file } = storageWith(seed, new Uint8Array(0), { acknowledgeBeforeSync: true })
      const write = writeTracked(file, filled(2048, 3), 0)
      storage.step()
      expect(write.outcome).toBeNull()
      expect(file.dirty).toHaveLength(1)
      if (!Buffer.from(storage.crash().read('/d/log')).equals(Buffer.from(filled(2048, 3)))) lost++
    }
    expect(lost).toBeGreaterThan(0)
  })
})
