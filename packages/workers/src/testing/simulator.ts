// The seeded simulation of one shard (VOPR in spirit): a random workload of puts, deletes and multi-record
// requests from many sequential clients at once, run against a Shard on a SimulatedStorage whose
// operations complete in a seeded random order; a crash at a random point; a reopen on what survived; a
// check of every key against a model; and again, for several generations. It owns the model and the
// checks, and knows nothing of the log's format: it sees the shard only through its public surface.
//
// The model is exact because each key belongs to one client and a client has one request in flight at a
// time: a key's history is a sequence, and after a reopen its state must be the state after its last
// acknowledged write, or after one of the writes issued after that one (in flight at the crash, or failed:
// a failed fdatasync may still have reached the disk).
//
// Invariants checked (violations are collected, not thrown, so a run reports all it saw):
// - every acknowledged write is present with its exact value after reopen; an acknowledged delete stays
//   deleted; no key holds a value that was never written;
// - a request is atomic: after a reopen, either all of an unacknowledged request's keys show it or none;
// - a read right after a write's acknowledgement sees that write;
// - with no faults, every open succeeds and recovery reports no damage; with faults, an open either fails
//   with WAL_CORRUPT or every acknowledged write is intact: damage is never hidden. The one blind spot,
//   by design: a lost or misdirected write of the last intent batch before the crash cannot be told from a
//   crash before that write reached the disk, so that batch may be missing;
// - after an I/O error the failing batch's callers and every later write get IO_ERROR, no write succeeds
//   any more, and the shard issues no further writes to the storage;
// - no write stays unanswered while the storage has nothing in flight.

import { sectorPayloads } from '../format/sectors.js'
import { EngineError } from '../errors.js'
import { encodeRecord, recordBytes, recordHeaderBytes, recordKindDelete, recordKindPut } from '../format/record.js'
import { Shard, type ShardOptions } from '../shard.js'
import { noFaults, Prng, SimulatedStorage, type FaultKind, type FaultRates, type FaultRecord } from './simulated-storage.js'
import { forEachPackedAnswer, packKeys } from '../protocol.js'

export interface SimulationOptions {
  seed: number
  /** 'random' (the default) lets the seed choose: half the seeds run without faults, half with some. */
  faults?: 'none' | 'random' | Partial<FaultRates>
  /** The deliberately broken storage: acknowledge before the fdatasync. */
  acknowledgeBeforeSync?: boolean
}

export type ViolationKind =
  | 'acknowledged-write-lost'
  | 'acknowledged-delete-undone'
  | 'value-never-written'
  | 'request-not-atomic'
  | 'read-after-acknowledgement'
  | 'open-failed-without-faults'
  | 'damage-reported-without-faults'
  | 'open-threw'
  | 'shard-threw'
  | 'io-error-rule'
  | 'checkpoint-error'
  | 'stalled'

export interface Violation {
  kind: ViolationKind
  generation: number
  message: string
}

export interface SimulationResult {
  seed: number
  /** Generations run (a generation: open, write, crash). */
  generations: number
  requestsIssued: number
  requestsAcknowledged: number
  requestsFailed: number
  storageSteps: number
  faultRates: FaultRates
  faults: FaultRecord[]
  /** How the run ended: all generations done, or an open refused with WAL_CORRUPT (damage reported). */
  ending: 'completed' | 'damage-reported' | 'violation'
  /** Acknowledged requests the checker let go missing under the blind spot. */
  blindSpotRequests: number
  violations: Violation[]
  traceDigest: number
  /** Whether the shard wrote a completion log (the dual log) or only the v0 single log. */
  dualLog: boolean
  /** Checkpoints asked for (by the workload; automatic ones come on top), made current, and failed. */
  checkpointsAsked: number
  checkpointsDone: number
  checkpointsFailed: number
  /** Opens that loaded a checkpoint. */
  checkpointLoads: number
  /** Log segments made by reusing a retired one, over all generations. */
  segmentsReused: number
}

/** Requests in flight at once, across all clients; beyond it clients wait. */
export const clientsMax = 64
/** Records in one request. */
export const requestRecordsMax = 12
/** Storage steps plus requests issued in one generation, at most. */
export const generationActionsMax = 800
/** setImmediate turns to wait for a shard that answers asynchronously before calling it stalled. */
const settleTurnsMax = 4

