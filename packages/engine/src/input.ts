// Argument checks for the public calls. Bad arguments are programmer errors: TypeError or RangeError
// naming the argument, raised before anything is queued, each with a stable `code` (ArgumentErrorCode)
// that callers and adapters may branch on; codes are API, messages are not.

import { keyBytesMax, valueBytesMax, type KeyRange } from '@ringkv/workers'

export type ArgumentErrorCode =
  | 'INVALID_KEY' // a key that is not a string or a Uint8Array (TypeError)
  | 'KEY_TOO_LARGE' // a key over keyBytesMax (64 KiB) as UTF-8 (RangeError)
  | 'INVALID_VALUE' // a value that is not a string or a Uint8Array (TypeError)
  | 'VALUE_TOO_LARGE' // a value over valueBytesMax (16 MiB) as UTF-8 (RangeError)
  | 'INVALID_OPTION' // open()'s options: not an object, or an option of the wrong type or out of range
  | 'INVALID_ARGUMENT' // any other argument: open()'s directory, batch()'s operations and their type
  | 'INVALID_RANGE' // a range bound that is not a string or a Uint8Array, or too long to be a key (TypeError, RangeError)
  | 'INVALID_LIMIT' // an iterator's limit that is not Infinity, -1 or an integer >= 0 (TypeError, RangeError)

/** A programmer error: a TypeError (wrong type) or a RangeError (right type, value out of range). */
export type ArgumentError = (TypeError | RangeError) & { readonly code: ArgumentErrorCode }

/** Builds every programmer error the engine throws. */
export function argumentError(
  Class: TypeErrorConstructor | RangeErrorConstructor,
  code: ArgumentErrorCode,
  message: string,
): ArgumentError {
  const error: ArgumentError = Object.assign(new Class(message), { code })
  // The stack starts at the check that failed, not here.
  Error.captureStackTrace(error, argumentError)
  return error
}

const encoder = new TextEncoder()

function bytesOf(value: unknown, name: string, code: 'INVALID_KEY' | 'INVALID_VALUE'): Uint8Array {
  if (typeof value === 'string') return encoder.encode(value)
  if (value instanceof Uint8Array) return value
  const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value
  throw argumentError(TypeError, code, `${name} must be a string or a Uint8Array, got ${got}`)
}

/** The key as bytes: at most keyBytesMax (64 KiB) as UTF-8. The empty key is a key, as in Level. */
export function keyBytes(key: unknown, name = 'key'): Uint8Array {
  const bytes = bytesOf(key, name, 'INVALID_KEY')
  if (bytes.length > keyBytesMax) {
    throw argumentError(RangeError, 'KEY_TOO_LARGE', `${name} is ${bytes.length} bytes; the limit is ${keyBytesMax}`)
  }
  return bytes
}

/** The value as bytes: at most valueBytesMax (16 MiB); empty is allowed. */
export function valueBytes(value: unknown, name = 'value'): Uint8Array {
  const bytes = bytesOf(value, name, 'INVALID_VALUE')
  if (bytes.length > valueBytesMax) {
    throw argumentError(RangeError, 'VALUE_TOO_LARGE', `${name} is ${bytes.length} bytes; the limit is ${valueBytesMax}`)
  }
  return bytes
}

/** An open() option that must be an integer from 1 to `max`. */
export function positiveIntegerOption(value: unknown, name: string, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw argumentError(TypeError, 'INVALID_OPTION', `${name} must be an integer, got ${String(value)}`)
  }
  if (value < 1 || value > max) throw argumentError(RangeError, 'INVALID_OPTION', `${name} must be between 1 and ${max}, got ${value}`)
  return value
}

/** Which keys a call covers: bounds as in Level (gt/gte below, lt/lte above; gt wins over gte, lt over lte). */
export interface RangeOptions {
  gt?: string | Uint8Array
  gte?: string | Uint8Array
  lt?: string | Uint8Array
  lte?: string | Uint8Array
}

export interface IteratorOptions extends RangeOptions {
  /** Descending key order. Default false. */
  reverse?: boolean
  /** Entries at most: an integer >= 0, or Infinity or -1 for all (Level's convention). Default all. */
  limit?: number
}

function boundBytes(options: Record<string, unknown>, name: 'gt' | 'gte' | 'lt' | 'lte'): Uint8Array | undefined {
  const bound = options[name]
  if (bound === undefined) return undefined
  if (typeof bound !== 'string' && !(bound instanceof Uint8Array)) {
    const got = bound === null ? 'null' : Array.isArray(bound) ? 'an array' : typeof bound
    throw argumentError(TypeError, 'INVALID_RANGE', `options.${name} must be a string or a Uint8Array, got ${got}`)
  }
  const bytes = typeof bound === 'string' ? encoder.encode(bound) : new Uint8Array(bound) // the caller may reuse its buffer
  if (bytes.length > keyBytesMax) {
    throw argumentError(RangeError, 'INVALID_RANGE', `options.${name} is ${bytes.length} bytes; no key is longer than ${keyBytesMax}`)
  }
  return bytes
}

/** The range of `options` (an object or undefined), its bounds as bytes of their own. */
export function keyRange(options: unknown): KeyRange {
  if (options === undefined) return { low: undefined, lowExclusive: false, high: undefined, highExclusive: false }
  if (typeof options !== 'object' || options === null) throw argumentError(TypeError, 'INVALID_OPTION', 'options must be an object')
  const given = options as Record<string, unknown>
  const gt = boundBytes(given, 'gt')
  const gte = boundBytes(given, 'gte')
  const lt = boundBytes(given, 'lt')
  const lte = boundBytes(given, 'lte')
  return { low: gt ?? gte, lowExclusive: gt !== undefined, high: lt ?? lte, highExclusive: lt !== undefined }
}

/** An iterator's options: its range, direction and limit (Infinity for all). */
export function iteratorOptions(options: unknown): { range: KeyRange; reverse: boolean; limit: number } {
  const range = keyRange(options)
  const given = (options ?? {}) as Record<string, unknown>
  const reverse = given.reverse ?? false
  if (typeof reverse !== 'boolean')
    throw argumentError(TypeError, 'INVALID_OPTION', `options.reverse must be a boolean, got ${typeof reverse}`)
  const limitGiven: unknown = given.limit ?? Number.POSITIVE_INFINITY
  if (typeof limitGiven !== 'number' || Number.isNaN(limitGiven)) {
    throw argumentError(TypeError, 'INVALID_LIMIT', `options.limit must be a number, got ${String(limitGiven)}`)
  }
  const limit = limitGiven === -1 ? Number.POSITIVE_INFINITY : limitGiven
  if (limit !== Number.POSITIVE_INFINITY && !(Number.isInteger(limit) && limit >= 0)) {
    throw argumentError(RangeError, 'INVALID_LIMIT', `options.limit must be an integer >= 0, -1 or Infinity, got ${limit}`)
  }
  return { range, reverse, limit }
}
