// The workload every engine runs, byte for byte the same: 16-byte keys in one of two orders, 100-byte random
// values, C logical clients that each await their own operation before issuing the next, and a latency
// histogram. Nothing here knows which engine it drives; an engine is reached only through `Engine` (engines.ts).
//
// The two key orders, because an ordered engine's cost depends on where a new key lands:
// - `sequential`: `key-` and a 12-digit decimal counter, in ASCII. Key numbers are handed out in the order
//   the puts are issued, so every put appends past the largest key (time-ordered ids): a B-tree's best case.
// - `hashed`: the key number's hash first, so consecutive puts land all over the key space (YCSB's
//   default): a B-tree's worst case. ringkv routes and stores every key by hash, so the order is the same to it.

import { randomFillSync } from 'node:crypto'
import { performance } from 'node:perf_hooks'

export const keyBytes = 16
export const valueBytes = 100

/** Random bytes the values are cut from; 8 MiB so that values do not repeat in any short window. */
const valuePoolBytes = 8 * 1024 * 1024
const valuePool = randomFillSync(Buffer.allocUnsafe(valuePoolBytes))

/** murmur3's 32-bit finaliser: spreads consecutive integers over the whole key space. */
function mix32(value: number): number {
  let h = value >>> 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85eb_ca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2_ae35)
  h ^= h >>> 16
  return h >>> 0
}

export const keyOrders = ['sequential', 'hashed'] as const
export type KeyOrder = (typeof keyOrders)[number]

const sequentialPrefix = Buffer.from('key-', 'latin1')
const sequentialDigits = keyBytes - sequentialPrefix.length
const sequentialIndexMax = 10 ** sequentialDigits - 1

/**
 * Key number `index` (0 ≤ index ≤ 10^12 − 1) as `key-` and 12 zero-padded decimal digits, e.g.
 * `key-000000000042`: byte order is number order, so increasing numbers append at the end of a tree.
 * A fresh buffer each call: an engine may keep the key it was given.
 */
export function sequentialKeyOf(index: number): Buffer {
  if (!Number.isInteger(index) || index < 0 || index > sequentialIndexMax) throw new RangeError(`key number ${index} out of range`)
  const key = Buffer.allocUnsafe(keyBytes)
  sequentialPrefix.copy(key, 0)
  let rest = index
  for (let position = keyBytes - 1; position >= sequentialPrefix.length; position--) {
    key[position] = 0x30 + (rest % 10)
    rest = Math.floor(rest / 10)
  }
  return key
}

/**
 * Key number `index` (0 ≤ index < 2^32): 8 bytes of hash, so keys land all over an ordered engine's tree
 * and all over ringkv's shards, then 4 zero bytes and the index itself, so keys never collide.
 * A fresh buffer each call: an engine may keep the key it was given.
 */
export function hashedKeyOf(index: number): Buffer {
  const key = Buffer.allocUnsafe(keyBytes)
  key.writeUInt32BE(mix32(index), 0)
  key.writeUInt32BE(mix32(index ^ 0x9e37_79b9), 4)
  key.writeUInt32BE(0, 8)
  key.writeUInt32BE(index >>> 0, 12)
  return key
}

/** Key number `index` in `order`: distinct numbers give distinct keys in both orders. */
export function keyOf(order: KeyOrder, index: number): Buffer {
  return order === 'sequential' ? sequentialKeyOf(index) : hashedKeyOf(index)
}

/** The value written under key number `index`: 100 random bytes, the same every time for that index. */
export function valueOf(index: number): Buffer {
  const offset = (Math.imul(index, 104_729) >>> 0) % (valuePoolBytes - valueBytes)
  return valuePool.subarray(offset, offset + valueBytes)
}

/** xorshift32: a cheap, seeded source of random key indexes for the read phase. */
export function randomIndexes(seed: number): (limit: number) => number {
  let state = seed >>> 0 || 1
  return (limit) => {
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    return state % limit
  }
}

/**
 * Latencies in microseconds, in log-spaced buckets 1% wide from 0.1 µs to about 1,000 s: constant memory
 * however many operations run, so the harness does not inflate the engine's peak RSS.
 */
export class LatencyHistogram {
  static readonly lowestUs = 0.1
  static readonly growth = 1.01
  static readonly bucketsMax = 2400
  private readonly counts = new Float64Array(LatencyHistogram.bucketsMax)
  private readonly logGrowth = Math.log(LatencyHistogram.growth)
  count = 0

  record(latencyUs: number): void {
    let bucket = 0
    if (latencyUs > LatencyHistogram.lowestUs) {
      bucket = Math.ceil(Math.log(latencyUs / LatencyHistogram.lowestUs) / this.logGrowth)
      if (bucket >= LatencyHistogram.bucketsMax) bucket = LatencyHistogram.bucketsMax - 1
    }
    this.counts[bucket]! += 1
    this.count += 1
  }

  /** The latency (µs) at or below which `fraction` of the recorded operations fell; NaN when empty. */
  percentileUs(fraction: number): number {
    if (this.count === 0) return Number.NaN
    const rank = Math.max(1, Math.ceil(fraction * this.count))
    let seen = 0
    for (let bucket = 0; bucket < LatencyHistogram.bucketsMax; bucket++) {
      seen += this.counts[bucket]!
      if (seen >= rank) return LatencyHistogram.lowestUs * LatencyHistogram.growth ** bucket
    }
    return Number.NaN
  }
}

export interface ClosedLoopResult {
  concurrency: number
  /** Operations completed inside the measured window, per second. */
  opsPerSecond: number
  latencyUsP50: number
  latencyUsP99: number
  /** Operations counted (the window's, not the warm-up's). */
  operations: number
}

/**
 * Runs `concurrency` logical clients, each awaiting `operation(sequence)` and then issuing the next,
 * for `warmupMs` (not counted) plus `measureMs`. `sequence` is one counter for all clients, taken as each
 * operation is issued (0, 1, 2 …): no two operations share one, and later operations get larger ones. Throughput counts operations that completed inside the
 * measured window; latency is recorded for operations that started inside it. Every client stops
 * issuing at the end of the window and the call returns once all of them have drained, so no operation
 * outlives the phase.
 */
export async function runClosedLoop(
  concurrency: number,
  warmupMs: number,
  measureMs: number,
  operation: (sequence: number) => Promise<unknown> | unknown,
): Promise<ClosedLoopResult> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be a positive integer')
  const histogram = new LatencyHistogram()
  const startMs = performance.now()
  const measureStartMs = startMs + warmupMs
  const measureEndMs = measureStartMs + measureMs
  let sequence = 0
  let completedInWindow = 0
  let stopped = false

  async function client(): Promise<void> {
    while (!stopped) {
      const operationStartMs = performance.now()
      if (operationStartMs >= measureEndMs) {
        stopped = true
        break
      }
      await operation(sequence++)
      const operationEndMs = performance.now()
      if (operationEndMs >= measureStartMs && operationEndMs <= measureEndMs) completedInWindow += 1
      if (operationStartMs >= measureStartMs) histogram.record((operationEndMs - operationStartMs) * 1000)
    }
  }

  const clients: Promise<void>[] = []
  for (let index = 0; index < concurrency; index++) clients.push(client())
  await Promise.all(clients)
  return {
    concurrency,
    opsPerSecond: completedInWindow / (measureMs / 1000),
    latencyUsP50: histogram.percentileUs(0.5),
    latencyUsP99: histogram.percentileUs(0.99),
    operations: completedInWindow,
  }
}