const directory = '/simulated/shard-000'
const text = new TextEncoder()

type KeyState = Uint8Array | undefined

interface Request {
  id: number
  client: Client
  generation: number
  records: Uint8Array
  /** Each record's key index (into client.keys) and the state it leaves. */
  writes: { key: KeyModel; state: KeyState }[]
  /** The state each touched key is left in by this request (the last record for a key wins). */
  finalStates: Map<KeyModel, KeyState>
  status: 'in-flight' | 'acknowledged' | 'failed' | 'refused'
  /** Acknowledged, but carried by a lost or misdirected last intent write: may be missing. */
  blindSpot: boolean
}

interface KeyModel {
  name: string
  bytes: Uint8Array
  /** The state at the start of this generation (what the last reopen showed). */
  base: KeyState
  /** Requests of this generation that touched the key, in order issued. */
  requests: Request[]
}

interface Client {
  index: number
  keys: KeyModel[]
  busy: boolean
}

export async function simulate(options: SimulationOptions): Promise<SimulationResult> {
  const prng = new Prng(options.seed)
  const faultRates = chooseFaults(prng, options.faults ?? 'random')
  const clientCount = prng.between(1, clientsMax)
  const keysPerClient = prng.between(1, 6)
  const valueBytesMax = prng.pick([0, 8, 100, 600, 3000])
  const batchBytesMax = prng.pick([64, 512, 4096, 65536])
  const segmentSizes = prng.pick([[4096], [8192], [65536], [4096, 65536]])
  const generationsMax = prng.between(1, 4)
  const issueChance = prng.pick([0.1, 0.3, 0.5, 0.8])
  const deleteChance = prng.pick([0, 0.2, 0.5])
  const readAfterAcknowledgementChance = prng.pick([1, 0.2, 0])
  // Checkpoints: asked for at random moments, and automatic after a little log, or neither.
  const checkpointChance = prng.pick([0, 0.005, 0.02, 0.05])
  const autoCheckpoint = prng.pick([false, false, { logBytes: 1024, liveRatio: 0 }, { logBytes: 8192, liveRatio: 0.5 }] as const)

  const clients: Client[] = []
  for (let index = 0; index < clientCount; index++) {
    const keys: KeyModel[] = []
    for (let key = 0; key < keysPerClient; key++) {
      const name = `c${index}k${key}`
      keys.push({ name, bytes: text.encode(name), base: undefined, requests: [] })
    }
    clients.push({ index, keys, busy: false })
  }
  const allKeys = clients.flatMap((client) => client.keys)

  const result: SimulationResult = {
    seed: options.seed,
    generations: 0,
    requestsIssued: 0,
    requestsAcknowledged: 0,
    requestsFailed: 0,
    storageSteps: 0,
    faultRates,
    faults: [],
    ending: 'completed',
    blindSpotRequests: 0,
    violations: [],
    traceDigest: 0,
    dualLog: false,
    checkpointsAsked: 0,
    checkpointsDone: 0,
    checkpointsFailed: 0,
    checkpointLoads: 0,
    segmentsReused: 0,
  }
  const faulty = Object.values(faultRates).some((rate) => rate > 0)
  let storage = new SimulatedStorage({
    seed: prng.next(),
    faults: faultRates,
    acknowledgeBeforeSync: options.acknowledgeBeforeSync ?? false,
  })
  let requestNext = 0

  const violate = (kind: ViolationKind, generation: number, message: string): void => {
    result.violations.push({ kind, generation, message })
  }

  const openShard = (generation: number): Shard | undefined => {
    const shardOptions = {
      directory,
      shard: 0,
      backend: 'auto',
      batchBytesMax,
      recovery: 'strict',
      storage,
      // On some seeds each open picks its segment size (an option a user may change between opens).
      segmentBytes: prng.pick(segmentSizes),
      autoCheckpoint,
    } as ShardOptions & { segmentBytes: number }
    try {
      const shard = Shard.open(shardOptions)
      if (shard.recovery.checkpointSequence > 0) result.checkpointLoads++
      const repaired = (shard.recovery as { repaired?: unknown }).repaired
      if (!faulty && repaired !== undefined) {
        violate(
          'damage-reported-without-faults',
          generation,
          `recovery repaired damage with no fault injected: ${JSON.stringify(repaired)}`,
        )
      }
      return shard
    } catch (error) {
      if (error instanceof EngineError && error.code === 'WAL_CORRUPT') {
        if (faulty) result.ending = 'damage-reported'
        else violate('open-failed-without-faults', generation, `open failed with no fault injected: ${error.message}`)
        return undefined
      }
      violate('open-threw', generation, `open threw ${describeError(error)}`)
      return undefined
    }
  }

  let shard = openShard(0)
  for (let generation = 0; shard !== undefined && generation < generationsMax; generation++) {
    result.generations++
    for (const key of allKeys) key.requests = []
    for (const client of clients) client.busy = false
    const live = shard
    let failedAtWrites: number | undefined // storage.writesIssued when the first IO_ERROR came back
    let threw = false // the shard threw: the model no longer knows its state, the run ends
    let stalled = false // writes wait with nothing in flight: stop writing, but still crash and check

    const issue = (client: Client): void => {
      const recordCount = prng.between(1, Math.min(requestRecordsMax, client.keys.length * 2))
      const writes: Request['writes'] = []
      let bytes = 0
      for (let index = 0; index < recordCount; index++) {
        const key = prng.pick(client.keys)
        const state = prng.chance(deleteChance) ? undefined : valueFor(prng, requestNext, valueBytesMax)
        writes.push({ key, state })
        bytes += recordBytes(key.bytes.length, state === undefined ? 0 : state.length)
      }
      const records = new Uint8Array(bytes)
      const view = new DataView(records.buffer)
      let offset = 0
      const finalStates = new Map<KeyModel, KeyState>()
      for (const write of writes) {
        offset = encodeRecord(
          records,
          view,
          offset,
          write.state === undefined ? recordKindDelete : recordKindPut,
          write.key.bytes,
          write.state,
        )
        finalStates.set(write.key, write.state)
      }
      const request: Request = {
        id: requestNext++,
        client,
        generation,
        records: records.slice(),
        writes,
        finalStates,
        status: 'in-flight',
        blindSpot: false,
      }
      const issuedAfterFailure = failedAtWrites !== undefined
      for (const key of finalStates.keys()) key.requests.push(request)
      client.busy = true
      result.requestsIssued++
      const callback = (error: EngineError | null): void => {
        if (request.status !== 'in-flight') {
          violate('shard-threw', generation, `request ${request.id} was answered twice`)
          return
        }
        client.busy = false
        if (error === null) {
          request.status = 'acknowledged'
          result.requestsAcknowledged++
          if (failedAtWrites !== undefined) {
            violate('io-error-rule', generation, `request ${request.id} succeeded after the shard reported an I/O error`)
          }
          // Not always: a read applies every durable batch to the table at once, which would hide the
          // moments when durable batches wait to be applied (a checkpoint must not start in one).
          if (prng.chance(readAfterAcknowledgementChance)) {
            checkReadAfterAcknowledgement(live, request, (message) => violate('read-after-acknowledgement', generation, message))
          }
          return
        }
        result.requestsFailed++
        request.status = issuedAfterFailure ? 'refused' : 'failed'
        if (!(error instanceof EngineError) || error.code !== 'IO_ERROR') {
          violate('io-error-rule', generation, `request ${request.id} failed with ${describeError(error)}, not IO_ERROR`)
          return
        }
        if (!storage.faults.some((fault) => isIoFault(fault.kind))) {
          violate('io-error-rule', generation, `request ${request.id} failed with IO_ERROR but no I/O error was injected`)
        }
        failedAtWrites ??= storage.writesIssued
      }
      try {
        live.write(records, recordCount, callback)
      } catch (error) {
        threw = true
        violate('shard-threw', generation, `write threw ${describeError(error)}`)
      }
    }

    let closing = false
    const askCheckpoint = (): void => {
      result.checkpointsAsked++
      live.checkpoint((error) => {
        if (error === null) return void result.checkpointsDone++
        result.checkpointsFailed++
        // A checkpoint fails only for an I/O error that was injected, or because the shard is closing.
        const expected =
          (error.code === 'IO_ERROR' && storage.faults.some((fault) => isIoFault(fault.kind))) ||
          (error.code === 'ENGINE_CLOSED' && closing)
        if (!expected) violate('checkpoint-error', generation, `a checkpoint failed with ${describeError(error)}`)
      })
    }

    const actions = prng.between(0, generationActionsMax)
    for (let action = 0; action < actions && !threw && !stalled; action++) {
      if (checkpointChance > 0 && prng.chance(checkpointChance)) {
        try {
          askCheckpoint()
        } catch (error) {
          threw = true
          violate('shard-threw', generation, `checkpoint threw ${describeError(error)}`)
          break
        }
      }
      const idle = clients.filter((client) => !client.busy)
      if (idle.length > 0 && (storage.pendingCount === 0 || prng.chance(issueChance))) {
        issue(prng.pick(idle))
      } else if (storage.pendingCount > 0) {
        try {
          storage.step()
          result.storageSteps++
        } catch (error) {
          threw = true
          violate('shard-threw', generation, `a completion threw ${describeError(error)}`)
        }
      } else {
        await settle(storage)
        if (storage.pendingCount === 0 && clients.every((client) => client.busy)) {
          violate('stalled', generation, `${clients.length} writes wait and the storage has nothing in flight`)
          stalled = true
        }
      }
      await Promise.resolve() // lets a shard that answers on a microtask do so, deterministically
    }
    // Sometimes quiesce and close cleanly before the power goes.
    if (!threw && !stalled && prng.chance(0.2)) {
      let closed = false
      closing = true
      live.close(() => {
        closed = true
      })
      for (let turn = 0; turn < settleTurnsMax && !closed; turn++) {
        try {
          result.storageSteps += storage.runUntilIdle()
        } catch (error) {
          threw = true
          violate('shard-threw', generation, `a completion threw while closing: ${describeError(error)}`)
          break
        }
        await settle(storage)
      }
      if (!closed && !threw) violate('stalled', generation, 'close never called back with the storage idle')
    }
    if (failedAtWrites !== undefined && storage.writesIssued > failedAtWrites) {
      violate('io-error-rule', generation, `the shard issued ${storage.writesIssued - failedAtWrites} writes after reporting an I/O error`)
    }
    if (failedAtWrites !== undefined) {
      for (const key of allKeys) {
        for (const request of key.requests) {
          if (request.status === 'in-flight' && storage.pendingCount === 0) {
            violate('io-error-rule', generation, `request ${request.id} is unanswered after the shard failed and the storage went idle`)
          }
        }
      }
    }
    if (threw) {
      result.ending = 'violation'
      break
    }

    result.segmentsReused += live.segmentsReused
    // Power loss, then recovery on what survived.
    const crashed = storage
    storage = storage.crash() // may flip a bit in acknowledged data
    markBlindSpot(crashed, allKeys, result)
    result.faults.push(...crashed.faults)
    shard = openShard(generation + 1)
    if (shard === undefined) break
    const before = result.violations.length
    checkRecovered(shard, allKeys, (kind, message) => violate(kind, generation, message))
    if (result.violations.length > before) {
      result.ending = 'violation'
      break
    }
  }
  if (result.ending === 'violation' || result.ending === 'completed') result.faults.push(...storage.faults)
  result.traceDigest = storage.traceDigest
  result.dualLog = [...storage.files.values()].some((file) => file.log === 'completion')
  if (result.violations.length > 0) result.ending = 'violation'
  return result
}

