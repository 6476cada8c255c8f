// The shard worker's entry point, run by Piscina in a pool of exactly one thread per shard. It holds the
// shard for the thread's life and turns protocol requests into shard calls. This thread does nothing but
// its shard, so it may block on the disk: on io_uring, once it has run every message already delivered,
// it waits on its rings itself ('thread' mode, storage/uring.ts) until its batch's I/O completes; new
// messages wait meanwhile and form the next batch. On the fs backend the I/O runs on libuv's threadpool
// and completions arrive as callbacks.

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
  // Anything else is a bug or an environment failure: the shard cannot go on.
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  return { code: 'SHARD_FAILED', message }
}

function notOpen(): ShardResponse<never> {
  return { ok: false, error: { code: 'SHARD_FAILED', message: 'the shard worker has no open shard (it restarted or was never opened)' } }
}

export default function handle(request: ShardRequest): ShardResponse<unknown> | Promise<ShardResponse<unknown>> {
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
        })
      } catch (error) {
        return { ok: false, error: describe(error) }
      }
      const value: OpenResponse = { backend: shard.storage.backend, backendReason: shard.storage.reason, recovery: shard.recovery }
      return { ok: true, value }
    }
    case 'write': {
      const open = shard
      if (open === undefined) return notOpen()
      return new Promise((resolve) => {
        open.write(request.records, request.recordCount, (error) => {
          resolve(error === null ? { ok: true, value: undefined } : { ok: false, error: describe(error) })
        })
      })
    }
    case 'read': {
      if (shard === undefined) return notOpen()
      return { ok: true, value: shard.read(request.keys, request.count) }
    }
    case 'close': {
      const open = shard
      if (open === undefined) return { ok: true, value: undefined }
      shard = undefined
      return new Promise((resolve) => open.close(() => resolve({ ok: true, value: undefined })))
    }
  }
}
