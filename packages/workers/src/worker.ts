// The shard worker's entry point, run by Piscina in a pool of exactly one thread per shard. It holds the
// shard for the thread's life and turns protocol requests into shard calls. This thread does nothing but
// its shard, so it may block on the disk: on io_uring, once it has run every message already delivered,
// it waits on its rings itself ('thread' mode, storage/uring.ts) until its batch's I/O completes; new
// messages wait meanwhile and form the next batch. On the fs backend the I/O runs on libuv's threadpool
// and completions arrive as callbacks.
//
// A bug found on this thread stops it at once: an assertion (node:assert's AssertionError) or a
// RingBugError (EBADF, EFAULT), wherever it is thrown. Thrown from an I/O callback, it is uncaught already.
// Thrown while a request runs, it would only reject that request's task while the shard went on with a
// log in an unknown state (a batch submitted, its completion record never written, its writers failed,
// its table apply still to come), so it is re-thrown outside the task: the worker ends, Piscina fails
// every task in flight, and the façade answers them all SHARD_FAILED. Nothing is acknowledged after a bug.

import { AssertionError } from 'node:assert'
import { RingBugError } from '@ringkv/wal-native'
import { EngineError } from './errors.js'
import type { ErrorDescription, ShardRequest, ShardResponse, OpenResponse } from './protocol.js'
import { Shard } from './shard.js'

let shard: Shard | undefined

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
 * Ends the worker with `error` as an uncaught exception (on the next tick: a throw here would only reject
 * the task). The request is never answered: the task stays pending until the worker's end fails it.
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
  return { ok: false, error: { code: 'SHARD_FAILED', message: 'the shard worker has no open shard (it restarted or was never opened)' } }
}

export default function handle(request: ShardRequest): ShardResponse<unknown> | Promise<ShardResponse<unknown>> {
  try {
    return dispatch(request)
  } catch (error) {
    return failure(error)
  }
}

function dispatch(request: ShardRequest): ShardResponse<unknown> | Promise<ShardResponse<unknown>> {
  switch (request.type) {
    case 'open': {
      if (shard !== undefined) return { ok: false, error: { code: 'SHARD_FAILED', message: 'the shard is already open' } }
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
      return { ok: true, value }
    }
    case 'write': {
      const open = shard
      if (open === undefined) return notOpen()
      return answerWhenDone((answer) => {
        open.write(request.records, request.recordCount, (error) => {
          answer(error === null ? { ok: true, value: undefined } : { ok: false, error: describe(error) })
        })
      })
    }
    case 'read': {
      if (shard === undefined) return notOpen()
      return { ok: true, value: shard.read(request.keys, request.count) }
    }
    case 'iterate': {
      const open = shard
      if (open === undefined) return notOpen()
      for (const id of request.closes) open.closeIterator(id)
      const answers: ShardResponse<unknown>[] = request.pages.map((page) => {
        try {
          const seek = page.seek === undefined ? undefined : { target: page.seek, remaining: page.remaining ?? Number.POSITIVE_INFINITY }
          return { ok: true, value: open.iterate(page.id, page.open, seek, page.entries, page.bytes) }
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
    case 'close': {
      const open = shard
      if (open === undefined) return { ok: true, value: undefined }
      shard = undefined
      return answerWhenDone((answer) => open.close(() => answer({ ok: true, value: undefined })))
    }
  }
}
