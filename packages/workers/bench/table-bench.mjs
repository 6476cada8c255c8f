// Benchmark: the shard's WebAssembly table (WasmTable) against the JavaScript Map table (MapTable),
// each alone in a worker thread, as a shard runs it. Runs against the build in dist/:
//
//   pnpm --filter @ringkv/workers run build
//   node packages/workers/bench/table-bench.mjs                  # 1,000,000 and 10,000,000 entries
//   TABLE_BENCH_ENTRIES=20000 node packages/workers/bench/table-bench.mjs   # small, seconds (CI)
//   node packages/workers/bench/table-bench.mjs 1000000          # entry counts as arguments
//
// Per table and entry count: memory per entry measured (RSS, V8 heap, and external/ArrayBuffer
// memory from process.memoryUsage() in the worker after a full GC, before and after the inserts; for
// the WebAssembly table also the size of its linear memory, grown but not all of it touched, which
// `external` leaves out because that memory is shared: RSS is the column that counts it), inserts/s
// through applyBatch (batches of 1000 records in the log's record format, 16-byte keys, 100-byte
// values), random gets/s through getPacked (batches of 1000 keys), and the longest GC pause the worker
// saw during the timed phases (perf_hooks 'gc', wall time: on a busy machine a GC that is preempted
// looks longer). Rates count the table's calls only, not the building of batches.
// TABLE_BENCH_GC_LOG=1 prints every GC the worker saw: the forced ones (flags 4) are the benchmark's
// own, between the timed phases; flags 40 (all external memory, synchronous phantom callbacks) mark a
// full GC that V8 started for external memory pressure. Run the worker's process alone with V8's
// tracing to see each GC's reason, e.g.
//   TABLE_BENCH_RUN=wasm:1000000 node --trace-gc --trace-incremental-marking packages/workers/bench/table-bench.mjs

import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { constants, PerformanceObserver, performance } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'

const keyBytes = 16
const valueBytes = 100
const batchRecords = 1000
const getsMax = 2_000_000
const gcKindNames = {
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
}

if (isMainThread && process.env.TABLE_BENCH_RUN !== undefined) {
  // One process per measurement, so that RSS starts clean of the previous table.
  const [table, entries] = process.env.TABLE_BENCH_RUN.split(':')
  process.stdout.write(JSON.stringify(await runWorker(table, Number(entries))))
} else if (isMainThread) {
  const source = process.argv[2] ?? process.env.TABLE_BENCH_ENTRIES ?? '1000000,10000000'
  const entryCounts = source.split(',').map((text) => Number(text.trim()))
  for (const entries of entryCounts) {
    if (!Number.isSafeInteger(entries) || entries < batchRecords) {
      throw new RangeError(`entry counts must be integers of at least ${batchRecords}, got ${source}`)
    }
  }
  const rows = []
  for (const entries of entryCounts) {
    for (const table of ['map', 'wasm']) {
      const output = execFileSync(process.execPath, [fileURLToPath(import.meta.url)], {
        env: { ...process.env, TABLE_BENCH_RUN: `${table}:${entries}` },
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 1024 * 1024,
      })
      rows.push(JSON.parse(output.toString()))
    }
  }
  printRows(rows)
} else {
  parentPort.postMessage(await measure(workerData.table, workerData.entries))
}

function runWorker(table, entries) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { table, entries },
      // The Map at 10M entries needs a heap far above the default limit.
      resourceLimits: { maxOldGenerationSizeMb: 16 * 1024 },
    })
    worker.once('message', resolve)
    worker.once('error', reject)
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`benchmark worker for ${table} at ${entries} exited with ${code}`))
    })
  })
}