/** The replay command for one seed. */
export function replayCommand(seed: number): string {
  return `RINGKV_SEED=${seed} npx vitest run packages/workers/src/shard.simulation`
}

function chooseFaults(prng: Prng, faults: NonNullable<SimulationOptions['faults']>): FaultRates {
  if (faults === 'none') return { ...noFaults }
  if (typeof faults === 'object') return { ...noFaults, ...faults }
  if (prng.chance(0.5)) return { ...noFaults }
  const rates = { ...noFaults }
  const kinds = Object.keys(rates) as FaultKind[]
  const active = prng.between(1, 3)
  for (let index = 0; index < active; index++) {
    const kind = prng.pick(kinds)
    rates[kind] = kind === 'bitFlip' ? prng.pick([0.5, 1]) : prng.pick([0.002, 0.01, 0.05])
  }
  return rates
}

function isIoFault(kind: FaultKind): boolean {
  return kind === 'writeEio' || kind === 'writeEnospc' || kind === 'fsyncEio'
}

/** A value that names its request (so a stray one can be traced), then seeded bytes. */
function valueFor(prng: Prng, requestId: number, valueBytesMax: number): Uint8Array {
  const length = prng.between(0, valueBytesMax)
  const value = prng.fill(new Uint8Array(length))
  const tag = text.encode(`r${requestId}:`)
  value.set(tag.subarray(0, Math.min(tag.length, length)))
  return value
}

