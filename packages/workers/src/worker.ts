// The shard worker's entry point, run by Piscina in a pool of exactly one thread per shard. It holds the
// shard for the thread's life and turns protocol requests (protocol.ts) into shard calls. This thread does nothing but
// its shard, so it may block on the disk: on io_uring, once it has run every message already delivered,
// it waits on its rings itself ('thread' mode, storage/uring.ts) until its batch's I/O completes; new
// messages wait meanwhile and form the next batch. On the fs backend the I/O runs on libuv's threadpool
// and completions arrive as callbacks.
//
// A bug found on this thread stops it at once: an assertion (node:assert's AssertionError) or a
// RingBugError (EBADF, EFAULT), wherever it is thrown. Thrown from an I/O callback, it is uncaught already.
// Thrown while a request runs, it would only reject that request's task while the shard went on with a
// log in an unknown state (a batch submitted, its completion record never written, its writers failed,
// its table apply still to come), so it is re-thrown outside the task: the worker ends, its connections
// close with it, and every client answers what it had in flight SHARD_FAILED. Nothing is acknowledged after a bug.
//
// Connections (protocol.ts): the opener's comes with `open`, each handle's with `connect`. Every request of
// every connection goes to the one shard; what differs per connection is only its iterator ids (a
// connection's own: the worker keys them by connection) and what happens when it closes (its thread
// exited or was terminated): its iterators are forgotten, its writes already taken go on and are answered
// to no one. `close` closes the shard, then every connection (so a handle of that database can never reach
// a shard this thread opens later); the thread may then be given another `open`, of any database.

import { AssertionError } from 'node:assert'
import type { MessagePort } from 'node:worker_threads'
import { RingBugError } from '@ringkv/wal-native'
import { EngineError } from './errors.js'
import {
  flowBytes,
  flowSlotBytesInFlight,
  flowSlotWaiters,
  type ChannelAnswer,
  type ChannelMessage,
  type ChannelRequest,
  type ErrorDescription,
  type LifecycleRequest,
  type ShardResponse,
  type OpenResponse,
} from './protocol.js'
import { Shard } from './shard.js'

let shard: Shard | undefined
/** The shard was closed: requests are answered ENGINE_CLOSED. */
let closed = false
/** The ports of every connection to the open shard. */
const ports = new Set<MessagePort>()
/** The shard's iterator ids, given out in this thread's life: a connection's own ids map to them. */
let iteratorIds = 0

function describe(error: unknown): ErrorDescription {
  if (error instanceof EngineError) {
    const description: ErrorDescription = { code: error.code, message: error.message }
    const cause = error.cause as ErrorDescription['io'] | undefined
    if (cause !== undefined && typeof cause === 'object' && 'errno' in cause) description.io = cause
    if (error.details !== undefined) description.details = error.details
    return description
  }
  // Anything else fails this request (a bug also stops the worker: see `failure`).
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  return { code: 'SHARD_FAILED', message }
}

/** Whether `error` is a bug in ringkv (see the top), not a failure of this one request. */
function isBug(error: unknown): boolean {
  return error instanceof AssertionError || error instanceof RingBugError
}

/**
 * Ends the worker with `error` as an uncaught exception (on the next tick: a throw here would only fail the
 * request). The request is never answered: it stays unanswered until the worker's end closes its connection.
 */
function stopOnBug(error: unknown): Promise<never> {
  process.nextTick(() => {
    throw error
  })
  return new Promise<never>(() => {})
}

/** A failed request's answer; a bug stops the worker instead, and is never answered. */
function failure(error: unknown): ShardResponse<never> | Promise<never> {
  if (isBug(error)) return stopOnBug(error)
  return { ok: false, error: describe(error) }
}

/**
 * The answer of a request that completes later: `start` calls `answer` once. What `start` throws is the
 * request's failure, and a bug stops the worker (see the top), instead of the Promise swallowing it.
 */
export function answerWhenDone(start: (answer: (response: ShardResponse<unknown>) => void) => void): Promise<ShardResponse<unknown>> {
  return new Promise((resolve) => {
    try {
      start(resolve)
    } catch (error) {
      resolve(failure(error))
    }
  })
}

function notOpen(): ShardResponse<never> {
  if (closed) return { ok: false, error: { code: 'ENGINE_CLOSED', message: 'the shard is closed' } }
  return { ok: false, error: { code: 'SHARD_FAILED', message: 'the shard worker has no open shard (it restarted or was never opened)' } }
}

/** Piscina's entry: the shard's life (open, close). Everything else comes over a connection. */
export default function handle(request: LifecycleRequest): ShardResponse<unknown> | Promise<ShardResponse<unknown>> {
  try {
    return lifecycle(request)
  } catch (error) {
    return failure(error)
  }
}

/** One connection's state on this side: its iterators, its flow (protocol.ts, flow slots). */
interface Connection {
  /** The connection's iterator ids -> the shard's. */
  iterators: Map<number, number>
  reserved: Int32Array
  /** The flow slots of the shard it connects to. */
  flow: Int32Array
  /** Bytes of its write requests taken and not yet answered. */
  bytesTaken: number
  closed: boolean
}

