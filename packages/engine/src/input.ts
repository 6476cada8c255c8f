// Argument checks for the public calls. Bad arguments are programmer errors: TypeError or RangeError
// naming the argument, raised before anything is queued, each with a stable `code` (ArgumentErrorCode)
// that callers and adapters may branch on; codes are API, messages are not.

import { keyBytesMax, valueBytesMax } from '@ringkv/workers'

export type ArgumentErrorCode =
  | 'INVALID_KEY' // a key that is not a string or a Uint8Array (TypeError), or is empty (RangeError)
  | 'KEY_TOO_LARGE' // a key over keyBytesMax (64 KiB) as UTF-8 (RangeError)
  | 'INVALID_VALUE' // a value that is not a string or a Uint8Array (TypeError)
  | 'VALUE_TOO_LARGE' // a value over valueBytesMax (16 MiB) as UTF-8 (RangeError)
  | 'INVALID_OPTION' // open()'s options: not an object, or an option of the wrong type or out of range
  | 'INVALID_ARGUMENT' // any other argument: open()'s directory, batch()'s operations and their type

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

/** The key as bytes: non-empty, at most keyBytesMax (64 KiB) as UTF-8. */
export function keyBytes(key: unknown, name = 'key'): Uint8Array {
  const bytes = bytesOf(key, name, 'INVALID_KEY')
  if (bytes.length === 0) throw argumentError(RangeError, 'INVALID_KEY', `${name} must not be empty`)
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