/**
 * The blind spot: a lost or misdirected write of the last batch before the crash, to either log, where
 * "last" means that no later write to that log left a byte on disk (it was still in flight, or only in
 * the page cache and the crash dropped it): then the disk looks exactly like a crash before that write
 * reached it (log/recovery-cases.ts). Marks the acknowledged requests that batch carried, so the checker
 * accepts them missing. Called after the crash, which decides what of the page cache survived. A batch is
 * one intent write and one completion write, issued in the same order on both logs: the completion
 * write with index i is the intent write with index i's.
 */
function markBlindSpot(storage: SimulatedStorage, keys: KeyModel[], result: SimulationResult): void {
  const hits: Uint8Array[] = []
  for (const fault of storage.faults) {
    if (fault.kind !== 'lost' && fault.kind !== 'misdirected') continue
    // An intent write is a batch in stamped sectors (format/sectors.ts): its records are in the payloads.
    if (fault.log === 'intent' && fault.logWriteIndex >= storage.logOnDiskMax.intent && fault.bytes !== undefined) {
      hits.push(sectorPayloads(fault.bytes))
    }
    if (fault.log === 'completion' && fault.logWriteIndex >= storage.logOnDiskMax.completion) {
      const intent = storage.intentWrites[fault.logWriteIndex]
      if (intent !== undefined) hits.push(sectorPayloads(intent))
    }
  }
  if (hits.length === 0) return
  const seen = new Set<Request>()
  for (const key of keys) {
    for (const request of key.requests) {
      if (seen.has(request) || request.status !== 'acknowledged') continue
      seen.add(request)
      if (hits.some((bytes) => carries(bytes, request.records))) {
        request.blindSpot = true
        result.blindSpotRequests++
      }
    }
  }
}

