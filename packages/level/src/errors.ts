// The engine's errors as Level's. abstract-level's README ("Errors") names the codes a Level database
// raises; where the engine's code has a Level counterpart the error is rethrown under that code, with the
// engine's error as `cause` (so nothing the engine said is lost). Errors with no counterpart pass through as
// they are: they keep the engine's stable code (SHARD_FULL, SHARD_FAILED, …), and argument errors stay the
// TypeError/RangeError the engine threw.

import type { ArgumentErrorCode, EngineErrorCode } from '@ringkv/engine'

/** An error with one of Level's codes (LEVEL_LOCKED, LEVEL_IO_ERROR, …). */
export class RingLevelError extends Error {
  override readonly name = 'RingLevelError'

  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** Engine code -> Level code: one row per code that Level has a name for. */
const levelCodes: Partial<Record<EngineErrorCode | ArgumentErrorCode, string>> = {
  ENGINE_LOCKED: 'LEVEL_LOCKED',
  ENGINE_CLOSED: 'LEVEL_DATABASE_NOT_OPEN',
  ITERATOR_CLOSED: 'LEVEL_ITERATOR_NOT_OPEN',
  WAL_CORRUPT: 'LEVEL_CORRUPTION',
  IO_ERROR: 'LEVEL_IO_ERROR',
  INVALID_KEY: 'LEVEL_INVALID_KEY',
  KEY_TOO_LARGE: 'LEVEL_INVALID_KEY',
  INVALID_VALUE: 'LEVEL_INVALID_VALUE',
  VALUE_TOO_LARGE: 'LEVEL_INVALID_VALUE',
}

/** `error` as Level would raise it: under Level's code if it has one, else unchanged. */
export function levelError(error: unknown): unknown {
  if (!(error instanceof Error)) return error
  const code = (error as { code?: unknown }).code
  if (typeof code !== 'string') return error
  const levelCode = levelCodes[code as EngineErrorCode | ArgumentErrorCode]
  if (levelCode === undefined) return error
  return new RingLevelError(error.message, levelCode, { cause: error })
}

/** Awaits `operation`, raising its failure as Level would. */
export async function asLevel<T>(operation: Promise<T>): Promise<T> {
  try {
    return await operation
  } catch (error) {
    throw levelError(error)
  }
}
