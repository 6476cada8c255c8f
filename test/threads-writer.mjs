// A worker thread for threads.test.ts: attaches the handle it was given and runs one job, reporting to the
// thread that started it. Jobs:
// - 'routing': puts `count` keys `w-<i>`, then reads the keys `m-<i>` the opener put; reports what it read.
// - 'storm': `loops` loops, each writing batches of `batchKeys` keys `<tag>-<loop>-<round>-<k>` (value: the
//   round) one after the other; reports each acknowledged batch, and the first failure's code, then stops;
//   with `holdIterator`, first opens an iterator and never closes it.
import { parentPort, workerData } from 'node:worker_threads'
import { attach } from '@ringkv/engine'

const db = attach(workerData.share)
const job = workerData.job

if (job.kind === 'routing') {
  await Promise.all(Array.from({ length: job.count }, (_, index) => db.put(`w-${index}`, `from the worker ${index}`)))
  const read = await db.getMany(Array.from({ length: job.count }, (_, index) => `m-${index}`))
  parentPort.postMessage({ read: read.map((value) => (value === undefined ? null : Buffer.from(value).toString())) })
  await db.close()
} else if (job.kind === 'storm') {
  if (job.holdIterator) {
    // An iterator left open: the shards keep its snapshot until it closes, or this thread's connections do.
    const iterator = db.iterator()
    await iterator.next()
  }
  let failed = false
  const loop = async (loop) => {
    for (let round = 0; !failed; round++) {
      const operations = Array.from({ length: job.batchKeys }, (_, k) => ({
        type: 'put',
        key: `${job.tag}-${loop}-${round}-${k}`,
        value: `${round}`.padEnd(job.valueBytes, '.'),
      }))
      try {
        await db.batch(operations)
      } catch (error) {
        if (!failed) parentPort.postMessage({ failed: error.code })
        failed = true
        return
      }
      parentPort.postMessage({ acknowledged: [loop, round] })
    }
  }
  await Promise.all(Array.from({ length: job.loops }, (_, index) => loop(index)))
  // Calls after the database closed fail at once, with the same code.
  const after = await db.put('after', 'x').then(
    () => 'resolved',
    (error) => error.code,
  )
  parentPort.postMessage({ after })
}
