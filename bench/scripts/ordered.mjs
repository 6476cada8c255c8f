// Reading in order: ringkv's iterators against lmdb-js's getRange and classic-level's iterator, on the same
// 1,000,000 entries (16-byte keys, 100-byte values) loaded into each, in one run, in interleaved rounds:
// - a full ordered scan, in entries/s (ringkv with `for await` over iterator(), and with nextv(1000));
// - range queries of 10 entries from a random start (an existing key's number, drawn at random), in
//   queries/s, by C closed-loop clients (one query in flight per client);
// Each round runs every engine once per measure, in turn (the order rotates each round), so the machine's
// slow minutes fall on all of them; the table gives each one's median and min–max over the rounds.
// Keys are loaded in one order (--order hashed | sequential; both by default, one after the other): an
// ordered engine holds them sorted either way, but a B-tree loaded in random order has fuller or emptier
// pages than one loaded in order, which is what a scan walks.
//
//   npx -y pnpm@10 run build && npx -y pnpm@10 --filter @ringkv/bench run build
//   node bench/scripts/ordered.mjs                                   # 1,000,000 entries, 2 shards, 5 rounds
//   node bench/scripts/ordered.mjs --entries 100000 --rounds 1       # a quick look
//   node bench/scripts/ordered.mjs --clients 1,32 --seconds 2 --order sequential
//   RINGKV_BENCH_QUICK=1 node bench/scripts/ordered.mjs              # seconds: keeps the script from rotting
//
// ringkv runs with its default options except `shards` (2 by default, --shards). Reads need no durability
// setting; each engine is loaded in batches of 10,000 (ringkv: batch(); lmdb: one transaction; classic-level:
// batch()), then read.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { open } from '@ringkv/engine'
import { keyOf, valueOf } from '../dist/workload.js'

const quick = process.env.RINGKV_BENCH_QUICK === '1'
const { values: args } = parseArgs({
  options: {
    entries: { type: 'string', default: quick ? '20000' : '1000000' },
    shards: { type: 'string', default: '2' },
    rounds: { type: 'string', default: quick ? '1' : '5' },
    clients: { type: 'string', default: '1,32' },
    seconds: { type: 'string', default: quick ? '0.3' : '2' },
    order: { type: 'string', default: 'hashed,sequential' },
    engines: { type: 'string', default: 'ringkv,lmdb,classic-level' },
    json: { type: 'boolean', default: false },
  },
})
const entries = Number(args.entries)
const shards = Number(args.shards)
const rounds = Number(args.rounds)
const seconds = Number(args.seconds)
const clientCounts = args.clients.split(',').map(Number)
const orders = args.order.split(',')
const engineNames = args.engines.split(',')
for (const count of [entries, shards, rounds, ...clientCounts]) {
  if (!Number.isInteger(count) || count < 1) throw new RangeError('--entries, --shards, --rounds and --clients take positive integers')
}
if (!(seconds > 0)) throw new RangeError('--seconds takes a positive number')
for (const order of orders) if (order !== 'hashed' && order !== 'sequential') throw new RangeError(`--order: unknown order ${order}`)

const loadBatch = 10_000

