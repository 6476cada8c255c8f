import { AssertionError } from 'node:assert'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { FsStorage } from './fs.js'
import { discardStepBytes, ioFailure, type Storage } from './storage.js'

function errnoException(code: string, errno: number): NodeJS.ErrnoException {
  return Object.assign(new Error(code), { code, errno: -errno })
}

describe('ioFailure: the errno of a node:fs write or fsync', () => {
  it('an I/O error is an IoFailure with the kernel errno', () => {
    expect(ioFailure('fsync', errnoException('EIO', 5), '/x')).toEqual({ operation: 'fsync', errno: 5, code: 'EIO', path: '/x' })
    expect(ioFailure('write', errnoException('ENOSPC', 28), '/x')).toMatchObject({ errno: 28, code: 'ENOSPC' })
  })

  it('EBADF and EFAULT on our own file are bugs: they throw, never become IO_ERROR', () => {
    expect(() => ioFailure('write', errnoException('EBADF', 9), '/x')).toThrow(AssertionError)
    expect(() => ioFailure('fsync', errnoException('EBADF', 9), '/x')).toThrow(/a bug in ringkv/)
    expect(() => ioFailure('write', errnoException('EFAULT', 14), '/x')).toThrow(AssertionError)
  })

  it('the fs backend throws on a write to a file whose descriptor was closed under it', async () => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'ringkv-storage-'))
    const storage: Storage = new FsStorage('test')
    const file = storage.open(path.join(directory, 'intent-00000001.wal'), 'intent') as { fd: number } & ReturnType<FsStorage['open']>
    fs.closeSync(file.fd)
    // node:fs calls back on the threadpool's completion; the throw escapes from that callback.
    const thrown = await new Promise<unknown>((resolve) => {
      const listener = (error: unknown): void => resolve(error)
      process.once('uncaughtException', listener)
      file.writeDurable(new Uint8Array(512), 0, () => resolve('called back'))
    })
    expect(thrown).toBeInstanceOf(AssertionError)
    expect(String((thrown as Error).message)).toMatch(/write of .* failed with EBADF/)
    fs.rmSync(directory, { recursive: true, force: true })
  })
})

describe('discard: files nothing needs any more', () => {
  it('removes large files (cut down step by step first) and small ones, ignores missing ones, and calls back once', async () => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'ringkv-discard-'))
    const storage: Storage = new FsStorage('test')
    const large = path.join(directory, 'checkpoint-0000000000000001.ckpt')
    const small = path.join(directory, 'intent-00000001.wal')
    fs.writeFileSync(large, new Uint8Array(discardStepBytes * 2 + 4096))
    fs.writeFileSync(small, new Uint8Array(4096))
    let calls = 0
    await new Promise<void>((resolve) =>
      storage.discard([large, small, path.join(directory, 'missing')], () => {
        calls++
        resolve()
      }),
    )
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(calls).toBe(1)
    expect(fs.readdirSync(directory)).toEqual([])
    fs.rmSync(directory, { recursive: true, force: true })
  })
})

describe('read into a buffer given', () => {
  it('reads the whole file into the buffer asked for its length, and answers only the bytes read', () => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'ringkv-storage-'))
    try {
      const storage: Storage = new FsStorage('test')
      const filePath = path.join(directory, 'intent-00000001.wal')
      const bytes = Uint8Array.from({ length: 3000 }, (_, index) => (index * 7) & 0xff)
      fs.writeFileSync(filePath, bytes)
      const stale = new Uint8Array(8192).fill(0xee)
      const asked: number[] = []
      const contents = storage.read(filePath, (length) => {
        asked.push(length)
        return stale
      })
      expect(asked).toEqual([3000])
      expect(contents.buffer).toBe(stale.buffer)
      expect(contents).toEqual(bytes)
      expect(new Uint8Array(storage.read(filePath))).toEqual(bytes)
      storage.close()
    } finally {
      fs.rmSync(directory, { recursive: true, force: true })
    }
  })
})
