// The crash tests' workload, shared by the writer child (which runs it) and the test (which checks it).
//
// Every operation is a pure function of (seed, round, client, sequence): the child and the parent compute
// the same operation and the same value bytes without sending them over the pipe. The child reports only
// "client C acknowledged its operation S"; the parent recomputes what that operation wrote.
//
// Why the check can be exact: each client owns its keys (no other client writes them) and runs its
// operations one after the other, awaiting each. So at any moment at most one unacknowledged operation per
// key is in flight, and after a crash a key may hold exactly one of two things: what the client's last
// acknowledged operation left there, or what its next (issued, unacknowledged) operation writes.

/** Workload shape. The test and the child must use the same values: the test passes them to the child. */
export const workloadDefaults = Object.freeze({
  clients: 32,
  keysPerClient: 16,
  batchOperationsMax: 6,
  valueBytesMax: 4096,
  /** One operation in this many writes a large value (multi-page writes that can tear). */
  largeValueOneIn: 64,
  largeValueBytesMax: 256 * 1024,
})

/** A 32-bit mix of any number of integers (splitmix-like), used to seed each operation's PRNG. */
export function mix(...numbers) {
  let hash = 0x9e3779b9
  for (const number of numbers) {
    hash = Math.imul(hash ^ (number >>> 0), 0x85ebca6b)
    hash ^= hash >>> 13
    hash = Math.imul(hash, 0xc2b2ae35)
    hash ^= hash >>> 16
  }
  return hash >>> 0
}

/** mulberry32: small, fast, good enough to pick sizes and kinds. */
export function random(seed) {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    integer: (maxExclusive) => Math.floor(next() * maxExclusive),
  }
}

export function keyOf(client, keyIndex) {
  return `c${client}-k${keyIndex}`
}

/**
 * The operation a client issues at `sequence` (1, 2, …) in a round: one put, one delete, or a batch of
 * 2..batchOperationsMax writes to distinct keys of this client. Each write is
 * `{ type: 'put' | 'delete', keyIndex, valueLength }`.
 */
export function operationAt(workload, seed, round, client, sequence) {
  const rng = random(mix(seed, round, client, sequence))
  const roll = rng.next()
  const valueLength = () => {
    if (rng.integer(workload.largeValueOneIn) === 0) return rng.integer(workload.largeValueBytesMax + 1)
    if (rng.integer(16) === 0) return 0
    return rng.integer(workload.valueBytesMax + 1)
  }
  if (roll < 0.6) {
    return { type: 'put', writes: [{ type: 'put', keyIndex: rng.integer(workload.keysPerClient), valueLength: valueLength() }] }
  }
  if (roll < 0.75) {
    return { type: 'delete', writes: [{ type: 'delete', keyIndex: rng.integer(workload.keysPerClient), valueLength: 0 }] }
  }
  const count = 2 + rng.integer(Math.min(workload.batchOperationsMax, workload.keysPerClient) - 1)
  const keyIndexes = new Set()
  while (keyIndexes.size < count) keyIndexes.add(rng.integer(workload.keysPerClient))
  const writes = [...keyIndexes].map((keyIndex) =>
    rng.next() < 0.8 ? { type: 'put', keyIndex, valueLength: valueLength() } : { type: 'delete', keyIndex, valueLength: 0 },
  )
  return { type: 'batch', writes }
}

const encoder = new TextEncoder()

/**
 * The exact bytes a put writes: a readable tag naming who wrote it (so a wrong value in a failure message
 * says where it came from), then pseudo-random bytes. A value of length 0 is empty; a shorter value than
 * its tag is the tag's prefix.
 */
export function valueOf(seed, round, client, sequence, writeIndex, length) {
  const value = new Uint8Array(length)
  const tag = encoder.encode(`r${round}/c${client}/s${sequence}/w${writeIndex}|`)
  value.set(tag.subarray(0, Math.min(tag.length, length)))
  const rng = random(mix(seed, round, client, sequence, writeIndex, 0x76616c))
  for (let index = tag.length; index < length; index++) value[index] = (rng.next() * 256) | 0
  return value
}

/** What an operation leaves in each key it touches: key -> value bytes, or undefined for a delete. */
export function effectsOf(workload, seed, round, client, sequence) {
  const operation = operationAt(workload, seed, round, client, sequence)
  const effects = new Map()
  operation.writes.forEach((write, writeIndex) => {
    effects.set(
      keyOf(client, write.keyIndex),
      write.type === 'put' ? valueOf(seed, round, client, sequence, writeIndex, write.valueLength) : undefined,
    )
  })
  return effects
}

/** A short description of a value for failure messages: its tag and length, not its bytes. */
export function describeValue(value) {
  if (value === undefined) return 'absent'
  const bar = value.indexOf(0x7c)
  const tag = new TextDecoder().decode(value.subarray(0, bar === -1 ? Math.min(value.length, 32) : bar))
  return `${JSON.stringify(tag)} (${value.length} bytes)`
}

export function sameBytes(left, right) {
  if (left === undefined || right === undefined) return left === right
  if (left.length !== right.length) return false
  for (let index = 0; index < left.length; index++) if (left[index] !== right[index]) return false
  return true
}
