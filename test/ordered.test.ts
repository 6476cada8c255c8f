// Reading in order, against a sorted model: random puts, deletes, batches and clears over several shards,
// interleaved with iterators of random ranges, directions, limits and seeks, across close and reopen and
// across compaction; iterators kept open across many writes see their snapshot; bad arguments are refused
// with a code. The model is a Map of latin1 strings (one char per byte: they sort as the bytes do).

import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { open, type Engine, type IteratorOptions } from '@ringkv/engine'
import { temporaryDirectory } from './conformance/temp.js'

type Model = Map<string, string>

const latin1 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('latin1')
const bytesOf = (name: string): Uint8Array => new Uint8Array(Buffer.from(name, 'latin1'))

/** What iterator(options) must give over `model`: the sorted entries of the range, reversed, limited. */
function expected(model: Model, options: IteratorOptions): [string, string][] {
  const bound = (key: string | Uint8Array | undefined): string | undefined => (key === undefined ? undefined : latin1(key as Uint8Array))
  const gt = bound(options.gt)
  const gte = bound(options.gte)
  const lt = bound(options.lt)
  const lte = bound(options.lte)
  let names = [...model.keys()]
    .filter(
      (name) =>
        (gt !== undefined ? name > gt : gte === undefined || name >= gte) &&
        (lt !== undefined ? name < lt : lte === undefined || name <= lte),
    )
    .sort()
  if (options.reverse === true) names.reverse()
  const limit = options.limit === undefined || options.limit === -1 ? Infinity : options.limit
  names = names.slice(0, limit)
  return names.map((name) => [name, model.get(name)!])
}

async function entriesOf(db: Engine, options: IteratorOptions, step: number): Promise<[string, string][]> {
  const iterator = db.iterator(options)
  const got: [string, string][] = []
  for (;;) {
    const page = await iterator.nextv(step)
    if (page.length === 0) break
    for (const [key, value] of page) got.push([latin1(key), latin1(value)])
  }
  await iterator.close()
  return got
}

const keyArbitrary = fc.uint8Array({ minLength: 0, maxLength: 6, max: 3 }).map((bytes) => latin1(bytes))
const rangeArbitrary = fc
  .record({
    gt: fc.option(keyArbitrary, { nil: undefined, freq: 2 }),
    gte: fc.option(keyArbitrary, { nil: undefined, freq: 2 }),
    lt: fc.option(keyArbitrary, { nil: undefined, freq: 2 }),
    lte: fc.option(keyArbitrary, { nil: undefined, freq: 2 }),
    reverse: fc.boolean(),
    limit: fc.option(fc.nat(40), { nil: undefined, freq: 2 }),
  })
  .map((range) => {
    const options: IteratorOptions = { reverse: range.reverse }
    for (const name of ['gt', 'gte', 'lt', 'lte'] as const) if (range[name] !== undefined) options[name] = bytesOf(range[name])
    if (range.limit !== undefined) options.limit = range.limit
    return options
  })

type Step =
  | { type: 'put'; key: string; value: string }
  | { type: 'delete'; key: string }
  | { type: 'batch'; puts: { key: string; value: string }[]; deletes: string[] }
  | { type: 'bulk'; keys: string[] }
  | { type: 'clear'; range: IteratorOptions }
  | { type: 'check'; range: IteratorOptions; step: number }
  | { type: 'seek'; range: IteratorOptions; first: number; target: string }
  | { type: 'snapshot'; range: IteratorOptions; writes: { key: string; value: string | null }[] }
  | { type: 'reopen'; compact: boolean }

/** Ranges of most of the keys, without a limit: what a snapshot is tested on (see bulkArbitrary). */
const wideRangeArbitrary: fc.Arbitrary<IteratorOptions> = fc.oneof(
  fc.record({ reverse: fc.boolean() }),
  fc.record({ gte: keyArbitrary.map(bytesOf), reverse: fc.boolean() }),
  fc.record({ lt: fc.constant(bytesOf('\x03\x03')), gt: fc.constant(bytesOf('\x00')), reverse: fc.boolean() }),
)

