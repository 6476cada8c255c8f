// The worker's answer to a bug: an assertion or a RingBugError thrown while a request runs stops the
// worker thread (as an uncaught exception), instead of rejecting one task while the shard goes on. Runs the
// built module in a real worker thread: run `pnpm --filter @ringkv/workers run build` first.
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'

const workerModule = new URL('../dist/worker.js', import.meta.url).href

/** Runs answerWhenDone in a worker thread with a start function whose body is `body`. */
function answerInThread(body: string): Promise<{ answer: unknown; error: Error | undefined; exitCode: number }> {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads')
    const assert = require('node:assert/strict')
    import(workerData.workerModule).then(async ({ answerWhenDone }) => {
      const answer = await answerWhenDone((answer) => { ${body} })
      parentPort.postMessage(answer)
    })
  `
  return new Promise((resolve) => {
    const worker = new Worker(source, { eval: true, workerData: { workerModule } })
    let answer: unknown
    let error: Error | undefined
    worker.on('message', (message) => (answer = message))
    worker.on('error', (thrown) => (error = thrown))
    worker.on('exit', (exitCode) => resolve({ answer, error, exitCode }))
  })
}

describe('a request that throws in the shard worker', () => {
  it('an assertion stops the worker: no answer is posted, the thread ends with the AssertionError', async () => {
    const { answer, error, exitCode } = await answerInThread(`assert.fail('a batch placed where the previous one did not end')`)
    expect(answer).toBeUndefined()
    expect(exitCode).toBe(1)
    expect(error?.name).toBe('AssertionError')
    expect(error?.message).toMatch(/placed where the previous one did not end/)
  })

  it("wal-native's RingBugError stops the worker too", async () => {
    const { answer, error, exitCode } = await answerInThread(`
      const { RingBugError } = require(require.resolve('@ringkv/wal-native', { paths: [require('node:path').dirname(require('node:url').fileURLToPath(workerData.workerModule))] }))
      throw new RingBugError('write', 9, 'fd 99 at offset 0')`)
    expect(answer).toBeUndefined()
    expect(exitCode).toBe(1)
    expect(error?.name).toBe('RingBugError')
  })

  it('any other error fails only that request, as SHARD_FAILED, and the worker goes on', async () => {
    const { answer, error, exitCode } = await answerInThread(`throw new RangeError('a write request carries at least one record')`)
    expect(error).toBeUndefined()
    expect(exitCode).toBe(0)
    expect(answer).toEqual({
      ok: false,
      error: { code: 'SHARD_FAILED', message: 'RangeError: a write request carries at least one record' },
    })
  })

  it('an answer given later is the response', async () => {
    const { answer, exitCode } = await answerInThread(`setImmediate(() => answer({ ok: true, value: 7 }))`)
    expect(exitCode).toBe(0)
    expect(answer).toEqual({ ok: true, value: 7 })
  })
})
