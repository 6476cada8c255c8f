// Operating errors: what can go wrong with a correct program (I/O failure, damage found, a closed or
// locked engine). Each has a stable `code` that callers may branch on; codes are API, messages are not.
// Programmer errors (bad arguments) are TypeError/RangeError and never use this class.
//
// This lives in the workers package because errors are born in both threads: the façade re-exports it.

export type EngineErrorCode =
  | 'ENGINE_CLOSED' // a call after close()
  | 'ENGINE_LOCKED' // the directory is open elsewhere, in this process or another
  | 'IO_ERROR' // a write or fdatasync failed; the shard refuses writes until reopened (cause: errno)
  | 'WAL_CORRUPT' // recovery found damage to acknowledged data (see log/recovery.ts)
  | 'NOT_A_DATABASE' // a directory read as a database (inspect.ts, the CLI) holds no manifest
  | 'SHARD_FULL' // the shard's table has reached its memory limit
  | 'SHARD_COUNT_MISMATCH' // opened with a shard count other than the directory's
  | 'SHARD_FAILED' // the shard's worker died or could not start
  | 'BACKEND_UNAVAILABLE' // io_uring was required but cannot be set up here
  | 'BACKUP_TARGET_INVALID' // backup() into a directory that is not empty, or into the database itself
  | 'ITERATOR_CLOSED' // an iterator used after its close(), or after the database closed
  | 'ITERATOR_EXPIRED' // an iterator whose snapshot outgrew the shard's bound (iterators.ts), or a seek it cannot answer from its snapshot (engine iterator.ts): open a new one

export class EngineError extends Error {
  override readonly name = 'EngineError'
  readonly code: EngineErrorCode
  /** Structured facts for the operator (paths, byte ranges, errno), when the code has any. */
  readonly details: Record<string, unknown> | undefined

  constructor(code: EngineErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.details = options?.details
  }
}

/** An errno-carrying failure of one I/O operation, as `cause` of an IO_ERROR. */
export interface IoFailure {
  operation: 'write' | 'fsync' | 'open' | 'read' | 'truncate' | 'rename' | 'remove'
  /** Positive errno (5 for EIO). */
  errno: number
  /** The errno's name ('EIO', 'ENOSPC', 'EROFS', …). */
  code: string
  path?: string
}
