// The comparison benchmark: ringkv against lmdb-js, classic-level, better-sqlite3 and a hand-written
// node:fs group-commit log, plus fio's view of the disk, in one run on one machine, for two key orders.
//
//   pnpm bench                                   (from the repository root: builds, then runs `--mode full`)
//   node dist/main.js --mode quick|smoke|full [--rounds N] [--engines a,b] [--orders sequential,hashed]
//                     [--load-orders sequential|hashed|sequential,hashed|none] [--out file.json] [--no-fio]
//                     [--markdown | --no-markdown] [--note "text"] [--dir /tmp]
//
// Puts run in every key order of --orders (default both: workload.ts says why); the load, gets and footprint
// run in the orders of --load-orders (default sequential, the B-trees' best case, where their load is
// fastest; both would take a full run past 15 minutes on a 2-core machine). Each engine runs each round
// and order in a child process of its own; rounds interleave the engines (A B C … A B C …) so that noise
// from a shared machine spreads over all of them, and each figure is the median over rounds. Writes a JSON
// file of every run (bench/results/, or --out) and prints the Markdown tables, the targets among them; a
// full run also rewrites BENCHMARKS.md at the repository root.

import { execFile, fork } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { ChildResult, ChildTask, Settings } from './child.js'
import type { EngineSpec } from './engines.js'
import { type DiskLimits, measureDiskLimits } from './fio.js'
import { checkTargets, markdown, ringkvDefaultLabel, summarise } from './report.js'
import { type KeyOrder, keyOrders } from './workload.js'

type Mode = 'full' | 'quick' | 'smoke'

interface ModeSettings extends Settings {
  rounds: number
  fioRuntimeSeconds: number
  childTimeoutMs: number
}

/** Key orders the puts run in, unless --orders says otherwise. */
const ordersDefault: KeyOrder[] = ['sequential', 'hashed']
/** The load, gets and footprint run in this order when it is among the put orders, else in the first of them. */
const loadOrderDefault: KeyOrder = 'sequential'

const modes: Record<Mode, ModeSettings> = {
  full: {
    rounds: 3,
    concurrencies: [1, 16, 256, 4096],
    warmupMs: 500,
    measureMs: 2000,
    loadKeys: 1_000_000,
    loadBatch: 1000,
    getConcurrency: 256,
    getMs: 2000,
    seed: 0x5eed,
    fioRuntimeSeconds: 5,
    childTimeoutMs: 600_000,
  },
  quick: {
    rounds: 1,
    concurrencies: [1, 16, 256, 4096],
    warmupMs: 200,
    measureMs: 1000,
    loadKeys: 100_000,
    loadBatch: 1000,
    getConcurrency: 256,
    getMs: 1000,
    seed: 0x5eed,
    fioRuntimeSeconds: 2,
    childTimeoutMs: 300_000,
  },
  smoke: {
    rounds: 1,
    // The concurrencies the targets read, so that the smoke run checks them too.
    concurrencies: [1, 256, 4096],
    warmupMs: 50,
    measureMs: 250,
    loadKeys: 2000,
    loadBatch: 1000,
    getConcurrency: 16,
    getMs: 250,
    seed: 0x5eed,
    fioRuntimeSeconds: 1,
    childTimeoutMs: 60_000,
  },
}

const benchDirectory = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const repositoryDirectory = resolve(benchDirectory, '..')

interface Options {
  mode: Mode
  rounds?: number
  engines?: string[]
  orders: KeyOrder[]
  loadOrders?: KeyOrder[]
  out?: string
  fio: boolean
  markdown?: boolean
  note?: string
  directory: string
}

/** A comma-separated list of key orders, each known and none twice. */
function parseOrders(flag: string, text: string): KeyOrder[] {
  const orders = text.split(',').map((order) => order.trim())
  for (const order of orders) {
    if (!(keyOrders as readonly string[]).includes(order)) throw new RangeError(`${flag} takes ${keyOrders.join(', ')}, not '${order}'`)
  }
  if (new Set(orders).size !== orders.length) throw new RangeError(`${flag} names an order twice`)
  return orders as KeyOrder[]
}

