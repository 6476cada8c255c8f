// A worker thread that opens a database and shares it with the thread that started it (handle.ts): it
// posts the share, or the open's error, then closes the database when told to.
import { parentPort, workerData } from 'node:worker_threads'
import { open } from '@ringkv/engine'

let db
try {
  db = await open(workerData.directory, workerData.options)
} catch (error) {
  parentPort.postMessage({ error: { name: error.name, code: error.code, message: error.message } })
}
if (db !== undefined) {
  const share = db.share()
  parentPort.postMessage({ share }, share.transferList)
  parentPort.once('message', async () => {
    await db.close()
    parentPort.postMessage({ closed: true })
  })
}
