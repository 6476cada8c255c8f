import { randomBytes, randomInt } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { checksum, checksumCombine, nativeChecksumBytesMin } from './checksum.js'

describe('checksum', () => {
  it('is CRC-32 (IEEE): the standard check value, below and above the native cut-over, continued from a seed', () => {
    expect(checksum(new TextEncoder().encode('123456789'))).toBe(0xcbf43926)
    const long = randomBytes(nativeChecksumBytesMin * 3 + 7)
    const cut = randomInt(1, nativeChecksumBytesMin - 1)
    expect(checksum(long.subarray(cut), checksum(long.subarray(0, cut)))).toBe(checksum(long))
  })

  it('combines the CRCs of two parts into the CRC of both, whatever their lengths', () => {
    const lengths = [0, 1, 2, 3, 7, 8, 31, 32, 33, 511, 4096, 65_537, 1_048_576 + 13]
    for (const firstBytes of [0, 1, 5, 1000]) {
      for (const secondBytes of lengths) {
        const whole = randomBytes(firstBytes + secondBytes)
        const first = whole.subarray(0, firstBytes)
        const second = whole.subarray(firstBytes)
        expect(checksumCombine(checksum(first), checksum(second), secondBytes)).toBe(checksum(whole))
      }
    }
    // Many parts, as a checkpoint's blocks: folding them one by one gives the whole's.
    const parts = Array.from({ length: 50 }, () => randomBytes(randomInt(0, 3000)))
    let folded = 0
    for (const part of parts) folded = checksumCombine(folded, checksum(part), part.length)
    expect(folded).toBe(checksum(Buffer.concat(parts)))
  })

  it('refuses a length that is not a byte count', () => {
    expect(() => checksumCombine(0, 0, -1)).toThrow(RangeError)
    expect(() => checksumCombine(0, 0, 1.5)).toThrow(RangeError)
  })
})
