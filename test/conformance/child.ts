import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const holder = fileURLToPath(new URL('./lock-holder.mjs', import.meta.url))

/** Opens `directory` in a child process. `said` is its first line: "open" or "error <code>". */
export async function childOpen(directory: string, backend: string): Promise<{ said: string; close: () => Promise<void> }> {
  const child = spawn(process.execPath, [holder, directory, backend], { stdio: ['pipe', 'pipe', 'inherit'] })
  child.stdout.setEncoding('utf8')
  const lines: string[] = []
  let waiting: (() => void) | undefined
  let buffered = ''
  child.stdout.on('data', (chunk: string) => {
    buffered += chunk
    const parts = buffered.split('\n')
    buffered = parts.pop()!
    lines.push(...parts)
    waiting?.()
  })
  const nextLine = async (): Promise<string> => {
    while (lines.length === 0) await new Promise<void>((resolve) => (waiting = resolve))
    return lines.shift()!
  }
  const said = await nextLine()
  return {
    said,
    close: async () => {
      const exited = new Promise((resolve) => child.on('exit', resolve))
      child.stdin.end('close\n')
      await exited
    },
  }
}
