// Child process for the SIGKILL test: runs `clients` logical clients, each doing the steps of
// kill-plan.mjs one after the other, and prints "ack <client> <step>" only after a step's promise resolved.
import { open } from '@ringkv/engine'
import { plan } from './kill-plan.mjs'

const [directory, backend, shardsText, clientsText] = process.argv.slice(2)
const db = await open(directory, { backend, shards: Number(shardsText) })
const clients = Number(clientsText)

let lines = []
function report(line) {
  if (lines.length === 0)
    setImmediate(() => {
      process.stdout.write(lines.join(''))
      lines = []
    })
  lines.push(line)
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
    report(`ack ${id} ${step}\n`)
  }
}

process.stdout.write('ready\n')
for (let id = 0; id < clients; id++) client(id)
