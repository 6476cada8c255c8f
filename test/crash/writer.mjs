// The crash tests' writer child. It opens a ringkv database and runs the workload of model.mjs, one
// logical client per async loop, and reports every acknowledgement on stdout the moment the promise has
// resolved, with a synchronous write to fd 1 (so a report is in the pipe before the next operation starts,
// and a SIGKILL can lose only reports of operations that were never acknowledged to us).
//
// Usage: node writer.mjs '<json config>'   (config fields below; the test builds it)
//
// Lines on stdout, one event each:
//   OPENING                                       about to call open (recovery starts)
//   READY <openMs> <json: backends, recovery report if the engine exposes one>
//   OPENFAIL <code> <causeCode> <message>          open threw; exit code 3
//   A <client> <sequence>                         the client's operation resolved (acknowledged durable)
//   E <client> <sequence> <code> <causeCode> <message>   it rejected; the client stops there
//   READ <ok> <bad> <threw> <first problem>       reads after all clients stopped (mode 'write' only)
//   CLOSED ok | CLOSED <code> <causeCode>
//   FATAL <message>                               an uncaught error; exit code 70 (the process "crashed")
import { performance } from 'node:perf_hooks'
import { open } from '@ringkv/engine'
import { exitOnFatal, report } from './child-report.mjs'
import { describeValue, effectsOf, keyOf, operationAt, sameBytes, valueOf } from './model.mjs'

const config = JSON.parse(process.argv[2] ?? '{}')
const {
  mode = 'write', // 'write': run the workload; 'open': open (recover), report, close
  dir,
  backend = 'auto',
  shards = 2,
  seed = 1,
  round = 1,
  workload,
  operationsPerClient = Number.POSITIVE_INFINITY,
  runMsMax = 120_000, // a writer nobody killed exits by itself
  compaction, // { segmentBytes, logBytes, compactLoop }: checkpoints forced often (harness.ts)
} = config

function errorFields(error) {
  const code = error?.code ?? error?.name ?? 'UNKNOWN'
  const causeCode = error?.cause?.code ?? error?.cause?.name ?? '-'
  return `${code} ${causeCode} ${String(error?.message ?? error).slice(0, 300)}`
}

function jsonSafe(value) {
  return JSON.stringify(value, (_key, item) => (typeof item === 'bigint' ? Number(item) : item))
}

exitOnFatal(runMsMax)

report('OPENING')
const openStart = performance.now()
let db
try {
  db = await open(
    dir,
    compaction === undefined
      ? { shards, backend }
      : { shards, backend, segmentBytes: compaction.segmentBytes, autoCheckpoint: { logBytes: compaction.logBytes } },
  )
} catch (error) {
  report(`OPENFAIL ${errorFields(error)}`)
  process.exit(3)
}
const openMs = performance.now() - openStart
let stats
try {
  stats = db.stats()
} catch (error) {
  stats = { error: String(error) }
}
report(`READY ${openMs.toFixed(1)} ${jsonSafe({ stats, recovery: db.recovery ?? db.recoveryReport ?? null })}`)

if (mode === 'open') {
  await closeAndExit()
}

// What this process saw acknowledged, per key, to check reads once every client has stopped.
const acknowledged = new Map()
// Per key, what the one operation of its client that failed would have written.
const failed = new Map()

async function runClient(client) {
  for (let sequence = 1; sequence <= operationsPerClient; sequence++) {
    const operation = operationAt(workload, seed, round, client, sequence)
    const values = operation.writes.map((write, writeIndex) =>
      write.type === 'put' ? valueOf(seed, round, client, sequence, writeIndex, write.valueLength) : undefined,
    )
    try {
      if (operation.type === 'put') {
        await db.put(keyOf(client, operation.writes[0].keyIndex), values[0])
      } else if (operation.type === 'delete') {
        await db.delete(keyOf(client, operation.writes[0].keyIndex))
      } else {
        await db.batch(
          operation.writes.map((write, writeIndex) =>
            write.type === 'put'
              ? { type: 'put', key: keyOf(client, write.keyIndex), value: values[writeIndex] }
              : { type: 'delete', key: keyOf(client, write.keyIndex) },
          ),
        )
      }
    } catch (error) {
      report(`E ${client} ${sequence} ${errorFields(error)}`)
      // A failed batch may still have landed on the shards that did not fail (batches are atomic per
      // shard only), so its values are legitimate reads too.
      for (const [key, value] of effectsOf(workload, seed, round, client, sequence)) failed.set(key, value)
      return
    }
    report(`A ${client} ${sequence}`)
    for (const [key, value] of effectsOf(workload, seed, round, client, sequence)) acknowledged.set(key, value)
  }
}

// On some rounds, checkpoints back to back while the clients write: `K <n>` after each one made current.
let clientsDone = false
const compacting =
  compaction?.compactLoop === true
    ? (async () => {
        for (let count = 1; !clientsDone; count++) {
          try {
            await db.compact()
            report(`K ${count}`)
          } catch (error) {
            report(`C ${errorFields(error)}`)
            return
          }
        }
      })()
    : Promise.resolve()
await Promise.all(Array.from({ length: workload.clients }, (_, client) => runClient(client)))
clientsDone = true
await compacting

// Every client has stopped (an error, or its operation budget). Reads of what was acknowledged must keep
// working, and show the acknowledged value (or, for a key its client's failed batch touched, that batch's
// value: the part on a shard that did not fail is durable).
let ok = 0
let bad = 0
let threw = 0
let firstProblem = '-'
for (const [key, expected] of acknowledged) {
  try {
    const raw = await db.get(key)
    const value = raw === undefined ? undefined : new Uint8Array(raw)
    if (sameBytes(value, expected) || (failed.has(key) && sameBytes(value, failed.get(key)))) {
      ok++
    } else {
      bad++
      if (firstProblem === '-') firstProblem = `${key}: got ${describeValue(value)}, acknowledged ${describeValue(expected)}`
    }
  } catch (error) {
    threw++
    if (firstProblem === '-') firstProblem = `${key}: get threw ${errorFields(error)}`
  }
}
report(`READ ${ok} ${bad} ${threw} ${firstProblem}`)
await closeAndExit()

async function closeAndExit() {
  try {
    await db.close()
    report('CLOSED ok')
  } catch (error) {
    report(`CLOSED ${errorFields(error)}`)
  }
  process.exit(0)
}
