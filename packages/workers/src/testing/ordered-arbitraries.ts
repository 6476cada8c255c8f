// What the ordered view's property tests draw (table/ordered.test.ts, table/ordered-reader.test.ts): keys
// over a small alphabet, the empty key among them, so that they share prefixes and many are prefixes of
// others; ranges over them; batches of puts (short values, and long ones that move entries to other size
// classes) and deletes.

import fc from 'fast-check'
import type { KeyRange } from '../protocol.js'

export const keyArbitrary = fc.uint8Array({ minLength: 0, maxLength: 12, max: 2 })

export const rangeArbitrary: fc.Arbitrary<KeyRange> = fc.record({
  low: fc.option(keyArbitrary, { nil: undefined }),
  lowExclusive: fc.boolean(),
  high: fc.option(keyArbitrary, { nil: undefined }),
  highExclusive: fc.boolean(),
})

export const everything: KeyRange = { low: undefined, lowExclusive: false, high: undefined, highExclusive: false }

export interface Step {
  put: boolean
  key: Uint8Array
  valueLength: number
}

/** Up to `batchesMax` batches of up to 300 steps each. */
export function batchesArbitrary(batchesMax: number): fc.Arbitrary<Step[][]> {
  const step = fc.record({ put: fc.boolean(), key: keyArbitrary, valueLength: fc.oneof(fc.nat(40), fc.integer({ min: 300, max: 2000 })) })
  return fc.array(fc.array(step, { maxLength: 300 }), { minLength: 1, maxLength: batchesMax })
}
