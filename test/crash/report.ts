// Small helpers the crash tests share for measuring and summarizing what a run saw.
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { WriterError } from './harness.js'

/** Bytes in the regular files under `dir` (0 if it does not exist). */
export function directoryBytes(dir: string): number {
  let total = 0
  let entries
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch {
    return 0
  }
  for (const entry of entries) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) total += directoryBytes(path)
    else if (entry.isFile()) total += statSync(path).size
  }
  return total
}

/** Counts errors by "code/cause" into `counts`. */
export function summarizeErrors(errors: WriterError[], counts: Map<string, number>): void {
  for (const error of errors) {
    const name = `${error.code}/${error.causeCode}`
    counts.set(name, (counts.get(name) ?? 0) + 1)
  }
}

/** Every file under `dir` with its size, one per line, for failure messages. */
export function describeDirectory(dir: string, prefix = ''): string {
  let entries
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch (error) {
    return `${prefix}${dir}: ${(error as Error).message}`
  }
  const lines: string[] = []
  for (const entry of entries) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) lines.push(describeDirectory(path, `${prefix}${entry.name}/`))
    else lines.push(`${prefix}${entry.name} ${statSync(path).size} bytes`)
  }
  return lines.join('\n')
}
