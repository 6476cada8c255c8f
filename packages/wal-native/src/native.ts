// The one module in ringkv that imports koffi.
//
// Owns: the libc handle, one fixed prototype of `syscall` per call shape, and the few libc functions the ring
// needs (mmap, munmap, close, flock). Promises: every function here is typed, returns the raw C result, and leaves
// errno readable through `errno()` right after a synchronous call and inside an `.async` callback (koffi restores
// the worker thread's errno before it runs the callback). Nothing here interprets a result: ring.ts and lock.ts do.
//
// Why fixed prototypes for a variadic function: koffi cannot run a variadic call asynchronously, and the ring's
// wait must run off the JavaScript thread. glibc's `syscall` only moves integer registers, so calling it through a
// non-variadic prototype with integer and pointer arguments is sound on x86_64.
//
// Where `.async` runs: koffi queues it with napi_create_async_work, that is on the libuv threadpool, which all
// worker_threads of a process share (UV_THREADPOOL_SIZE, 4 by default). A ring waiting in io_uring_enter holds one
// threadpool thread for as long as it waits.

import koffi from 'koffi'

// Only x86_64 is wired and tested. Syscalls added since Linux 5.1 share one number on most architectures, so
// arm64 very likely uses the same 425 and 426, but nobody here has run it: add it when it is tested.
const syscallNumbersByArch: Record<string, { ioUringSetup: number; ioUringEnter: number }> = {
  x64: { ioUringSetup: 425, ioUringEnter: 426 },
}

const syscallNumbers = syscallNumbersByArch[process.arch]
if (syscallNumbers === undefined) {
  throw new Error(
    `@ringkv/wal-native supports x86_64 only (process.arch is '${process.arch}'): add this architecture's ` +
      'syscall numbers for io_uring_setup and io_uring_enter to native.ts (x86_64: 425 and 426).',
  )
}
if (process.platform !== 'linux') {
  throw new Error(`@ringkv/wal-native needs Linux io_uring (process.platform is '${process.platform}').`)
}

const libc = koffi.load('libc.so.6')

// long syscall(long number, unsigned entries, struct io_uring_params *params)
const syscallSetup = libc.func('syscall', 'long', ['long', 'uint32_t', 'void *'])
// long syscall(long number, int fd, unsigned to_submit, unsigned min_complete, unsigned flags, void *arg, size_t argsz)
const syscallEnter = libc.func('syscall', 'long', ['long', 'int', 'uint32_t', 'uint32_t', 'uint32_t', 'void *', 'size_t'])
const mmapNative = libc.func('mmap', 'void *', ['void *', 'size_t', 'int', 'int', 'int', 'int64_t'])
const munmapNative = libc.func('munmap', 'int', ['void *', 'size_t'])
const closeNative = libc.func('close', 'int', ['int'])
const flockNative = libc.func('flock', 'int', ['int', 'int'])

/** A pointer into native memory, as koffi 3 represents it. */
export type Pointer = bigint

/** mmap's failure value, (void *) -1: a BigInt, never null. */
export const mapFailed: Pointer = 0xffffffffffffffffn

export const protRead = 0x1
export const protWrite = 0x2
export const mapShared = 0x01
/** Fault the ring pages in at mmap time rather than on first touch from the JavaScript thread. */
export const mapPopulate = 0x8000
export const lockExclusive = 2
export const lockNonBlocking = 4

/** io_uring_setup(2): a ring fd, or -1 with errno set. `params` is filled in by the kernel. */
export function ioUringSetup(entries: number, params: Uint8Array): number {
  return Number(syscallSetup(syscallNumbers!.ioUringSetup, entries, params))
}

/**
 * io_uring_enter(2) on the calling (JavaScript) thread. With minComplete 0 it never blocks; with more and
 * IORING_ENTER_GETEVENTS it blocks the calling thread until that many CQEs are ready (a ring in 'thread'
 * wait mode, on a thread that has nothing else to do meanwhile).
 */
export function ioUringEnter(fd: number, toSubmit: number, minComplete: number, flags: number): number {
  return Number(syscallEnter(syscallNumbers!.ioUringEnter, fd, toSubmit, minComplete, flags, null, 0))
}

/**
 * io_uring_enter(2) on a libuv threadpool thread. `callback(result, errno)`: errno is only meaningful when
 * result is -1. A koffi-level failure (never expected) is passed as `koffiError`.
 */
export function ioUringEnterAsync(
  fd: number,
  toSubmit: number,
  minComplete: number,
  flags: number,
  callback: (koffiError: Error | null, result: number, errnoValue: number) => void,
): void {
  syscallEnter.async(
    syscallNumbers!.ioUringEnter,
    fd,
    toSubmit,
    minComplete,
    flags,
    null,
    0,
    (koffiError: unknown, result: number | bigint) => {
      // Read errno first: koffi restores the worker's errno only for the duration of this callback.
      const errnoValue = koffi.errno()
      callback(koffiError === null ? null : (koffiError as Error), Number(result), errnoValue)
    },
  )
}

/** mmap(2) of a ring region of `fd`. Returns mapFailed on failure (errno set). */
export function mmap(length: number, prot: number, flags: number, fd: number, offset: number): Pointer {
  return mmapNative(null, length, prot, flags, fd, offset) as Pointer
}

export function munmap(pointer: Pointer, length: number): number {
  return munmapNative(pointer, length) as number
}

export function close(fd: number): number {
  return closeNative(fd) as number
}

export function flock(fd: number, operation: number): number {
  return flockNative(fd, operation) as number
}

/** errno of the last synchronous call on this thread (or of the async call whose callback is running). */
export function errno(): number {
  return koffi.errno()
}

/** An ArrayBuffer over native memory. Invalid (and never to be touched) after the memory is unmapped. */
export function view(pointer: Pointer, length: number): ArrayBuffer {
  return koffi.view(pointer, length)
}

/** The address of the first byte of a typed array (its byteOffset included). */
export function address(buffer: Uint8Array): Pointer {
  return koffi.address(buffer)
}