/** Whether `haystack` holds the request's records, comparing everything but the record CRCs. */
function carries(haystack: Uint8Array, records: Uint8Array): boolean {
  const masked = crcPositions(records)
  const first = Buffer.from(records.buffer, records.byteOffset + 4, Math.min(records.length, 20) - 4)
  const hay = Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength)
  for (let at = hay.indexOf(first); at >= 4; at = hay.indexOf(first, at + 1)) {
    const start = at - 4
    if (start + records.length > haystack.length) return false
    let same = true
    for (let index = 0; index < records.length && same; index++) {
      if (!masked.has(index) && haystack[start + index] !== records[index]) same = false
    }
    if (same) return true
  }
  return false
}

function crcPositions(records: Uint8Array): Set<number> {
  const view = new DataView(records.buffer, records.byteOffset, records.byteLength)
  const positions = new Set<number>()
  let offset = 0
  while (offset < records.length) {
    for (let byte = 0; byte < 4; byte++) positions.add(offset + byte)
    offset += recordHeaderBytes + view.getUint32(offset + 8, true) + view.getUint32(offset + 12, true)
  }
  return positions
}

function checkReadAfterAcknowledgement(shard: Shard, request: Request, violate: (message: string) => void): void {
  const keys = [...request.finalStates.keys()]
  const answers = readKeys(shard, keys)
  keys.forEach((key, index) => {
    const expected = request.finalStates.get(key)
    if (!sameState(answers[index], expected)) {
      violate(
        `key ${key.name} reads ${describeState(answers[index])} right after request ${request.id} set it to ${describeState(expected)}`,
      )
    }
  })
}

