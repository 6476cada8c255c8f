// What a crash test's child process (writer.mjs, growing-writer.mjs) shares: one line at a time to its parent
// on stdout (ReportingChild in harness.ts reads them), and a FATAL line and a distinct exit code for what
// must never pass silently: an uncaught error (70), or a run no one killed in time (71).
import { writeSync } from 'node:fs'

/** Writes one line to stdout synchronously and whole (a kill may come at any moment after). */
export function report(line) {
  const bytes = Buffer.from(line.replace(/\n/g, ' ') + '\n')
  let written = 0
  while (written < bytes.length) {
    try {
      written += writeSync(1, bytes, written)
    } catch (error) {
      if (error.code !== 'EAGAIN') throw error
    }
  }
}

/** Reports an uncaught error, or a run past `runMsMax`, as FATAL, and exits. */
export function exitOnFatal(runMsMax) {
  process.on('uncaughtException', (error) => {
    report(`FATAL uncaughtException ${error?.stack ?? error}`)
    process.exit(70)
  })
  process.on('unhandledRejection', (error) => {
    report(`FATAL unhandledRejection ${error?.stack ?? error}`)
    process.exit(70)
  })
  setTimeout(() => {
    report('FATAL runMsMax reached')
    process.exit(71)
  }, runMsMax).unref()
}
