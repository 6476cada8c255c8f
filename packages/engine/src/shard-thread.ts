// A shard's thread, as the thread that opened the database owns it: a Piscina pool of exactly one thread
// (so the worker is pinned to its shard and keeps its state), asked only to open the shard and to close it.
// Every other request goes over a connection (a MessagePort: protocol.ts), the opener's as any handle's, so
// the opener's ShardClient and a handle's in another thread are the same code.

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

export class ShardThread {
  private readonly pool: Piscina

  constructor(readonly shard: number) {
    this.pool = new Piscina({
      filename: workerPath,
      name: 'default',
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: 2,
      // The default, 'sync', parks an idle worker in Atomics.wait, which would stall its completion loop.
      atomics: 'disabled',
      idleTimeout: Number.POSITIVE_INFINITY,
    })
    // A worker that stops on a bug (worker.ts) with no Piscina task in flight is reported here; its
    // connections close with it, and the clients answer what they had in flight SHARD_FAILED.
    this.pool.on('error', () => {})
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
   * answered ENGINE_CLOSED), then ends its thread, which closes every connection.
   */
  async close(): Promise<void> {
    try {
      await this.pool.run({ type: 'close' } satisfies LifecycleRequest)
    } catch {
      // The worker already stopped (a bug): there is nothing left to close but the pool.
    } finally {
      await this.pool.destroy()
    }
  }
}
