// A shard's thread, as the thread that opened the database owns it: a Piscina pool of exactly one thread
// (so the worker is pinned to its shard and keeps its state), asked only to open the shard and to close it.
// Every other request goes over a connection (a MessagePort: protocol.ts), the opener's as any handle's, so
// the opener's ShardClient and a handle's in another thread are the same code.
//
// Starting a thread costs far more than opening a shard in it (Node's worker start and this project's
// modules: about 140 ms of a 2-shard open on this project's machine, recovery of an empty shard about 20 ms).
// So a thread whose shard closed cleanly waits `threadLingerMs` for the next open in this thread (of any
// database) before it ends: opening and closing a database again and again starts no thread. A waiting
// thread holds no shard, ring, file or connection (worker.ts closes them all with the shard), and does not
// keep the process alive.

import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { MessageChannel } from 'node:worker_threads'
import { Piscina } from 'piscina'
import {
  EngineError,
  flowStateBytes,
  reservedStateBytes,
  statsBytes,
  type AutoCheckpoint,
  type BackendChoice,
  type LifecycleRequest,
  type OpenResponse,
  type ShardResponse,
  type ShardShare,
} from '@ringkv/workers'
import { errorFrom } from './shard-client.js'

const workerPath = pathToFileURL(createRequire(import.meta.url).resolve('@ringkv/workers/worker')).href

export interface ShardOpenOptions {
  directory: string
  backend: BackendChoice
  batchBytesMax: number
  recovery: 'strict' | 'truncate'
  segmentBytes: number
  autoCheckpoint: AutoCheckpoint | false
}

/** How long a thread whose shard closed waits for the next open before it ends (see the top). */
export const threadLingerMs = 1000

/**
 * A shard thread's young generation, at most. A lingering thread does not collect: the garbage its opens
 * left is held until it ends, and with V8's default (a young generation of up to 48 MiB) a thread that opened
 * a few hundred shards held about twice what it holds with this cap (`node --expose-gc
 * bench/scripts/open-close.mjs --cycles 1000`, RSS after the last cycle). A shard's allocations per batch
 * are small (records travel as transferred buffers): paired runs showed no throughput change. Only the young
 * generation is capped: a limit on the old one could end a busy thread out of memory.
 */
export const shardThreadYoungGenerationMb = 12

/** Threads whose shard closed, waiting for the next open: the last one back is the first one taken. */
const lingering: { pool: Piscina; timer: NodeJS.Timeout }[] = []

function startThread(): Piscina {
  const pool = new Piscina({
    filename: workerPath,
    name: 'default',
    minThreads: 1,
    maxThreads: 1,
    concurrentTasksPerWorker: 2,
    // The default, 'sync', parks an idle worker in Atomics.wait, which would stall its completion loop.
    atomics: 'disabled',
    idleTimeout: Number.POSITIVE_INFINITY,
    resourceLimits: { maxYoungGenerationSizeMb: shardThreadYoungGenerationMb },
  })
  // A worker that stops on a bug (worker.ts) with no Piscina task in flight is reported here; its
  // connections close with it, and the clients answer what they had in flight SHARD_FAILED.
  pool.on('error', () => {})
  return pool
}

function takeThread(): Piscina {
  const waiting = lingering.pop()
  if (waiting === undefined) return startThread()
  clearTimeout(waiting.timer)
  return waiting.pool
}

function lingerThread(pool: Piscina): void {
  const waiting = {
    pool,
    timer: setTimeout(() => {
      lingering.splice(lingering.indexOf(waiting), 1)
      void pool.destroy()
    }, threadLingerMs).unref(),
  }
  lingering.push(waiting)
}

export class ShardThread {
  private readonly pool: Piscina

  constructor(readonly shard: number) {
    this.pool = takeThread()
  }

  /** Opens the shard in its worker: the opener's connection to it comes back with what recovery did. */
  async open(options: ShardOpenOptions): Promise<ShardShare> {
    const channel = new MessageChannel()
    const stats = new SharedArrayBuffer(statsBytes)
    const flow = new SharedArrayBuffer(flowStateBytes)
    const reserved = new SharedArrayBuffer(reservedStateBytes)
    const request: LifecycleRequest = { type: 'open', ...options, shard: this.shard, stats, flow, reserved, port: channel.port2 }
    let response: ShardResponse<OpenResponse>
    try {
      response = (await this.pool.run(request, { transferList: [channel.port2] })) as ShardResponse<OpenResponse>
    } catch (error) {
      channel.port1.close()
      throw new EngineError('SHARD_FAILED', `shard ${this.shard}'s worker failed`, { cause: error })
    }
    if (!response.ok) {
      channel.port1.close()
      throw errorFrom(response.error)
    }
    const { backend, backendReason, recovery, orderedView } = response.value
    return { shard: this.shard, port: channel.port1, reserved, stats, flow, orderedView, backend, backendReason, recovery }
  }

  /**
   * Closes the shard (the writes it has taken, from every connection, are answered first; later ones are
   * answered ENGINE_CLOSED) and every connection to it; the thread then lingers for the next open. A thread
   * that failed to close its shard ends.
   */
  async close(): Promise<void> {
    let response: ShardResponse<unknown> | undefined
    try {
      response = (await this.pool.run({ type: 'close' } satisfies LifecycleRequest)) as ShardResponse<unknown>
    } catch {
      // The worker already stopped (a bug): there is nothing left to close but the pool.
    }
    if (response?.ok === true) lingerThread(this.pool)
    else await this.pool.destroy()
  }
}
