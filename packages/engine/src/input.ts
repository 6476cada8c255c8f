// Argument checks for the public calls. Bad arguments are programmer errors: TypeError or RangeError
// naming the argument, raised before anything is queued.

import { keyBytesMax, valueBytesMax } from '@ringkv/workers'

const encoder = new TextEncoder()

function bytesOf(value: unknown, name: string): Uint8Array {
  if (typeof value === 'string') return encoder.encode(value)
  if (value instanceof Uint8Array) return value
  const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value
  throw new TypeError(`${name} must be a string or a Uint8Array, got ${got}`)
}

/** The key as bytes: non-empty, at most keyBytesMax (64 KiB) as UTF-8. */
export function keyBytes(key: unknown, name = 'key'): Uint8Array {
  const bytes = bytesOf(key, name)
  if (bytes.length === 0) throw new RangeError(`${name} must not be empty`)
  if (bytes.length > keyBytesMax) throw new RangeError(`${name} is ${bytes.length} bytes; the limit is ${keyBytesMax}`)
  return bytes
}

/** The value as bytes: at most valueBytesMax (16 MiB); empty is allowed. */
export function valueBytes(value: unknown, name = 'value'): Uint8Array {
  const bytes = bytesOf(value, name)
  if (bytes.length > valueBytesMax) {
    throw new RangeError(`${name} is ${bytes.length} bytes; the limit is ${valueBytesMax}`)
  }
  return bytes
}

export function positiveInteger(value: unknown, name: string, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TypeError(`${name} must be an integer, got ${String(value)}`)
  if (value < 1 || value > max) throw new RangeError(`${name} must be between 1 and ${max}, got ${value}`)
  return value
}
