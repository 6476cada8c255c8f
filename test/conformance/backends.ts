// The backends every behavioural test runs against. io_uring is skipped, with the reason printed, where it
// cannot be set up (kernel.io_uring_disabled, a seccomp profile, an old kernel).
import { probeIoUring } from '@ringkv/wal-native'

export interface BackendCase {
  backend: 'io_uring' | 'fs'
  skip: string | undefined
}

const probe = probeIoUring()
if (!probe.available) console.warn(`[ringkv tests] io_uring backend skipped: ${probe.reason}`)

export const backendCases: BackendCase[] = [
  { backend: 'io_uring', skip: probe.available ? undefined : probe.reason },
  { backend: 'fs', skip: undefined },
]