function parseOptions(argv: string[]): Options {
  const options: Options = { mode: 'full', orders: ordersDefault, fio: true, directory: os.tmpdir() }
  for (let index = 0; index < argv.length; index++) {
    const flag = argv[index]!
    const value = (): string => {
      const next = argv[++index]
      if (next === undefined) throw new RangeError(`${flag} needs a value`)
      return next
    }
    switch (flag) {
      case '--mode': {
        const mode = value()
        if (!(mode in modes)) throw new RangeError(`--mode must be one of ${Object.keys(modes).join(', ')}`)
        options.mode = mode as Mode
        break
      }
      case '--rounds':
        options.rounds = Number(value())
        if (!Number.isInteger(options.rounds) || options.rounds < 1) throw new RangeError('--rounds must be a positive integer')
        break
      case '--engines':
        options.engines = value()
          .split(',')
          .map((name) => name.trim())
          .filter(Boolean)
        break
      case '--orders':
        options.orders = parseOrders(flag, value())
        break
      case '--load-orders': {
        const text = value()
        options.loadOrders = text === 'none' ? [] : parseOrders(flag, text)
        break
      }
      case '--out':
        options.out = resolve(value())
        break
      case '--no-fio':
        options.fio = false
        break
      case '--no-markdown':
        options.markdown = false
        break
      case '--markdown':
        options.markdown = true
        break
      case '--note':
        options.note = value()
        break
      case '--dir':
        options.directory = resolve(value())
        break
      case '--':
        break
      default:
        throw new RangeError(`unknown argument ${flag}`)
    }
  }
  const outside = options.loadOrders?.filter((order) => !options.orders.includes(order)) ?? []
  if (outside.length > 0) throw new RangeError(`--load-orders names ${outside.join(', ')}, which --orders leaves out`)
  return options
}

/**
 * ringkv's default shard count here, asked of a process of its own: loading ringkv sets UV_THREADPOOL_SIZE,
 * which the children would inherit, and the other engines must run with their own defaults.
 */
async function ringkvShardsDefault(): Promise<number> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', "import { shardsDefault } from '@ringkv/engine'; console.log(shardsDefault())"],
    { cwd: benchDirectory },
  )
  const shards = Number(stdout.trim())
  if (!Number.isInteger(shards) || shards < 1) throw new Error(`shardsDefault() answered '${stdout.trim()}'`)
  return shards
}

/**
 * Every engine and configuration, in the order the rounds run them: ringkv with its defaults (`open(dir)`,
 * the row the targets are about), then each backend with one shard and with one per core, leaving out the
 * one the default row already is (io_uring with the default shard count, where io_uring can be set up),
 * then the other engines.
 */
function engineSpecs(cores: number, shardsDefault: number): EngineSpec[] {
  const shardCounts = [...new Set([1, cores])]
  const specs: EngineSpec[] = [{ label: ringkvDefaultLabel, engine: 'ringkv' }]
  for (const backend of ['io_uring', 'fs'] as const) {
    for (const shards of shardCounts) {
      if (backend === 'io_uring' && shards === shardsDefault) continue
      specs.push({ label: `ringkv ${backend} ×${shards}`, engine: 'ringkv', backend, shards })
    }
  }
  specs.push({ label: 'lmdb', engine: 'lmdb' })
  specs.push({ label: 'classic-level', engine: 'classic-level' })
  specs.push({ label: 'better-sqlite3', engine: 'better-sqlite3' })
  specs.push({ label: 'node:fs log', engine: 'fs-log' })
  return specs
}

/** better-sqlite3 is built from source at install; if that failed, its row is left out and the reason said. */
async function betterSqlite3Problem(): Promise<string | undefined> {
  try {
    const { default: Database } = await import('better-sqlite3')
    new Database(':memory:').close()
    return undefined
  } catch (error) {
    return `better-sqlite3 cannot load (${(error as Error).message.split('\n')[0]}); its native build needs python3, make and g++ at install`
  }
}