/** Checks every key against the model after a reopen, then makes what it saw the next generation's base. */
function checkRecovered(shard: Shard, keys: KeyModel[], violate: (kind: ViolationKind, message: string) => void): void {
  const answers = readKeys(shard, keys)
  keys.forEach((key, index) => {
    const seen = answers[index]
    // The last acknowledged request that is not in the blind spot fixes the oldest state allowed.
    let floor = -1
    key.requests.forEach((request, position) => {
      if (request.status === 'acknowledged' && !request.blindSpot) floor = position
    })
    const allowed: KeyState[] = [floor < 0 ? key.base : key.requests[floor]!.finalStates.get(key)]
    for (let position = floor + 1; position < key.requests.length; position++) {
      const request = key.requests[position]!
      if (request.status !== 'refused') allowed.push(request.finalStates.get(key))
    }
    if (allowed.some((state) => sameState(state, seen))) return
    const older = [key.base, ...key.requests.slice(0, Math.max(floor, 0)).map((request) => request.finalStates.get(key))]
    const lastAcknowledged = floor < 0 ? undefined : key.requests[floor]!
    const expected = `${describeState(allowed[0])}${allowed.length > 1 ? ` (or one of ${allowed.length - 1} later unacknowledged states)` : ''}`
    if (lastAcknowledged !== undefined && older.some((state) => sameState(state, seen))) {
      const deleted = lastAcknowledged.finalStates.get(key) === undefined
      violate(
        deleted ? 'acknowledged-delete-undone' : 'acknowledged-write-lost',
        `key ${key.name} shows an older state ${describeState(seen)} after request ${lastAcknowledged.id} (acknowledged) set it to ${expected}`,
      )
    } else {
      violate('value-never-written', `key ${key.name} holds ${describeState(seen)}, expected ${expected}`)
    }
  })
  // An unacknowledged request shows on all its keys or on none (where the keys tell it apart).
  const checked = new Set<Request>()
  for (const key of keys) {
    for (const request of key.requests) {
      if (checked.has(request) || request.status === 'acknowledged' || request.status === 'refused') continue
      checked.add(request)
      let shows = 0
      let hides = 0
      for (const [touched, state] of request.finalStates) {
        const position = touched.requests.indexOf(request)
        if (position !== touched.requests.length - 1) continue // a later request decides this key
        // A request in the blind spot before it leaves the key's earlier state undecided: it may be back to
        // what it was before that request, which may equal this request's state without this request showing.
        if (touched.requests.slice(0, position).some((earlier) => earlier.blindSpot)) continue
        const before = position === 0 ? touched.base : touched.requests[position - 1]!.finalStates.get(touched)
        if (sameState(before, state)) continue
        const seen = answers[keys.indexOf(touched)]
        if (sameState(seen, state)) shows++
        else hides++
      }
      if (shows > 0 && hides > 0) {
        violate('request-not-atomic', `request ${request.id} (unacknowledged) shows on ${shows} of its keys and not on ${hides}`)
      }
    }
  }
  keys.forEach((key, index) => {
    key.base = answers[index]
    key.requests = []
  })
}

function readKeys(shard: Shard, keys: readonly KeyModel[]): KeyState[] {
  const states: KeyState[] = []
  const answers = shard.read(packKeys(keys.map((key) => key.bytes)), keys.length)
  forEachPackedAnswer(answers, keys.length, (value) => states.push(value?.slice()))
  return states
}

function sameState(left: KeyState, right: KeyState): boolean {
  if (left === undefined || right === undefined) return left === right
  return Buffer.from(left.buffer, left.byteOffset, left.length).equals(Buffer.from(right.buffer, right.byteOffset, right.length))
}

function describeState(state: KeyState): string {
  if (state === undefined) return 'absent'
  const tag = Buffer.from(state.subarray(0, 12)).toString('latin1').split(':')[0]
  return `a ${state.length}-byte value${tag?.startsWith('r') ? ` from request ${tag.slice(1)}` : ''}`
}

function describeError(error: unknown): string {
  if (error instanceof EngineError) return `EngineError ${error.code}: ${error.message}`
  if (error instanceof Error) return `${error.name}: ${error.message}\n${error.stack ?? ''}`
  return String(error)
}

/** Gives a shard that answers on a later turn of the event loop the chance to. */
async function settle(storage: SimulatedStorage): Promise<void> {
  for (let turn = 0; turn < settleTurnsMax && storage.pendingCount === 0; turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
}