/** Answers what arrives on `port` until the port closes; `flow`: the shard's flow slots (protocol.ts). */
function listen(port: MessagePort, reserved: SharedArrayBuffer, flow: Int32Array): void {
  const connection: Connection = {
    iterators: new Map(),
    reserved: new Int32Array(reserved),
    flow,
    bytesTaken: 0,
    closed: false,
  }
  const answer = (id: number, response: ShardResponse<unknown>): void => port.postMessage({ id, response } satisfies ChannelAnswer)
  ports.add(port)
  port.on('message', (message: ChannelMessage) => {
    // Nothing more is taken from a connection once it closed: what it reserved was given back then.
    if (connection.closed) return
    let result: ShardResponse<unknown> | Promise<ShardResponse<unknown>>
    try {
      result = serve(message.request, connection)
    } catch (error) {
      result = failure(error)
    }
    if (result instanceof Promise) void result.then((response) => answer(message.id, response))
    else answer(message.id, result)
  })
  port.on('close', () => {
    ports.delete(port)
    // Its thread is gone (or closed its handle): the snapshots its iterators held go, and so do the bytes
    // it reserved and never sent.
    connection.closed = true
    for (const id of connection.iterators.values()) shard?.closeIterator(id)
    connection.iterators.clear()
    release(connection, Atomics.load(connection.reserved, 0) - connection.bytesTaken)
  })
}

function lifecycle(request: LifecycleRequest): ShardResponse<unknown> | Promise<ShardResponse<unknown>> {
  switch (request.type) {
    case 'open': {
      if (shard !== undefined) return { ok: false, error: { code: 'SHARD_FAILED', message: 'the shard is already open' } }
      closed = false
      try {
        shard = Shard.open({
          directory: request.directory,
          shard: request.shard,
          backend: request.backend,
          batchBytesMax: request.batchBytesMax,
          recovery: request.recovery,
          segmentBytes: request.segmentBytes,
          // A benchmark switch, not a user mode: measures what the completion log costs.
          intentOnly: process.env.RINGKV_BENCH_INTENT_ONLY === '1',
          stats: new Float64Array(request.stats),
          autoCheckpoint: request.autoCheckpoint,
        })
      } catch (error) {
        return failure(error)
      }
      const value: OpenResponse = {
        backend: shard.storage.backend,
        backendReason: shard.storage.reason,
        recovery: shard.recovery,
        orderedView: shard.orderedView,
      }
      listen(request.port, request.reserved, new Int32Array(request.flow))
      return { ok: true, value }
    }
    case 'close': {
      const open = shard
      closed = true
      if (open === undefined) return { ok: true, value: undefined }
      shard = undefined
      return answerWhenDone((answer) =>
        open.close(() => {
          // Every answer is posted: the connections close after them.
          for (const port of ports) port.close()
          answer({ ok: true, value: undefined })
        }),
      )
    }
  }
}

/** Gives back bytes a connection reserved (flow slots, protocol.ts), and wakes the clients waiting for room. */
function release(connection: Connection, bytes: number): void {
  if (bytes === 0) return
  Atomics.sub(connection.reserved, 0, bytes)
  Atomics.sub(connection.flow, flowSlotBytesInFlight, bytes)
  if (Atomics.load(connection.flow, flowSlotWaiters) > 0) Atomics.notify(connection.flow, flowSlotBytesInFlight)
}

function serve(request: ChannelRequest, connection: Connection): ShardResponse<unknown> | Promise<ShardResponse<unknown>> {
  if (request.type === 'write') {
    // Reserved by the client before it sent them: given back once answered, whatever the answer.
    const bytes = flowBytes(request.records.length)
    const open = shard
    if (open === undefined) {
      release(connection, bytes)
      return notOpen()
    }
    connection.bytesTaken += bytes
    const answered = (): void => {
      connection.bytesTaken -= bytes
      release(connection, bytes)
    }
    return answerWhenDone((answer) => {
      let done = false
      try {
        open.write(request.records, request.recordCount, (error) => {
          done = true
          answered()
          answer(error === null ? { ok: true, value: undefined } : { ok: false, error: describe(error) })
        })
      } catch (error) {
        // Refused before it was taken (a malformed request): the shard will never answer it.
        if (!done) answered()
        throw error
      }
    })
  }
  if (request.type === 'connect') {
    // A connection made over this one reaches the same shard.
    listen(request.port, request.reserved, connection.flow)
    return { ok: true, value: undefined }
  }
  const open = shard
  if (open === undefined) return notOpen()
  switch (request.type) {
    case 'read':
      return { ok: true, value: open.read(request.keys, request.count) }
    case 'iterate': {
      for (const id of request.closes) {
        const own = connection.iterators.get(id)
        connection.iterators.delete(id)
        if (own !== undefined) open.closeIterator(own)
      }
      const answers: ShardResponse<unknown>[] = request.pages.map((page) => {
        try {
          const seek = page.seek === undefined ? undefined : { target: page.seek, remaining: page.remaining ?? Number.POSITIVE_INFINITY }
          if (page.open !== undefined) connection.iterators.set(page.id, ++iteratorIds)
          // An id the connection never opened (0 is never given out) is the shard's to refuse.
          const own = connection.iterators.get(page.id) ?? 0
          return { ok: true, value: open.iterate(own, page.open, seek, page.entries, page.bytes) }
        } catch (error) {
          if (isBug(error)) throw error
          return { ok: false, error: describe(error) }
        }
      })
      return { ok: true, value: answers }
    }
    case 'clear': {
      const open = shard
      if (open === undefined) return notOpen()
      return answerWhenDone((answer) => {
        open.clear(request.range, (error) =>
          answer(error === null ? { ok: true, value: undefined } : { ok: false, error: describe(error) }),
        )
      })
    }
    case 'checkpoint': {
      const open = shard
      if (open === undefined) return notOpen()
      return answerWhenDone((answer) => {
        open.checkpoint((error, result) => {
          answer(error === null ? { ok: true, value: result } : { ok: false, error: describe(error) })
        })
      })
    }
    case 'backup': {
      const open = shard
      if (open === undefined) return notOpen()
      return answerWhenDone((answer) => {
        open.backup(request.directory, (error, result) => {
          answer(error === null ? { ok: true, value: result } : { ok: false, error: describe(error) })
        })
      })
    }
  }
}
