// Process crash: SIGKILL the writer at a random moment, with no file system shutdown (the page cache
// keeps everything written, so this proves the log and recovery, not the fsyncs); on some rounds also
// SIGKILL one or two reopens in the middle of recovery before the final reopen. Then check every key
// against what the writer had acknowledged. Needs no root: it runs in os.tmpdir().
//
//   RINGKV_CRASH_KILL_ROUNDS  rounds per backend (default 20)
//   RINGKV_CRASH_SEED, RINGKV_CRASH_BACKENDS as in power-loss.test.ts
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  baseSeed,
  compactionForced,
  crashBackends,
  crashShards,
  environmentNumber,
  expectRecovered,
  model,
  RoundDatabase,
  skipWithoutBackend,
  sleep,
  Writer,
} from './harness.js'
import { summarizeErrors } from './report.js'

const rounds = environmentNumber('RINGKV_CRASH_KILL_ROUNDS', 20)

describe('process crash (SIGKILL), including during recovery', () => {
  for (const backend of crashBackends()) {
    it(
      `${backend}: every acknowledged write survives ${rounds} kills of the writer and of recovery`,
      async (context) => {
        const root = mkdtempSync(join(tmpdir(), 'ringkv-crash-kill-'))
        try {
          await skipWithoutBackend(context, `process crash with ${backend}`, backend, root)
          const seed = model.mix(baseSeed, 3, backend === 'io_uring' ? 1 : 2)
          console.log(`[crash] process crash ${backend}: ${rounds} rounds, RINGKV_CRASH_SEED=${baseSeed} (seed ${seed})`)
          const rng = model.random(seed)
          const totals = {
            acknowledged: 0,
            unacknowledgedSurvivors: 0,
            recoveryKills: 0,
            recoveryKillsDuringOpen: 0,
            databases: 1,
            compactions: 0,
            checkpointLoads: 0,
          }
          const errorCodes = new Map<string, number>()
          const database = new RoundDatabase(root, seed)
          let readyMs = 800
          let openMs = 100
          for (let round = 1; round <= rounds; round++) {
            const { dir, crashModel } = database
            const where = `process crash ${backend} round ${round} (model round ${crashModel.round}, seed ${seed})`
            const spawned = performance.now()
            const writer = new Writer(crashModel.writerConfig(dir, backend, crashShards))
            if (rng.integer(5) === 0) {
              await sleep(rng.next() * readyMs) // while it starts or recovers
            } else {
              await writer.ready
              readyMs = performance.now() - spawned
              await sleep(rng.next() * 1000)
            }
            await writer.kill()
            if (writer.openMs !== undefined) openMs = writer.openMs
            expect(writer.fatal, `${where}: the writer crashed\n${writer.describe()}`).toBeUndefined()
            expect(writer.protocolProblems, where).toEqual([])
            expect(writer.errors, `${where}: the writer saw errors without any fault\n${writer.describe()}`).toEqual([])
            summarizeErrors(writer.errors, errorCodes)

            // Kill recovery itself, once or twice, at a random point of its run.
            const recoveryKills = rng.integer(3)
            for (let kill = 0; kill < recoveryKills; kill++) {
              const reopen = new Writer(crashModel.writerConfig(dir, backend, crashShards, 'open'))
              await reopen.openingStarted
              await sleep(rng.next() * openMs * 1.2)
              await reopen.kill()
              totals.recoveryKills++
              if (reopen.opening && reopen.readyLine === undefined) totals.recoveryKillsDuringOpen++
              expect(reopen.openFailure, `${where}: a reopen failed\n${reopen.describe()}`).toBeUndefined()
              if (reopen.openMs !== undefined) openMs = reopen.openMs
            }

            const result = await crashModel.check(dir, backend, crashShards, writer.acknowledged)
            expectRecovered(result, dir, writer, where)
            totals.compactions += writer.compactions
            const reports = (result.recovery ?? []) as { checkpointSequence?: number }[]
            totals.checkpointLoads += reports.filter((report) => (report.checkpointSequence ?? 0) > 0).length
            totals.acknowledged += writer.acknowledgementCount
            totals.unacknowledgedSurvivors += result.unacknowledgedSurvivors
            database.nextRound(result.observed)
            totals.databases = database.count
          }
          console.log(
            `[crash] process crash ${backend}: ${rounds} rounds passed; ${JSON.stringify(totals)}; ` +
              `writer errors ${JSON.stringify(Object.fromEntries(errorCodes))}`,
          )
          // The kills landed where checkpoints were: the reopens found and loaded them.
          if (compactionForced && rounds >= 4) expect(totals.checkpointLoads, 'reopens that loaded a checkpoint').toBeGreaterThan(0)
        } finally {
          rmSync(root, { recursive: true, force: true })
        }
      },
      Math.max(120_000, rounds * 10_000),
    )
  }
})
