// A writer child with many writes in flight is killed with SIGKILL at a random moment; every write it
// reported acknowledged must be there after reopen, with its exact value, and a scan in key order gives
// exactly what the reads give. The writers run in the thread that opened the database, or spread over
// several threads, all but one writing through handles (share/attach). (Process crash only: the page
// cache survives. Power loss is tested in test/crash/.)
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { open } from '@ringkv/engine'
import { backendCases, type BackendCase } from './backends.js'
// @ts-expect-error a plain ESM module shared with the writer child
import { stateAfter } from './kill-plan.mjs'
import { temporaryDirectory } from './temp.js'

const writer = fileURLToPath(new URL('./kill-writer.mjs', import.meta.url))
const rounds = Number(process.env.RINGKV_KILL_ROUNDS ?? 4)
const clients = 64

type State = Map<string, string | null>

async function killRound(
  backend: BackendCase['backend'],
  delayMs: number,
  threads: number,
): Promise<{ acknowledged: number; keys: number; threadsAcknowledging: number }> {
  const { directory, remove } = temporaryDirectory(`kill-${backend}`)
  try {
    const child = spawn(process.execPath, [writer, directory, backend, '2', String(clients), String(threads)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const lastAcknowledged = new Array<number>(clients).fill(-1)
    let acknowledged = 0
    let buffered = ''
    let ready!: () => void
    const isReady = new Promise<void>((resolve) => (ready = resolve))
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk
      const lines = buffered.split('\n')
      buffered = lines.pop()!
      for (const line of lines) {
        if (line === 'ready') ready()
        else {
          const [, id, step] = line.split(' ').map(Number) as [number, number, number]
          expect(step).toBe(lastAcknowledged[id]! + 1) // each client acknowledges its steps in order
          lastAcknowledged[id] = step
          acknowledged++
        }
      }
    })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)))
    await isReady
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    child.kill('SIGKILL')
    expect(await exited).toBe('SIGKILL')

    const db = await open(directory, { backend })
    let keys = 0
    const found = new Map<string, string>()
    try {
      expect(db.recovery.every((report) => report.repaired === undefined)).toBe(true)
      for (let id = 0; id < clients; id++) {
        const durable = stateAfter(id, lastAcknowledged[id]) as State
        const maybe = stateAfter(id, lastAcknowledged[id]! + 1) as State // the one step that may have been in flight
        for (const key of maybe.keys()) {
          const value = await db.get(key)
          const actual = value === undefined ? undefined : Buffer.from(value).toString()
          const expectDurable = durable.get(key) ?? undefined
          const expectInFlight = maybe.get(key) ?? undefined
          expect([expectDurable, expectInFlight], `${key} (client ${id} acknowledged step ${lastAcknowledged[id]})`).toContain(actual)
          if (actual !== undefined) found.set(key, actual)
          keys++
        }
      }
      // Recovery rebuilt the ordered view too: a scan of the whole database gives exactly what the reads
      // found, in key order (every key the writer ever wrote was read above).
      const scanned: [string, string][] = []
      for await (const [key, value] of db.iterator()) scanned.push([Buffer.from(key).toString(), Buffer.from(value).toString()])
      expect(scanned).toEqual([...found].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b))))
    } finally {
      await db.close()
    }
    // Client id runs in thread id % threads: count the threads whose writes were acknowledged.
    const threadsAcknowledging = new Set(lastAcknowledged.flatMap((step, id) => (step >= 0 ? [id % threads] : []))).size
    return { acknowledged, keys, threadsAcknowledging }
  } finally {
    remove()
  }
}

for (const { backend, skip } of backendCases) {
  describe.skipIf(skip !== undefined)(`SIGKILL of a writer on ${backend}`, () => {
    for (const threads of [1, 3]) {
      it(`loses no acknowledged write over ${rounds} random kills, writers in ${threads} thread(s)`, async () => {
        for (let round = 0; round < rounds; round++) {
          const delayMs = 100 + Math.floor(Math.random() * 400)
          const { acknowledged, keys, threadsAcknowledging } = await killRound(backend, delayMs, threads)
          console.log(
            `[kill ${backend}, ${threads} threads] round ${round}: killed after ${delayMs} ms; ${acknowledged} acknowledged steps ` +
              `from ${threadsAcknowledging} threads; ${keys} keys checked`,
          )
          expect(acknowledged).toBeGreaterThan(0)
          expect(threadsAcknowledging).toBe(threads)
        }
      })
    }
  })
}
