// The conformance suite through a handle: the database is opened in a worker thread (opener.mjs), and the
// suite's calls go through attach() in the test's own thread, over the handle's connections, never through
// the thread that opened it. Closing the handle closes it, then the database in the opener.
import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import { EngineError, attach, type DatabaseShare, type Engine, type EngineErrorCode, type OpenOptions } from '@ringkv/engine'

type OpenerMessage = { share: DatabaseShare } | { error: { name: string; code: EngineErrorCode; message: string } }

export async function openThroughHandle(directory: string, options: OpenOptions): Promise<Engine> {
  const opener = new Worker(new URL('./opener.mjs', import.meta.url), { workerData: { directory, options } })
  const [message] = (await once(opener, 'message')) as [OpenerMessage]
  if ('error' in message) {
    await opener.terminate()
    throw new EngineError(message.error.code, message.error.message)
  }
  const engine = attach(message.share)
  const closeHandle = engine.close.bind(engine)
  let closing: Promise<void> | undefined
  engine.close = (): Promise<void> => {
    closing ??= (async () => {
      await closeHandle()
      const exited = once(opener, 'exit')
      opener.postMessage('close')
      await exited
    })()
    return closing
  }
  return engine
}