/** Each engine: load, scan (entries given), range (10 entries from a start key), close. */
const engines = {
  async ringkv(directory) {
    const db = await open(directory, { shards })
    let rangeQueries = 0
    return {
      async load(from, to) {
        const operations = []
        for (let index = from; index < to; index++) operations.push({ type: 'put', key: this.key(index), value: valueOf(index) })
        await db.batch(operations)
      },
      async scan() {
        let count = 0
        for await (const entry of db.iterator()) if (entry[1].length >= 0) count++
        return count
      },
      async scanPaged() {
        let count = 0
        const iterator = db.iterator()
        for (;;) {
          const page = await iterator.nextv(1000)
          if (page.length === 0) break
          count += page.length
        }
        await iterator.close()
        return count
      },
      async range(start) {
        rangeQueries++
        return (await db.iterator({ gte: start, limit: 10 }).all()).length
      },
      async close() {
        // A range query's first page on each shard is its whole answer there: read in place, without a message.
        const inPlace = db.stats().shards.reduce((sum, shard) => sum + shard.pagesReadInPlace, 0)
        console.error(`ringkv: ${rangeQueries} range queries; ${inPlace} of their ${rangeQueries * shards} shard pages read in place`)
        await db.close()
      },
    }
  },
  async lmdb(directory) {
    const { open: openLmdb } = await import('lmdb')
    const db = openLmdb({ path: directory, keyEncoding: 'binary', encoding: 'binary', overlappingSync: false })
    return {
      async load(from, to) {
        await db.transaction(() => {
          for (let index = from; index < to; index++) db.put(this.key(index), valueOf(index))
        })
      },
      async scan() {
        let count = 0
        for (const { value } of db.getRange()) if (value.length >= 0) count++
        return count
      },
      async range(start) {
        let count = 0
        for (const { value } of db.getRange({ start, limit: 10 })) if (value.length >= 0) count++
        return count
      },
      close: () => db.close(),
    }
  },
  async 'classic-level'(directory) {
    const { ClassicLevel } = await import('classic-level')
    const db = new ClassicLevel(directory, { keyEncoding: 'view', valueEncoding: 'view' })
    await db.open()
    return {
      async load(from, to) {
        const operations = []
        for (let index = from; index < to; index++) operations.push({ type: 'put', key: this.key(index), value: valueOf(index) })
        await db.batch(operations)
      },
      async scan() {
        let count = 0
        for await (const entry of db.iterator()) if (entry[1].length >= 0) count++
        return count
      },
      async range(start) {
        return (await db.iterator({ gte: start, limit: 10 }).all()).length
      },
      close: () => db.close(),
    }
  },
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** Range queries by `clients` closed-loop clients for `seconds`: queries/s. */
async function rangeRate(engine, order, clients) {
  const end = performance.now() + seconds * 1000
  let queries = 0
  let random = 12345 + clients
  const next = () => {
    random = (Math.imul(random, 1103515245) + 12345) >>> 0
    return random % entries
  }
  const started = performance.now()
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < end) {
        const got = await engine.range(keyOf(order, next()))
        if (got < 1) throw new Error('a range query from an existing key found nothing')
        queries++
      }
    }),
  )
  return queries / ((performance.now() - started) / 1000)
}

const results = []
for (const order of orders) {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ringkv-ordered-'))
  const opened = {}
  try {
    for (const name of engineNames) {
      const engine = await engines[name](path.join(scratch, name))
      engine.key = (index) => keyOf(order, index)
      const started = performance.now()
      for (let from = 0; from < entries; from += loadBatch) await engine.load(from, Math.min(entries, from + loadBatch))
      console.log(`[${order}] ${name}: loaded ${entries} entries in ${((performance.now() - started) / 1000).toFixed(1)} s`)
      opened[name] = engine
    }
    const samples = {}
    const add = (measure, name, value) => (samples[`${measure}\t${name}`] ??= []).push(value)
    for (let round = 0; round < rounds; round++) {
      const turn = engineNames.map((_, index) => engineNames[(index + round) % engineNames.length])
      for (const name of turn) {
        const engine = opened[name]
        let started = performance.now()
        const count = await engine.scan()
        if (count !== entries) throw new Error(`${name} scanned ${count} entries, not ${entries}`)
        add('full scan, entries/s (for await / getRange)', name, count / ((performance.now() - started) / 1000))
        if (engine.scanPaged !== undefined) {
          started = performance.now()
          const paged = await engine.scanPaged()
          if (paged !== entries) throw new Error(`${name} scanned ${paged} entries in pages, not ${entries}`)
          add('full scan, entries/s (nextv(1000))', name, paged / ((performance.now() - started) / 1000))
        }
        for (const clients of clientCounts)
          add(`range of 10, queries/s, ${clients} client(s)`, name, await rangeRate(engine, order, clients))
      }
      console.log(`[${order}] round ${round + 1}/${rounds} done`)
    }
    for (const [key, values] of Object.entries(samples)) {
      const [measure, name] = key.split('\t')
      results.push({ order, measure, engine: name, median: median(values), min: Math.min(...values), max: Math.max(...values), values })
    }
  } finally {
    for (const engine of Object.values(opened)) await engine.close()
    fs.rmSync(scratch, { recursive: true, force: true })
  }
}

if (args.json) {
  console.log(JSON.stringify({ entries, shards, rounds, seconds, results }, null, 2))
} else {
  const format = (value) => Math.round(value).toLocaleString('en-US')
  console.log(
    `\n${entries.toLocaleString('en-US')} entries of 16 B / 100 B; ringkv on ${shards} shards; ${rounds} rounds; median (min–max)\n`,
  )
  console.log('| key order | measure | ' + engineNames.join(' | ') + ' |')
  console.log('|---|---|' + engineNames.map(() => '---:').join('|') + '|')
  const rows = new Map()
  for (const result of results) {
    const row = `${result.order}\t${result.measure}`
    if (!rows.has(row)) rows.set(row, {})
    rows.get(row)[result.engine] = `${format(result.median)} (${format(result.min)}–${format(result.max)})`
  }
  for (const [row, cells] of rows) {
    const [order, measure] = row.split('\t')
    console.log(`| ${order} | ${measure} | ` + engineNames.map((name) => cells[name] ?? '—').join(' | ') + ' |')
  }
}