async function measure(tableKind, entries) {
  const { MapTable } = await import('../dist/table/table.js')
  const { WasmTable } = await import('../dist/table/wasm-table.js')
  const { encodeRecord, recordBytes, recordKindPut } = await import('../dist/format/record.js')
  setFlagsFromString('--expose-gc')
  const collectGarbage = runInNewContext('gc')

  const pauses = []
  const observer = new PerformanceObserver((list) => pauses.push(...list.getEntries()))
  observer.observe({ entryTypes: ['gc'] })
  const windows = []

  // Keys: one buffer for all, so that the keys themselves are no objects on the heap.
  const keys = new Uint8Array(entries * keyBytes)
  const keyView = new DataView(keys.buffer)
  for (let index = 0; index < entries; index++) {
    keyView.setUint32(index * keyBytes, index, true)
    keyView.setUint32(index * keyBytes + 4, Math.imul(index, 0x9e3779b1), true)
    keyView.setUint32(index * keyBytes + 8, Math.imul(index ^ 0x5bd1e995, 0x85ebca6b), true)
    keyView.setUint32(index * keyBytes + 12, Math.imul(index, 0xc2b2ae35) ^ 0x27d4eb2f, true)
  }
  // One key buffer, refilled per record: the harness itself makes no garbage per record.
  const key = new Uint8Array(keyBytes)
  const keyCopyView = new DataView(key.buffer)
  const loadKey = (index) => {
    for (let word = 0; word < keyBytes; word += 4) {
      keyCopyView.setUint32(word, keyView.getUint32(index * keyBytes + word, true), true)
    }
    return key
  }
  const value = new Uint8Array(valueBytes).fill(0xab)
  const valueView = new DataView(value.buffer)
  const body = new Uint8Array(batchRecords * recordBytes(keyBytes, valueBytes))
  const bodyView = new DataView(body.buffer)

  collectGarbage()
  collectGarbage()
  const before = process.memoryUsage()
  const table = tableKind === 'map' ? new MapTable() : WasmTable.create()

  let insertNs = 0n
  let windowStart = performance.now()
  for (let start = 0; start < entries; start += batchRecords) {
    const count = Math.min(batchRecords, entries - start)
    let offset = 0
    for (let index = start; index < start + count; index++) {
      valueView.setUint32(0, index, true)
      offset = encodeRecord(body, bodyView, offset, recordKindPut, loadKey(index), value)
    }
    const started = process.hrtime.bigint()
    table.applyBatch(count === batchRecords ? body : body.subarray(0, offset), count)
    insertNs += process.hrtime.bigint() - started
  }
  windows.push([windowStart, performance.now()])
  if (table.size !== entries) throw new Error(`table holds ${table.size} entries, expected ${entries}`)

  collectGarbage()
  collectGarbage()
  const after = process.memoryUsage()
  const wasmBytes = tableKind === 'wasm' ? table.memoryBytesNow : 0

  // Random gets of present keys, xorshift-chosen.
  const gets = Math.min(entries, getsMax)
  const packed = new Uint8Array(batchRecords * (4 + keyBytes))
  const packedView = new DataView(packed.buffer)
  let state = 0x2545f491
  let getNs = 0n
  windowStart = performance.now()
  for (let done = 0; done < gets; done += batchRecords) {
    const count = Math.min(batchRecords, gets - done)
    for (let index = 0; index < count; index++) {
      state ^= state << 13
      state ^= state >>> 17
      state ^= state << 5
      const keyIndex = (state >>> 0) % entries
      const at = index * (4 + keyBytes)
      packedView.setUint32(at, keyBytes, true)
      for (let word = 0; word < keyBytes; word += 4) {
        packedView.setUint32(at + 4 + word, keyView.getUint32(keyIndex * keyBytes + word, true), true)
      }
    }
    const started = process.hrtime.bigint()
    const answers = table.getPacked(count === batchRecords ? packed : packed.subarray(0, count * (4 + keyBytes)), count)
    getNs += process.hrtime.bigint() - started
    if (answers.length !== count * (4 + valueBytes)) throw new Error('a present key was not found')
  }
  windows.push([windowStart, performance.now()])

  await new Promise((resolve) => setTimeout(resolve, 50)) // let the last 'gc' entries arrive
  observer.disconnect()
  if (process.env.TABLE_BENCH_GC_LOG !== undefined) {
    for (const entry of pauses) {
      const kind = gcKindNames[entry.detail?.kind] ?? '-'
      console.error(
        `${tableKind} gc at ${entry.startTime.toFixed(1)} ms: ${kind} ${entry.duration.toFixed(2)} ms flags ${entry.detail?.flags}`,
      )
    }
  }
  const worstIn = ([from, to]) =>
    pauses
      .filter((entry) => entry.startTime >= from && entry.startTime <= to)
      .reduce((longest, entry) => (entry.duration > longest.duration ? entry : longest), { duration: 0 })
  const timedPauses = pauses.filter((entry) => windows.some(([from, to]) => entry.startTime >= from && entry.startTime <= to))
  const worstInsert = worstIn(windows[0])
  const worstGet = worstIn(windows[1])
  const worst = worstInsert.duration >= worstGet.duration ? worstInsert : worstGet
  table.dispose()
  return {
    table: tableKind === 'map' ? 'MapTable' : 'WasmTable',
    entries,
    rssPerEntry: (after.rss - before.rss) / entries,
    heapPerEntry: (after.heapUsed - before.heapUsed) / entries,
    externalPerEntry: (after.external - before.external) / entries,
    wasmPerEntry: wasmBytes / entries,
    insertsPerSecond: entries / (Number(insertNs) / 1e9),
    gets,
    getsPerSecond: gets / (Number(getNs) / 1e9),
    gcCount: timedPauses.length,
    gcWorstMs: worst.duration,
    gcWorstKind: gcKindNames[worst.detail?.kind] ?? '-',
    gcWorstInsertMs: worstInsert.duration,
    gcWorstGetMs: worstGet.duration,
  }
}

function printRows(rows) {
  const number = (value, digits = 0) => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
  console.log(
    'table      entries      RSS B/entry  heap B/entry  external B/entry  wasm B/entry  inserts/s    gets/s (n)             ' +
      'GCs  worst GC ms (kind; inserts/gets)',
  )
  for (const row of rows) {
    console.log(
      [
        row.table.padEnd(10),
        number(row.entries).padStart(10),
        number(row.rssPerEntry, 1).padStart(13),
        number(row.heapPerEntry, 1).padStart(13),
        number(row.externalPerEntry, 1).padStart(17),
        number(row.wasmPerEntry, 1).padStart(13),
        number(row.insertsPerSecond).padStart(10),
        `${number(row.getsPerSecond).padStart(10)} (${number(row.gets)})`.padEnd(22),
        number(row.gcCount).padStart(4),
        `${number(row.gcWorstMs, 2).padStart(12)} (${row.gcWorstKind}; ${number(row.gcWorstInsertMs, 2)}/${number(row.gcWorstGetMs, 2)})`,
      ].join(' '),
    )
  }
  for (const wasm of rows.filter((row) => row.table === 'WasmTable')) {
    const map = rows.find((row) => row.table === 'MapTable' && row.entries === wasm.entries)
    const memory = wasm.rssPerEntry / map.rssPerEntry
    console.log(
      `${number(wasm.entries)} entries: WasmTable RSS per entry ${number(memory * 100, 1)}% of MapTable's ` +
        `(target <= 50%), inserts ${number(wasm.insertsPerSecond / map.insertsPerSecond, 2)}x, ` +
        `gets ${number(wasm.getsPerSecond / map.getsPerSecond, 2)}x (target >= 1x), ` +
        `worst GC ${number(wasm.gcWorstMs, 2)} ms (target <= 5 ms)`,
    )
  }
}