// Enough keys that a range spans several pages: an iterator reads its first page (64 entries) when it is
// made and the next (256) as soon as that one comes, so a snapshot is only put to the test past about 320.
const bulkArbitrary = fc.record({
  type: fc.constant('bulk' as const),
  keys: fc.array(fc.uint8Array({ minLength: 1, maxLength: 8, max: 3 }).map(latin1), { minLength: 500, maxLength: 3000 }),
})

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ type: fc.constant('put' as const), key: keyArbitrary, value: fc.string({ maxLength: 30 }) }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('delete' as const), key: keyArbitrary }) },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('batch' as const),
      puts: fc.array(fc.record({ key: keyArbitrary, value: fc.string({ maxLength: 10 }) }), { maxLength: 30 }),
      deletes: fc.array(keyArbitrary, { maxLength: 10 }),
    }),
  },
  { weight: 1, arbitrary: bulkArbitrary },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('clear' as const), range: rangeArbitrary }) },
  {
    weight: 3,
    arbitrary: fc.record({ type: fc.constant('check' as const), range: rangeArbitrary, step: fc.integer({ min: 1, max: 50 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ type: fc.constant('seek' as const), range: rangeArbitrary, first: fc.nat(5), target: keyArbitrary }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('snapshot' as const),
      range: fc.oneof(rangeArbitrary, wideRangeArbitrary, wideRangeArbitrary),
      writes: fc.array(fc.record({ key: keyArbitrary, value: fc.option(fc.string({ maxLength: 10 }), { nil: null }) }), { maxLength: 20 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('reopen' as const), compact: fc.boolean() }) },
)

const directories: (() => void)[] = []
afterAll(() => directories.forEach((remove) => remove()))

describe('iteration against a sorted model', () => {
  it('random writes, clears, iterators, seeks and snapshots over 1 and 3 shards, across reopen and compaction', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(1, 3),
        bulkArbitrary,
        fc.array(stepArbitrary, { minLength: 5, maxLength: 40 }),
        async (shards, bulk, rest) => {
          const steps: Step[] = [bulk, ...rest]
          const { directory, remove } = temporaryDirectory('ordered')
          directories.push(remove)
          let db = await open(directory, { shards })
          const model: Model = new Map()
          try {
            for (const step of steps) {
              switch (step.type) {
                case 'put':
                  await db.put(bytesOf(step.key), bytesOf(step.value))
                  model.set(step.key, step.value)
                  break
                case 'delete':
                  await db.delete(bytesOf(step.key))
                  model.delete(step.key)
                  break
                case 'batch':
                  await db.batch([
                    ...step.puts.map(({ key, value }) => ({ type: 'put' as const, key: bytesOf(key), value: bytesOf(value) })),
                    ...step.deletes.map((key) => ({ type: 'delete' as const, key: bytesOf(key) })),
                  ])
                  for (const { key, value } of step.puts) model.set(key, value)
                  for (const key of step.deletes) model.delete(key)
                  break
                case 'bulk':
                  await Promise.all(step.keys.map((key, index) => db.put(bytesOf(key), bytesOf(`bulk ${index}`))))
                  step.keys.forEach((key, index) => model.set(key, `bulk ${index}`))
                  break
                case 'clear':
                  await db.clear(step.range)
                  for (const [name] of expected(model, { ...step.range, limit: undefined, reverse: false })) model.delete(name)
                  break
                case 'check':
                  expect(await entriesOf(db, step.range, step.step)).toEqual(expected(model, step.range))
                  break
                case 'seek': {
                  const iterator = db.iterator(step.range)
                  const all = expected(model, step.range)
                  const before = await iterator.nextv(step.first)
                  expect(before.map(([key]) => latin1(key))).toEqual(all.slice(0, step.first).map(([name]) => name))
                  iterator.seek(bytesOf(step.target))
                  const after = (await iterator.all()).map(([key, value]) => [latin1(key), latin1(value)])
                  // After a seek: the range's entries from the target on, as many as the limit leaves.
                  const from = expected(model, { ...step.range, limit: undefined }).filter(([name]) =>
                    step.range.reverse === true ? name <= step.target : name >= step.target,
                  )
                  const left = (step.range.limit ?? Infinity) - before.length
                  expect(after).toEqual(from.slice(0, left))
                  await iterator.close()
                  break
                }
                case 'snapshot': {
                  const want = expected(model, step.range)
                  const iterator = db.iterator(step.range)
                  const first = await iterator.next()
                  // Writes all along the range too, so that some land where the iterator has not read yet.
                  const spread = want.flatMap(([name], index): { key: string; value: string | null }[] =>
                    index % 37 === 5 ? [{ key: name, value: 'changed' }] : index % 53 === 7 ? [{ key: name, value: null }] : [],
                  )
                  for (const write of [...step.writes, ...spread]) {
                    if (write.value === null) await db.delete(bytesOf(write.key))
                    else await db.put(bytesOf(write.key), bytesOf(write.value))
                    if (write.value === null) model.delete(write.key)
                    else model.set(write.key, write.value)
                  }
                  const rest = (await iterator.all()).map(([key, value]) => [latin1(key), latin1(value)])
                  const got = first === undefined ? rest : [[latin1(first[0]), latin1(first[1])], ...rest]
                  expect(got).toEqual(want)
                  await iterator.close()
                  break
                }
                case 'reopen':
                  if (step.compact) await db.compact()
                  await db.close()
                  db = await open(directory)
                  expect(await entriesOf(db, {}, 1000)).toEqual(expected(model, {}))
                  break
              }
            }
            expect(await entriesOf(db, {}, 7)).toEqual(expected(model, {}))
            expect(await entriesOf(db, { reverse: true }, 1000)).toEqual(expected(model, { reverse: true }))
          } finally {
            await db.close()
            remove()
          }
        },
      ),
      { numRuns: 25, endOnFailure: true }, // a counterexample at once: shrinking reopens databases for minutes
    )
  })

  it('an iterator open across thousands of writes to its range, read in pages between them, gives its snapshot', async () => {
    const { directory, remove } = temporaryDirectory('ordered-snapshot')
    directories.push(remove)
    const db = await open(directory, { shards: 2 })
    try {
      const key = (number: number): string => `k${String(number).padStart(6, '0')}`
      await db.batch(Array.from({ length: 20_000 }, (_, number) => ({ type: 'put' as const, key: key(number), value: `v${number}` })))
      const iterator = db.iterator({ gte: key(1000) })
      const seen: string[] = []
      let round = 0
      for (;;) {
        const page = await iterator.nextv(500)
        if (page.length === 0) break
        for (const [entryKey, value] of page) seen.push(`${latin1(entryKey)}=${latin1(value)}`)
        // Between pages: overwrite, delete and add keys all over the range, ahead of and behind the iterator.
        const writes = Array.from({ length: 400 }, (_, index) => (round * 7919 + index * 104_729) % 22_000)
        await db.batch(
          writes.map((number, index) =>
            index % 3 === 0
              ? { type: 'delete' as const, key: key(number) }
              : { type: 'put' as const, key: key(number), value: `w${round}` },
          ),
        )
        round++
      }
      expect(round).toBeGreaterThan(30)
      expect(seen).toEqual(Array.from({ length: 19_000 }, (_, index) => `${key(index + 1000)}=v${index + 1000}`))
      await iterator.close()
      expect(db.stats().shards.every((shard) => shard.iteratorSnapshotBytes === 0)).toBe(true)
    } finally {
      await db.close()
    }
  })

  it('a get, getMany or has made before a write in the same tick never sees that write', async () => {
    const { directory, remove } = temporaryDirectory('ordered-read-order')
    directories.push(remove)
    const db = await open(directory, { shards: 2 })
    try {
      let seen = 0
      for (let round = 0; round < 300; round++) {
        const key = `r${round}`
        const reads = [db.get(key), db.getMany([key]), db.has(key)] as const
        const write = db.put(key, 'later')
        const [value, many, has] = await Promise.all(reads)
        await write
        if (value !== undefined || many[0] !== undefined || has) seen++
      }
      expect(seen).toBe(0)
    } finally {
      await db.close()
    }
  })

  it('refuses bad ranges, limits and targets with a code, and an iterator after close or after its database closed', async () => {
    const { directory, remove } = temporaryDirectory('ordered-bad')
    directories.push(remove)
    const db = await open(directory, { shards: 2 })
    const cases: [() => unknown, ErrorConstructor, string][] = [
      [() => db.iterator({ gt: 5 as never }), TypeError, 'INVALID_RANGE'],
      [() => db.iterator({ lte: null as never }), TypeError, 'INVALID_RANGE'],
      [() => db.keys({ lt: 'x'.repeat(70_000) }), RangeError, 'INVALID_RANGE'],
      [() => db.iterator({ limit: -2 }), RangeError, 'INVALID_LIMIT'],
      [() => db.iterator({ limit: 1.5 }), RangeError, 'INVALID_LIMIT'],
      [() => db.values({ limit: '10' as never }), TypeError, 'INVALID_LIMIT'],
      [() => db.iterator({ limit: Number.NaN }), TypeError, 'INVALID_LIMIT'],
      [() => db.iterator({ reverse: 'yes' as never }), TypeError, 'INVALID_OPTION'],
      [() => db.iterator('a' as never), TypeError, 'INVALID_OPTION'],
      [() => db.iterator().seek(7 as never), TypeError, 'INVALID_KEY'],
    ]
    for (const [call, type, code] of cases) {
      let thrown: unknown
      try {
        call()
      } catch (error) {
        thrown = error
      }
      expect(thrown, code).toBeInstanceOf(type)
      expect((thrown as { code: string }).code).toBe(code)
    }
    await expect(db.clear({ gte: {} as never })).rejects.toMatchObject({ code: 'INVALID_RANGE' })
    await expect(db.iterator().nextv(-1)).rejects.toBeInstanceOf(RangeError)
    await db.put('a', '1')
    const closed = db.iterator()
    await closed.close()
    await expect(closed.next()).rejects.toMatchObject({ code: 'ITERATOR_CLOSED' })
    const open1 = db.iterator()
    expect(open1).toBeDefined()
    await db.close()
    await expect(open1.next()).rejects.toMatchObject({ code: 'ITERATOR_CLOSED' })
    expect(() => db.iterator()).toThrow(expect.objectContaining({ code: 'ENGINE_CLOSED' }))
  })
})

