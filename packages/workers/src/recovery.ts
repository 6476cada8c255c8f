// Recovery: reads a shard's log back, hands every intact batch to the table in order, and decides what
// to do with anything that is not intact. It owns those decisions and nothing else (it never writes; the
// shard truncates where recovery says).
//
// Why the tail is special: the shard writes one batch at a time and appends the next only after the
// previous one's fdatasync succeeded (log.ts). So at a crash at most one batch — the last — can be
// partly on disk, and that batch was never acknowledged. Any damage found before the last batch is
// damage to acknowledged data.
//
// | what recovery finds at offset p (the first batch that is not intact)               | action            | why |
// |-------------------------------------------------------------------------------------|-------------------|-----|
// | end of file exactly                                                                 | done              | clean log |
// | fewer bytes than a batch header, or a header that runs past the end of the file     | drop tail at p    | torn last write: never acknowledged |
// | a valid header whose body runs past the end of the file                             | drop tail at p    | torn last write: never acknowledged |
// | a header or body that fails its checksum / structure, and no intact batch after it  | drop tail at p    | a torn last write can leave any mix of old, new and zero sectors |
// | a valid header with a sequence other than the next one, and no intact batch after   | drop tail at p    | stale bytes past the last write (never ours to replay) |
// | anything not intact, followed somewhere by an intact batch                          | refuse: WAL_CORRUPT, or with recovery 'truncate' drop everything from p and report it | acknowledged data is damaged: never drop it silently |
//
// "Intact" for a batch: magic and header CRC hold, the sequence is the next expected one, the body lies
// within the file, the body CRC holds, and every record's structure and CRC hold.
//
// What v0 cannot tell: damage inside the last batch after it was acknowledged (a bit flip on disk) looks
// like a torn tail and is dropped as one. The completion log (dual-log issue) closes that gap.

import { EngineError } from './errors.js'
import {
  batchHeaderBytes,
  batchMagic,
  checksum,
  decodeBatchHeader,
  forEachRecord,
  RecordFormatError,
  type BatchHeader,
} from './record.js'

export interface RecoveryReport {
  batchesReplayed: number
  recordsReplayed: number
  bytesReplayed: number
  /** Bytes cut from the end as an unacknowledged torn tail (0 for a clean log). */
  tailBytesDropped: number
  /** Why the tail was dropped, when it was. */
  tailReason: string | undefined
  /** Set when recovery 'truncate' dropped damaged acknowledged data: exactly what was lost. */
  repaired: { fromOffset: number; bytesDropped: number; firstBatchDropped: number; reason: string } | undefined
  durationMs: number
}

export interface RecoveryResult {
  report: RecoveryReport
  /** Where the log's intact prefix ends: the shard truncates the file to this length. */
  validLength: number
  /** The sequence the next batch written gets. */
  nextSequence: number
}

export interface RecoveryOptions {
  mode: 'strict' | 'truncate'
  /** Named in reports and errors. */
  shard: number
  file: string
}

type BatchCheck = { intact: true; header: BatchHeader; end: number } | { intact: false; reason: string }

/** Checks the batch at `offset` without applying it. */
function checkBatch(contents: Uint8Array, offset: number, expectedSequence: number | undefined): BatchCheck {
  if (contents.length - offset < batchHeaderBytes) return { intact: false, reason: 'a partial batch header' }
  const header = decodeBatchHeader(contents.subarray(offset, offset + batchHeaderBytes))
  if (header === undefined) return { intact: false, reason: 'a batch header that fails its checksum' }
  if (expectedSequence !== undefined && header.sequence !== expectedSequence) {
    return { intact: false, reason: `batch sequence ${header.sequence} where ${expectedSequence} was next` }
  }
  const end = offset + batchHeaderBytes + header.bodyBytes
  if (end > contents.length) return { intact: false, reason: `batch ${header.sequence} runs past the end of the file` }
  const body = contents.subarray(offset + batchHeaderBytes, end)
  if (checksum(body) !== header.bodyChecksum) {
    return { intact: false, reason: `batch ${header.sequence} body fails its checksum` }
  }
  try {
    forEachRecord(body, header.recordCount, 'verify', undefined)
  } catch (error) {
    if (error instanceof RecordFormatError) return { intact: false, reason: `batch ${header.sequence}: ${error.message}` }
    throw error
  }
  return { intact: true, header, end }
}

/** The offset of the first intact batch after `from` (any sequence above `sequenceAfter`), if any. */
function findIntactBatchAfter(contents: Uint8Array, from: number, sequenceAfter: number): number | undefined {
  const view = new DataView(contents.buffer, contents.byteOffset, contents.byteLength)
  for (let offset = from + 1; offset + batchHeaderBytes <= contents.length; offset++) {
    if (view.getUint32(offset, true) !== batchMagic) continue
    const check = checkBatch(contents, offset, undefined)
    if (check.intact && check.header.sequence > sequenceAfter) return offset
  }
  return undefined
}

/**
 * Replays `contents` (a whole log file) into `apply`, batch by batch, following the table above.
 * Throws EngineError('WAL_CORRUPT') when acknowledged data is damaged and mode is 'strict'.
 */
export function recover(
  contents: Uint8Array,
  options: RecoveryOptions,
  apply: (body: Uint8Array, recordCount: number) => void,
): RecoveryResult {
  const started = performance.now()
  let offset = 0
  let sequence = 1
  let recordsReplayed = 0
  let tailReason: string | undefined
  let repaired: RecoveryReport['repaired']
  while (offset < contents.length) {
    const check = checkBatch(contents, offset, sequence)
    if (check.intact) {
      apply(contents.subarray(offset + batchHeaderBytes, check.end), check.header.recordCount)
      recordsReplayed += check.header.recordCount
      offset = check.end
      sequence++
      continue
    }
    const later = findIntactBatchAfter(contents, offset, sequence - 1)
    if (later === undefined) {
      tailReason = check.reason
      break
    }
    const details = {
      shard: options.shard,
      file: options.file,
      batchSequence: sequence,
      byteRange: [offset, later] as [number, number],
      reason: check.reason,
    }
    if (options.mode === 'strict') {
      throw new EngineError(
        'WAL_CORRUPT',
        `shard ${options.shard}: ${options.file} bytes ${offset}..${later} (batch ${sequence}) are damaged ` +
          `(${check.reason}) and acknowledged batches follow them; open with { recovery: 'truncate' } to keep ` +
          `the ${sequence - 1} batches before the damage and drop the rest`,
        { details },
      )
    }
    repaired = {
      fromOffset: offset,
      bytesDropped: contents.length - offset,
      firstBatchDropped: sequence,
      reason: check.reason,
    }
    break
  }
  const validLength = offset
  return {
    report: {
      batchesReplayed: sequence - 1,
      recordsReplayed,
      bytesReplayed: validLength,
      tailBytesDropped: repaired === undefined ? contents.length - validLength : 0,
      tailReason,
      repaired,
      durationMs: performance.now() - started,
    },
    validLength,
    nextSequence: sequence,
  }
}