function runChild(task: ChildTask, timeoutMs: number): Promise<ChildResult> {
  return new Promise((resolvePromise) => {
    const child = fork(join(benchDirectory, 'dist', 'child.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    let answer: ChildResult | undefined
    const timer = setTimeout(() => {
      answer ??= { label: task.spec.label, order: task.order, error: `timed out after ${timeoutMs / 1000} s` } as ChildResult
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('message', (message) => {
      answer ??= message as ChildResult
    })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolvePromise(
        answer ??
          ({ label: task.spec.label, order: task.order, error: `child exited (${signal ?? code}) without a result` } as ChildResult),
      )
    })
    child.send(task)
  })
}

function packageVersion(name: string): string | undefined {
  const path = join(benchDirectory, 'node_modules', name, 'package.json')
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version : undefined
}

async function commandOutput(command: string, arguments_: string[]): Promise<string | undefined> {
  try {
    return (await promisify(execFile)(command, arguments_)).stdout.trim()
  } catch {
    return undefined
  }
}

async function describeMachine(directory: string) {
  const mount = await commandOutput('findmnt', ['-n', '-o', 'SOURCE,FSTYPE,OPTIONS', '-T', directory])
  const device = mount?.split(/\s+/)[0]
  const columns = device?.startsWith('/dev/')
    ? (await commandOutput('lsblk', ['-dn', '-o', 'NAME,SIZE,ROTA', device]))?.split(/\s+/)
    : undefined
  const disk = columns?.length === 3 ? `${columns[0]}, ${columns[1]}, rotational=${columns[2]}` : undefined
  // The tree the engine was built from: a dirty tree means uncommitted engine changes were measured too.
  const commit = await commandOutput('git', ['-C', repositoryDirectory, 'describe', '--always', '--dirty', '--exclude', '*'])
  return {
    commit: commit ?? 'unknown',
    cores: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    fileSystem: mount?.replace(/\s+/g, ' ') ?? 'unknown',
    disk: disk ?? 'unknown',
    loadAverageAtStart: os.loadavg().map((value) => Number(value.toFixed(2))),
  }
}

/** BENCHMARKS.md's explanation of what the tables measure, written above them by a run that writes the page. */
function pageHeader(settings: ModeSettings, orders: KeyOrder[], loadOrders: KeyOrder[]): string[] {
  const number = (value: number) => value.toLocaleString('en-US')
  const list = (items: string[]) => items.map((item) => `\`${item}\``).join(' and ')
  return [
    '# Benchmarks',
    '',
    'ringkv against the engines a Node.js user would pick, on one machine in one run: 16-byte keys in two orders,',
    '100-byte random values; every put is acknowledged only once it is on stable storage. Each engine runs in its own',
    'child process; rounds interleave the engines and each figure is the median over rounds.',
    '',
    `- **Key orders** (this run: ${list(orders)}; choose with \`--orders\`): \`sequential\` keys are \`key-\` and a 12-digit`,
    '  counter (`key-000000000042`), numbered in the order the puts are issued, so each put appends past every key',
    "  before it (time-ordered ids: a B-tree's best case); `hashed` keys begin with 8 bytes of the key number's hash, so",
    "  puts land all over the key space (YCSB's default: a B-tree's worst case). ringkv files every key by its hash,",
    '  so the order is the same to it. Each order has its own tables of puts/s and of latency.',
    '- **Each engine in its best honest durable configuration**, as the table at the top of',
    '  [`bench/src/engines.ts`](bench/src/engines.ts) says and the "What ran" list below reports:',
    `  - \`${ringkvDefaultLabel}\`: \`open(dir)\` with no options: the default backend (io_uring where the kernel allows it)`,
    '    and `shardsDefault()` shards (one per two cores). The targets are about this row. The `ringkv <backend> ×<shards>`',
    '    rows force a backend and a shard count; the one equal to the default row is left out.',
    '  - lmdb-js: `overlappingSync: false`, so a commit includes its sync (with it on, `put()` resolves before the sync),',
    '    and c `put()` promises in flight, which lmdb-js commits a tick at a time in one transaction.',
    "  - classic-level: `put()` with `{ sync: true }`, c promises in flight, which LevelDB's writer queue joins into one",
    '    synced write.',
    '  - better-sqlite3: `journal_mode=WAL`, `synchronous=FULL`. Its API is synchronous, so it gets the grouping a user',
    '    writes for one: every put pending since the last commit goes into one transaction (with c clients, c puts),',
    '    committed on the next turn of the event loop (`setImmediate`), which measured as fast as or faster than',
    '    committing right after the pending promise callbacks (`groupingDefault` in engines.ts).',
    '  - node:fs log: a hand-written log (records with a CRC, a `Map` in memory for reads), every pending put in one',
    '    `write` and one `fdatasync`: the floor of what a durable log costs in Node.js.',
    '- **Puts**: c logical clients, each awaiting its own put of a new key before issuing the next; each concurrency',
    '  level starts on a fresh, empty database. Latency runs from the call to the resolved promise.',
    `- **Load, gets, footprint** in ${loadOrders.length > 0 ? `${list(loadOrders)} keys` : 'no key order'} (choose with \`--load-orders\`; sequential is`,
    "  the B-trees' fastest load, and both orders would take a full run past 15 minutes on 2 cores):",
    `  ${number(settings.loadKeys)} keys in batches of ${number(settings.loadBatch)}, each batch one durable unit (a transaction, a sync batch), awaited`,
    `  before the next; then ${settings.getConcurrency} concurrent readers, each awaiting \`get\` of a random loaded key (engines that answer`,
    '  synchronously are awaited the same way; every answer is checked).',
    '- **Peak RSS** covers the whole child process over all its phases (the puts in that order, then the load);',
    '  **on disk** is the allocated size after the load; **reopen** runs from `open` to the first `get` answered.',
    "- **fio**: one append's p50 is the write's p50 plus the fdatasync's p50, on a growing file (no preallocation),",
    '  as a log grows. An engine that overwrites space it allocated before (SQLite reuses its WAL file after a',
    '  checkpoint) syncs no size change and can beat that figure.',
    `- **Targets** (issue 16), checked on \`${ringkvDefaultLabel}\` for each key order, from this run's figures: at c=256,`,
    "  ≥ 2× the best engine's durable puts/s (lmdb, classic-level, better-sqlite3) and ≥ 1.2× the node:fs log's; at",
    "  c=4096, ≥ 2× and ≥ 1.5×; at c=1, a put p50 ≤ 1.25× the best peer's p50. A target holds only if it holds in both orders.",
  ]
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2))
  const settings = { ...modes[options.mode], ...(options.rounds ? { rounds: options.rounds } : {}) }
  const orders = options.orders
  const loadOrders = options.loadOrders ?? [orders.includes(loadOrderDefault) ? loadOrderDefault : orders[0]!]
  const machine = await describeMachine(options.directory)
  // --note is a remark about the run, not part of how it was measured, so the command leaves it out.
  const measuredArguments = process.argv.slice(2).filter((argument, index, all) => argument !== '--note' && all[index - 1] !== '--note')
  const command = [
    'pnpm bench',
    ...measuredArguments.map((argument) => (/^[\w./=,:-]+$/.test(argument) ? argument : JSON.stringify(argument))),
  ].join(' ')

  let specs = engineSpecs(machine.cores, await ringkvShardsDefault())
  if (options.engines) specs = specs.filter((spec) => options.engines!.some((name) => spec.label.includes(name)))
  const leftOut: Record<string, string> = {}
  const sqliteProblem = await betterSqlite3Problem()
  if (sqliteProblem !== undefined && specs.some((spec) => spec.engine === 'better-sqlite3')) {
    leftOut['better-sqlite3'] = sqliteProblem
    specs = specs.filter((spec) => spec.engine !== 'better-sqlite3')
    console.error(`bench: leaving out better-sqlite3: ${sqliteProblem}`)
  }

  const work = await mkdtemp(join(options.directory, 'ringkv-bench-'))
  const log = (text: string) => process.stderr.write(`bench: ${text}\n`)
  log(
    `${options.mode} mode, ${settings.rounds} round(s), ${specs.length} engines, key orders ${orders.join(', ')} ` +
      `(load in ${loadOrders.join(', ') || 'none'}), in ${work}; load average ${machine.loadAverageAtStart.join(' ')}`,
  )
  const startedAt = new Date()
  const startMs = performance.now()
  try {
    let disk: DiskLimits = { available: false, skippedReason: 'skipped with --no-fio' }
    if (options.fio) {
      log(`fio: ${settings.fioRuntimeSeconds} s per job …`)
      disk = await measureDiskLimits(work, settings.fioRuntimeSeconds)
      log(disk.available ? 'fio: done' : `fio: skipped: ${disk.skippedReason}`)
    }

    // Every run of one row in one key order, keyed `order label`.
    const results = new Map<string, ChildResult[]>()
    const runsOf = (order: KeyOrder, label: string): ChildResult[] => {
      const key = `${order} ${label}`
      if (!results.has(key)) results.set(key, [])
      return results.get(key)!
    }
    for (let round = 1; round <= settings.rounds; round++) {
      for (const order of orders) {
        for (const spec of specs) {
          if (leftOut[spec.label] !== undefined) continue
          const roundStartMs = performance.now()
          const runs = runsOf(order, spec.label)
          const directory = join(work, `${spec.engine}-${order}-${round}-${runs.length}`)
          const load = loadOrders.includes(order)
          const result = await runChild({ spec, order, load, directory, settings }, settings.childTimeoutMs)
          await rm(directory, { recursive: true, force: true })
          const seconds = ((performance.now() - roundStartMs) / 1000).toFixed(1)
          const name = `round ${round}/${settings.rounds} ${order} ${spec.label}`
          if (result.skipped !== undefined) {
            leftOut[spec.label] = result.skipped
            log(`${name}: skipped: ${result.skipped}`)
            continue
          }
          runs.push(result)
          log(`${name}: ${result.error ? `FAILED: ${result.error.split('\n')[0]}` : 'ok'} (${seconds} s)`)
        }
      }
    }

    const summaries = orders.flatMap((order) =>
      specs
        .filter((spec) => leftOut[spec.label] === undefined)
        .map((spec) => summarise(spec.label, order, runsOf(order, spec.label), settings.concurrencies)),
    )
    const targets = checkTargets(summaries, orders)
    const tables = markdown({ summaries, disk, targets, leftOut, orders, ...settings })
    const loadAverageAtEnd = os.loadavg().map((value) => Number(value.toFixed(2)))
    const durationSeconds = (performance.now() - startMs) / 1000
    console.log(tables)

    const report = {
      command,
      mode: options.mode,
      startedAt: startedAt.toISOString(),
      durationSeconds,
      note: options.note,
      machine: { ...machine, loadAverageAtEnd },
      versions: {
        lmdb: packageVersion('lmdb'),
        'classic-level': packageVersion('classic-level'),
        'better-sqlite3': packageVersion('better-sqlite3'),
      },
      settings,
      orders,
      loadOrders,
      leftOut,
      disk,
      summaries,
      targets,
      runs: Object.fromEntries(
        orders.map((order) => [order, Object.fromEntries(specs.map((spec) => [spec.label, runsOf(order, spec.label)]))]),
      ),
    }
    const out = options.out ?? join(benchDirectory, 'results', `${options.mode}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
    await mkdir(dirname(out), { recursive: true })
    await writeFile(out, `${JSON.stringify(report, null, 2)}\n`)
    log(`wrote ${out} (${durationSeconds.toFixed(0)} s in all; load average at end ${loadAverageAtEnd.join(' ')})`)

    if (options.markdown ?? options.mode === 'full') {
      const versions = Object.entries(report.versions)
        .map(([name, version]) => `${name} ${version ?? 'missing'}`)
        .join(', ')
      const page = [
        ...pageHeader(settings, orders, loadOrders),
        '',
        `Command, from the repository root: \`${command}\` (on a fresh clone: \`npx -y pnpm@10 install && npx -y ${command.replace('pnpm', 'pnpm@10')}\`).`,
        '',
        `Run: ${startedAt.toISOString()}, ${durationSeconds.toFixed(0)} s. Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB,`,
        `${machine.kernel}, Node.js ${machine.node}; file system \`${machine.fileSystem}\`; disk \`${machine.disk}\`.`,
        `Load average at start ${machine.loadAverageAtStart.join(' ')}, at end ${loadAverageAtEnd.join(' ')}. Versions: ${versions}; ringkv at \`${machine.commit}\`.`,
        ...(options.note ? ['', `Note: ${options.note}`] : []),
        '',
        tables,
        '',
      ].join('\n')
      await writeFile(join(repositoryDirectory, 'BENCHMARKS.md'), page)
      log('wrote BENCHMARKS.md')
    }
    if ([...results.values()].flat().some((result) => result.error !== undefined)) process.exitCode = 1
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