describe('range reads in place (the shard ordered view read on the caller thread)', () => {
  const key = (number: number): string => `k${String(number).padStart(6, '0')}`
  const inPlace = (db: Engine): number => db.stats().shards.reduce((sum, shard) => sum + shard.pagesReadInPlace, 0)

  it('a range query whose answer fits its first page costs no message and no snapshot, and answers as the shards do', async () => {
    const { directory, remove } = temporaryDirectory('ordered-in-place')
    directories.push(remove)
    const db = await open(directory, { shards: 2 })
    try {
      const model: Model = new Map()
      const batch = Array.from({ length: 3000 }, (_, number) => ({ type: 'put' as const, key: key(number * 3), value: `v${number}` }))
      await db.batch(batch)
      for (const { key: name, value } of batch) model.set(name, value)
      // Reads through both shards: each applies the batch (its writers were answered first): the views are current.
      await db.getMany(batch.slice(0, 64).map(({ key: name }) => name))
      let limitedInPlace = 0
      for (let query = 0; query < 300; query++) {
        const start = key((query * 7919) % 9100)
        const options: IteratorOptions = query % 3 === 0 ? { lte: start, reverse: true, limit: 10 } : { gte: start, limit: 10 }
        const before = inPlace(db)
        const got = (await db.iterator(options).all()).map(([entryKey, value]) => [latin1(entryKey), latin1(value)])
        limitedInPlace += inPlace(db) - before
        expect(got).toEqual(expected(model, options))
        // The same answer read through the shards (no limit: more than a page, never in place), cut to 10.
        const paged = await entriesOf(db, { ...options, limit: undefined }, 10)
        expect(got).toEqual(paged.slice(0, 10))
      }
      // Every limited query read both shards in place (the unlimited ones, only where a shard's first page was all).
      expect(limitedInPlace).toBe(300 * 2)
      expect(db.stats().shards.every((shard) => shard.iteratorsOpen === 0)).toBe(true)
    } finally {
      await db.close()
    }
  })

  it('a write acknowledged before a read in place is in it, while other writers keep the shards busy', async () => {
    const { directory, remove } = temporaryDirectory('ordered-in-place-ryw')
    directories.push(remove)
    const db = await open(directory, { shards: 2 })
    let storming = true
    const storm = (async () => {
      let number = 0
      while (storming) await Promise.all(Array.from({ length: 64 }, () => db.put(`storm${number++ % 5000}`, 'x'.repeat(50))))
    })()
    try {
      const before = inPlace(db)
      let missed = 0
      for (let round = 0; round < 400; round++) {
        await db.put(key(round), `v${round}`)
        const got = await db.iterator({ gte: key(round), lte: key(round) }).all()
        if (got.length !== 1 || latin1(got[0]![1]) !== `v${round}`) missed++
        await db.delete(key(round))
        if ((await db.keys({ gte: key(round), lte: key(round) }).all()).length !== 0) missed++
      }
      expect(missed).toBe(0)
      expect(inPlace(db) - before).toBeGreaterThan(0)
    } finally {
      storming = false
      await storm
      await db.close()
    }
  })

  it('a read in place sees batches whole, never half applied, while batches land', async () => {
    const { directory, remove } = temporaryDirectory('ordered-in-place-torn')
    directories.push(remove)
    const db = await open(directory, { shards: 1 })
    await db.batch(Array.from({ length: 10 }, (_, column) => ({ type: 'put' as const, key: `row${column}`, value: 'first' })))
    let writing = true
    const writers = Array.from({ length: 4 }, async (_, writer) => {
      for (let round = 0; writing; round++) {
        const stamp = `w${writer}.${round}`
        // Ten keys of a row, all with the same stamp, in one batch; and an entry that moves (another size).
        await db.batch([
          ...Array.from({ length: 10 }, (_, column) => ({ type: 'put' as const, key: `row${column}`, value: stamp })),
          { type: 'put' as const, key: `row${round % 10}x`, value: 'y'.repeat(round % 200) },
        ])
      }
    })
    try {
      const before = inPlace(db)
      let mixed = 0
      let reads = 0
      for (let round = 0; round < 3000 || inPlace(db) - before < 100; round++) {
        const row = await db.iterator({ gte: 'row0', lt: 'row9\xff', limit: 10 }).all()
        reads++
        const stamps = new Set(row.filter(([entryKey]) => entryKey.length === 4).map(([, value]) => latin1(value)))
        if (stamps.size !== 1) mixed++
        if (round % 50 === 0) await new Promise((resolve) => setImmediate(resolve))
        if (round > 50_000) break
      }
      expect(mixed).toBe(0)
      expect(reads).toBeGreaterThan(0)
      expect(inPlace(db) - before).toBeGreaterThanOrEqual(100)
    } finally {
      writing = false
      await Promise.all(writers)
      await db.close()
    }
  })

  it('a seek on an iterator read in place keeps its snapshot, or fails with ITERATOR_EXPIRED when it cannot', async () => {
    const { directory, remove } = temporaryDirectory('ordered-in-place-seek')
    directories.push(remove)
    const db = await open(directory, { shards: 1 })
    try {
      await db.batch(Array.from({ length: 200 }, (_, number) => ({ type: 'put' as const, key: key(number), value: `v${number}` })))
      // A read through the shard: it applies the batch (its writers were answered first), so the view is current.
      await db.get(key(0))
      const names = (entries: [Uint8Array, Uint8Array][]): string[] =>
        entries.map(([entryKey, value]) => `${latin1(entryKey)}=${latin1(value)}`)
      const want = (from: number, count: number): string[] =>
        Array.from({ length: count }, (_, index) => `${key(from + index)}=v${from + index}`)

      // The whole range in its first page: a seek after writes is answered from it, as of the snapshot.
      const before = inPlace(db)
      const whole = db.iterator({ gte: key(100), lt: key(130) })
      const first = inPlace(db) - before
      await db.put(key(120), 'changed')
      await db.delete(key(125))
      whole.seek(key(118))
      expect(names(await whole.all())).toEqual(want(118, 12))
      expect(first).toBe(1)

      // Cut by its limit, no write since: the seek reads in place again, the same snapshot.
      await db.get(key(0))
      const cut = db.iterator({ gte: key(0), limit: 10 })
      cut.seek(key(50))
      expect(names(await cut.all())).toEqual(want(50, 10))

      // Cut by its limit, written since: within what it read, still answered; past it, expired.
      await db.get(key(0))
      const within = db.iterator({ gte: key(0), limit: 10 })
      const past = db.iterator({ gte: key(0), limit: 10 })
      await db.put(key(2), 'changed')
      within.seek(key(0))
      expect(names(await within.all())).toEqual(want(0, 10))
      past.seek(key(3))
      await expect(past.next()).rejects.toMatchObject({ code: 'ITERATOR_EXPIRED' })
      await past.close()
      expect(db.stats().shards[0]!.iteratorsOpen).toBe(0)
    } finally {
      await db.close()
    }
  })
})
