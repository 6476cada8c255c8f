// Child process for the lock test: opens a database, says "open", waits for "close" on stdin.
import { open } from '@ringkv/engine'

const [directory, backend] = process.argv.slice(2)
try {
  const db = await open(directory, { backend })
  process.stdout.write('open\n')
  process.stdin.once('data', async () => {
    await db.close()
    process.stdout.write('closed\n')
    process.exit(0)
  })
} catch (error) {
  process.stdout.write(`error ${error.code}\n`)
  process.exit(0)
}
