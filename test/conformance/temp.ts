import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

/** A fresh directory under the system temp dir, removed by the returned cleanup. */
export function temporaryDirectory(name: string): { directory: string; remove: () => void } {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), `ringkv-${name}-`))
  return { directory, remove: () => fs.rmSync(directory, { recursive: true, force: true }) }
}
