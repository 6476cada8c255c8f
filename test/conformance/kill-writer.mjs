// Child process for the SIGKILL test: runs `clients` logical clients, each doing the steps of
// kill-plan.mjs one after the other, and prints "ack <client> <step>" only after a step's promise resolved.
// With `threads` > 1, the clients are spread over that many threads: this one (which opened the database)
// and threads - 1 worker threads, each writing through a handle (share/attach) and passing its
// acknowledgements here to be printed. The checker allows one step per client past the last one printed, so
// a client starts its next step only once its acknowledgement is out: a worker thread's client waits for
// this thread to say it wrote the line (a line batched here goes out at the end of this tick, before any
// answer to a later step can arrive).
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { attach, open } from '@ringkv/engine'
import { plan } from './kill-plan.mjs'

let report
let db
let clients
let threads
let thread

if (isMainThread) {
  const [directory, backend, shardsText, clientsText, threadsText = '1'] = process.argv.slice(2)
  db = await open(directory, { backend, shards: Number(shardsText) })
  clients = Number(clientsText)
  threads = Number(threadsText)
  thread = 0
  let lines = []
  report = (line) => {
    if (lines.length === 0)
      setImmediate(() => {
        process.stdout.write(lines.join(''))
        lines = []
      })
    lines.push(line)
  }
  const started = []
  for (let other = 1; other < threads; other++) {
    const share = db.share()
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { share, clients, threads, thread: other },
      transferList: share.transferList,
    })
    worker.on('message', (message) => {
      if (message === 'ready') return
      process.stdout.write(message.line)
      worker.postMessage(message.id)
    })
    started.push(new Promise((resolve) => worker.once('message', resolve)))
  }
  await Promise.all(started)
} else {
  db = attach(workerData.share)
  ;({ clients, threads, thread } = workerData)
  const printed = new Map()
  let nextId = 0
  parentPort.on('message', (id) => {
    printed.get(id)()
    printed.delete(id)
  })
  report = (line) =>
    new Promise((resolve) => {
      const id = nextId++
      printed.set(id, resolve)
      parentPort.postMessage({ id, line })
    })
}

async function client(id) {
  for (let step = 0; ; step++) {
    const effects = plan(id, step)
    if (effects.length > 1) {
      await db.batch(effects.map(({ key, value }) => (value === null ? { type: 'delete', key } : { type: 'put', key, value })))
    } else if (effects[0].value === null) {
      await db.delete(effects[0].key)
    } else {
      await db.put(effects[0].key, effects[0].value)
    }
    await report(`ack ${id} ${step}\n`)
  }
}

if (isMainThread) process.stdout.write('ready\n')
else parentPort.postMessage('ready')
for (let id = thread; id < clients; id += threads) client(id)
