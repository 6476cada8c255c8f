// Recovery of one shard from its two logs: it reads both back, hands every complete batch to the table in
// order, and decides what to do with whatever is not complete. It owns those decisions and nothing else:
// it never writes; the shard cuts the logs where recovery says.
//
// What it decides is the table in recovery-cases.ts, with what the write path guarantees that the table
// relies on. This module establishes the facts about each place in the logs (is the completion record
// valid, is the batch it names intact, torn or damaged, is it the last) and does what the one matching
// case says; it never decides on the facts itself.
//
// A `refuse` case makes `open` fail with EngineError('WAL_CORRUPT') whose details name the shard, the
// case's label, the file, the batch sequence and the byte range. With the option recovery: 'truncate',
// recovery instead keeps every batch before the damage, drops the damaged batch and everything after it
// from both logs, and the report says exactly what (`repaired`).

import { completionRecordBytes, completionStatusClosed, decodeCompletion, type CompletionRecord } from '../format/completion.js'
import { gatherSectors, sectorBytes, sectorSpan, sectorStamp, sectorStampBytes, writtenEnd } from '../format/sectors.js'
import { segmentName, segmentNumbers } from '../format/segment-files.js'
import assert from 'node:assert/strict'
import { EngineError } from '../errors.js'
import { batchHeaderBytes, decodeBatchHeader, forEachRecord, RecordFormatError } from '../format/record.js'
import { checksum } from '../format/checksum.js'
import type { RecoveryReport } from '../protocol.js'
import { checkpointCase, recoveryCase, type CheckpointState, type CompletionState, type IntentState } from './recovery-cases.js'
import { followsOn, type SegmentLocation } from './segment-writer.js'
import {
  checkpointFiles,
  checkpointHeaderBytes,
  checkpointName,
  readCheckpointBlocks,
  readCheckpointHeader,
  type CheckpointHeader,
  type CheckpointSource,
} from '../format/checkpoint.js'
import type { Storage } from '../storage/storage.js'

/** Where one log continues, and what the shard must cut first. */
export interface LogResumption {
  segment: number
  /** Append position in `segment`; the shard cuts the file to it when bytes past it are not zero. */
  position: number
  /** Whether non-zero bytes lie past `position` in `segment` (to be cut). */
  dirtyPastPosition: boolean
  /** Later segments to remove (they hold nothing that is kept). */
  removeSegments: number[]
  /** The length of `segment`'s file as recovery read it (0 when it does not exist yet). */
  fileLength: number
}

export interface RecoveryResult {
  report: RecoveryReport
  nextSequence: number
  intent: LogResumption
  completion: LogResumption
  /** The intact checkpoint the table was loaded from, if any: its sequence and where the logs went on after it. */
  checkpoint: CheckpointHeader | undefined
  /** Files the shard removes once open: checkpoints superseded or never finished (checkpointCases). */
  discardFiles: string[]
  /**
   * Each log's segments wholly before the checkpoint (an earlier open retired them, or a crash left them):
   * the shard keeps some for reuse and removes the others (log/segment-writer.ts).
   */
  retired: { intent: number[]; completion: number[] }
}

/** Where recovery puts what it loads: the shard's table. */
export interface RecoveryTarget {
  /** One batch (or checkpoint block) body, in order. */
  apply(body: Uint8Array, recordCount: number): void
  /** About `entries` keys in records of `bytes` in all are about to come (a checkpoint's header says so). */
  expect(entries: number, bytes: number): void
}

export interface RecoveryOptions {
  mode: 'strict' | 'truncate'
  /** Named in reports and errors. */
  shard: number
  directory: string
}

interface Located {
  record: CompletionRecord
  segment: number
  offset: number
}

/** A place in the logs or a checkpoint that a `refuse` case matched: where it is, and which case. */
class Damage {
  constructor(
    readonly recoveryCase: { label: string },
    readonly sequence: number,
    readonly file: string,
    readonly byteRange: [number, number],
    readonly reason: string,
  ) {}
}

/** The end of the last non-zero byte at or after `from` (from itself when there is none). */
function nonZeroEnd(bytes: Uint8Array, from: number): number {
  for (let index = bytes.length - 1; index >= from; index--) if (bytes[index] !== 0) return index + 1
  return from
}

/** Whether `bytes[from..to)` (clipped to the end) holds only zeros. */
function isZero(bytes: Uint8Array, from: number, to: number): boolean {
  for (let index = from; index < to && index < bytes.length; index++) if (bytes[index] !== 0) return false
  return true
}

/**
 * The intent batch a completion record points at, read back from its sectors: `problem` says why it is not
 * intact (undefined when it is); `unwritten` whether a sector of it was not written in this segment's life
 * (format/sectors.ts): what a crash tear leaves, where damage does not.
 */
function readIntentBatch(contents: Uint8Array, located: Located): { bytes: Uint8Array; problem: string | undefined; unwritten: boolean } {
  const { record } = located
  const { bytes, unwritten } = gatherSectors(contents, record.offset, record.length, record.segment)
  const problem = (): string | undefined => {
    if (record.offset + sectorSpan(record.length) > contents.length) return 'the batch runs past the end of its intent segment'
    const header = decodeBatchHeader(bytes)
    if (header === undefined) return 'the batch header fails its checksum'
    if (header.sequence !== record.sequence) return `the intent batch has sequence ${header.sequence}`
    if (batchHeaderBytes + header.bodyBytes !== record.length || header.recordCount !== record.recordCount) {
      return 'the intent batch and its completion record disagree on its size'
    }
    const body = bytes.subarray(batchHeaderBytes)
    if (checksum(body) !== header.bodyChecksum) return 'the batch body fails its checksum'
    if (checksum(bytes.subarray(0, batchHeaderBytes), header.bodyChecksum) !== record.intentChecksum) {
      return "the intent bytes do not match the completion record's checksum"
    }
    try {
      // Structure only: the body CRC above covered every record's bytes (format/record.ts says why).
      forEachRecord(body, header.recordCount, 'trust', undefined)
    } catch (error) {
      if (error instanceof RecordFormatError) return error.message
      throw error
    }
    return undefined
  }
  return { bytes, problem: problem(), unwritten }
}

/**
 * The first batch written in this life of segment `segment` at or after `from` (a sector boundary) with a
 * sequence of at least `low`: its offset and sequence. Batches start at sector boundaries (sectors.ts), so
 * only those are looked at. `whole`: only a batch whose every sector was written in this life and whose
 * body holds; otherwise a batch header that holds is enough (the header alone proves the batch was
 * written, and so that the one before it was acknowledged).
 */
function findBatch(
  contents: Uint8Array,
  segment: number,
  from: number,
  low: number,
  whole: boolean,
): { offset: number; sequence: number } | undefined {
  for (let offset = from; offset + sectorStampBytes + batchHeaderBytes <= contents.length; offset += sectorBytes) {
    if (sectorStamp(contents, offset) !== segment) continue
    const header = decodeBatchHeader(contents.subarray(offset + sectorStampBytes, offset + sectorStampBytes + batchHeaderBytes))
    if (header === undefined || header.sequence < low) continue
    if (!whole) return { offset, sequence: header.sequence }
    const { bytes, unwritten } = gatherSectors(contents, offset, batchHeaderBytes + header.bodyBytes, segment)
    if (!unwritten && checksum(bytes.subarray(batchHeaderBytes)) === header.bodyChecksum) return { offset, sequence: header.sequence }
  }
  return undefined
}

/**
 * The first slot of completion segment `segment` at or after `from` that holds a record written in this
 * life, or one that does not decode: anything but zeros and an earlier life's records. Undefined when none.
 */
function completionWrittenPast(contents: Uint8Array, from: number, segment: number): number | undefined {
  for (let offset = from; offset < contents.length; offset += completionRecordBytes) {
    // Zeros are the usual rest of a segment: checked in place (a slot decoded is a view made).
    if (isZero(contents, offset, offset + completionRecordBytes)) continue
    if (decodeCompletion(contents.subarray(offset, offset + completionRecordBytes), segment) !== 'unwritten') return offset
  }
  return undefined
}

/** What the checkpoint step found: the checkpoint loaded (if any), what to discard, and damage. */
interface CheckpointOutcome {
  header: CheckpointHeader | undefined
  /** The checkpoint's sequence, or the damaged one's (from its name, when its header does not hold); 0 without. */
  sequence: number
  records: number
  discardFiles: string[]
  damage: Damage | undefined
  /** Blocks of a damaged checkpoint that did not hold, and were not loaded (truncate). */
  blocksDropped: number
}

/**
 * Picks the checkpoint the table starts from, as checkpointCases decides, and loads it into `target`: every
 * block when it holds; with damage, what holds of it only if `mode` is 'truncate' (the damage is returned
 * either way, for the caller to refuse or report).
 */
function loadCheckpoint(storage: Storage, options: RecoveryOptions, names: readonly string[], target: RecoveryTarget): CheckpointOutcome {
  const files = checkpointFiles(names)
  const filePath = (sequence: number, state: 'current' | 'unfinished'): string => `${options.directory}/${checkpointName(sequence, state)}`
  const discardFiles: string[] = []
  for (const sequence of files.unfinished) {
    assert.equal(checkpointCase('unfinished').decision, 'discard')
    discardFiles.push(filePath(sequence, 'unfinished'))
  }
  const newest = files.current.at(-1)
  if (newest === undefined) {
    assert.equal(checkpointCase('none').decision, 'replay')
    return { header: undefined, sequence: 0, records: 0, discardFiles, damage: undefined, blocksDropped: 0 }
  }
  const newestPath = filePath(newest, 'current')
  const source: CheckpointSource = {
    size: storage.size(newestPath),
    readAt: (offset, into) => storage.readAt(newestPath, offset, into),
  }
  const header = readCheckpointHeader(source)
  // What the header says on its own: it does not hold, it names another shard or sequence, or the log
  // after it is gone.
  let state: CheckpointState = 'intact'
  let reason = ''
  let byteRange: [number, number] = [0, 0]
  if (header === undefined) {
    state = 'damaged'
    reason = 'the checkpoint header fails its checksum'
    byteRange = [0, checkpointHeaderBytes]
  } else if (header.sequence !== newest || header.shard !== options.shard) {
    state = 'damaged'
    reason = `the checkpoint says shard ${header.shard}, sequence ${header.sequence}`
    byteRange = [0, checkpointHeaderBytes]
  } else {
    const missing = [segmentName('intent', header.intent.segment), segmentName('completion', header.completion.segment)].filter(
      (name) => !names.includes(name),
    )
    if (missing.length > 0) {
      state = 'log_missing'
      reason = `the log after the checkpoint is gone: ${missing.join(', ')}`
    }
  }
  // The blocks, loaded as they are read: when the header holds, and with truncate whatever holds of a
  // damaged checkpoint. A damaged block found after some were loaded refuses a strict open all the same
  // (the shard then discards its table). Damage in the blocks is what is reported first.
  let records = 0
  let blocksRead = 0
  if (header !== undefined) {
    const loading = state === 'intact' || options.mode === 'truncate'
    if (loading) target.expect(header.recordCount, header.bodyBytes)
    const reading = readCheckpointBlocks(source, header, (body, recordCount) => {
      if (loading) target.apply(body, recordCount)
    })
    blocksRead = reading.blocksRead
    if (loading) records = reading.recordsRead
    if (reading.state === 'damaged') {
      state = 'damaged'
      reason = reading.reason
      byteRange = reading.byteRange
    }
  }
  const found = checkpointCase(state)
  for (const sequence of files.current.slice(0, -1)) {
    // Older checkpoints go only when the newest is the one used.
    if (found.decision === 'load') {
      assert.equal(checkpointCase('superseded').decision, 'discard')
      discardFiles.push(filePath(sequence, 'current'))
    }
  }
  if (found.decision === 'load') return { header, sequence: newest, records, discardFiles, damage: undefined, blocksDropped: 0 }
  assert.equal(found.decision, 'refuse')
  const damage = new Damage(found, newest, newestPath, byteRange, reason)
  const blocksDropped = header === undefined ? 0 : header.blockCount - blocksRead
  return { header, sequence: newest, records, discardFiles, damage, blocksDropped }
}

/**
 * Recovery reads each segment whole, into buffers it keeps for this thread's next recovery, up to
 * `readBuffersKeptBytes` in all. A shard thread that opens and closes shards again and again (the engine's
 * threads linger between opens) then allocates nothing for its reads per open: each fresh read buffer is
 * garbage that an idle thread's collector may not reclaim for a long time, and the C allocator keeps what it
 * reclaims late. A log larger than that is read into buffers of its own, left to the collector. The price:
 * a thread holds what it keeps for its life, its shard open or not (a young shard's 1 MiB intent and 64 KiB
 * completion segment: about 1.1 MiB), and the bytes of the last logs read until they are read over.
 *
 * Nothing recovery returns or hands the table points into these buffers: a batch is gathered into bytes
 * of its own (format/sectors.ts gatherSectors), and the rest of what it finds is numbers.
 */
export const readBuffersKeptBytes = 4 * 1024 * 1024
/** The buffers kept, the latest recovery's first, in this thread (a module's state is per thread). */
const readBuffersKept: Uint8Array[] = []

/** The buffers this thread keeps for its next recovery (for tests). */
export function readBuffersKeptNow(): readonly Uint8Array[] {
  return [...readBuffersKept]
}

/** The segments one recovery read, each once, in buffers taken from `readBuffersKept` where one fits. */
class SegmentReads {
  private readonly contents = new Map<string, Uint8Array>()
  private readonly taken: Uint8Array[] = []

  constructor(private readonly storage: Storage) {}

  /** `filePath`'s bytes as a read sees them now; empty when `exists` is false (the listing did not name it). */
  read(filePath: string, exists: boolean): Uint8Array {
    let contents = this.contents.get(filePath)
    if (contents === undefined) {
      contents = exists ? this.readWhole(filePath) : new Uint8Array(0)
      this.contents.set(filePath, contents)
    }
    return contents
  }

  /**
   * Keeps this recovery's buffers for the thread's next one (which most likely reads segments of the same
   * sizes: the same shard, or another as young), then what was kept before, while they fit in
   * `readBuffersKeptBytes`. Nothing read may be used after.
   */
  release(): void {
    const candidates = [...this.taken, ...readBuffersKept]
    readBuffersKept.length = 0
    let keptBytes = 0
    for (const buffer of candidates) {
      if (buffer.length === 0 || keptBytes + buffer.length > readBuffersKeptBytes) continue
      readBuffersKept.push(buffer)
      keptBytes += buffer.length
    }
    this.contents.clear()
    this.taken.length = 0
  }

  private readWhole(filePath: string): Uint8Array {
    return this.storage.read(filePath, (size) => {
      let best = -1
      for (let index = 0; index < readBuffersKept.length; index++) {
        const length = readBuffersKept[index]!.length
        if (length >= size && (best === -1 || length < readBuffersKept[best]!.length)) best = index
      }
      const buffer = best === -1 ? new Uint8Array(size) : readBuffersKept.splice(best, 1)[0]!
      this.taken.push(buffer)
      return buffer
    })
  }
}

/** Empties this thread's kept read buffers (tests start from none). */
export function dropReadBuffers(): void {
  readBuffersKept.length = 0
}

export function recover(storage: Storage, options: RecoveryOptions, target: RecoveryTarget): RecoveryResult {
  const reads = new SegmentReads(storage)
  try {
    return recoverWith(storage, reads, options, target)
  } finally {
    reads.release()
  }
}

function recoverWith(storage: Storage, reads: SegmentReads, options: RecoveryOptions, target: RecoveryTarget): RecoveryResult {
  const started = performance.now()
  const names = storage.list(options.directory)
  const intentSegments = segmentNumbers(names, 'intent')
  const completionSegments = segmentNumbers(names, 'completion')
  const filePath = (kind: 'intent' | 'completion', segment: number): string => `${options.directory}/${segmentName(kind, segment)}`

  // 0. The checkpoint: the table starts from it, and the logs are replayed after its sequence.
  const checkpoint = loadCheckpoint(storage, options, names, target)
  if (checkpoint.damage !== undefined && options.mode === 'strict') throw corrupt(options, checkpoint.damage, 0)
  const base = checkpoint.sequence

  const readSegment = (kind: 'intent' | 'completion', segment: number): Uint8Array =>
    reads.read(filePath(kind, segment), (kind === 'intent' ? intentSegments : completionSegments).includes(segment))
  const readIntent = (segment: number): Uint8Array => readSegment('intent', segment)

  // 1. The completion log: every record, in order, until the first zero slot of the last segment used. A
  //    record that does not hold ends the scan; its case is decided after the batches before it (step 2),
  //    so that damage to an earlier batch is the one reported.
  const located: Located[] = []
  let completionDamage: { state: CompletionState; sequence: number; file: string; byteRange: [number, number]; reason: string } | undefined
  let completionEnd = checkpoint.header?.completion ?? { segment: completionSegments[0] ?? 1, offset: 0 }
  let cleanShutdown = false
  let lastSequence = 0
  /** Whether a record was read yet: the first one may carry any sequence the checkpoint covers. */
  let first = true
  /** A completion record at `at` of `segment` that does not hold: it ends the scan. */
  const completionProblem = (state: CompletionState, segment: number, at: number, reason: string): typeof completionDamage => ({
    state,
    sequence: lastSequence + 1,
    file: filePath('completion', segment),
    byteRange: [at, at + completionRecordBytes],
    reason,
  })
  // With a checkpoint, the completion log is read from the segment its header names: those before it hold
  // only batches it covers, and are retired (an earlier open may have left them).
  const completionFirst = checkpoint.header?.completion.segment ?? 0
  scan: for (const segment of completionSegments.filter((number) => number >= completionFirst)) {
    const contents = readSegment('completion', segment)
    for (let offset = 0; offset < contents.length; offset += completionRecordBytes) {
      const decoded = decodeCompletion(contents.subarray(offset, offset + completionRecordBytes), segment)
      if (decoded === 'unwritten') {
        // Zeros, or a record of an earlier life of a reused segment: the end of what this life wrote.
        const at = completionWrittenPast(contents, offset, segment)
        if (at !== undefined) {
          completionDamage = completionProblem('after_empty_slot', segment, at, 'a completion record follows an empty slot')
        }
        break
      }
      if (decoded === 'damaged') {
        completionDamage = completionProblem('damaged', segment, offset, 'a completion record fails its checksum')
        break scan
      }
      const closed = decoded.status === completionStatusClosed
      if (first) {
        // With a checkpoint at `base`, the completion log may start anywhere up to batch base + 1 (the
        // segments before it retired); without one (base 0), at batch 1, or at a close record of none.
        first = false
        if (decoded.sequence <= (closed ? base : base + 1)) lastSequence = closed ? decoded.sequence : decoded.sequence - 1
      } else if (lastSequence < base && decoded.sequence > lastSequence && decoded.sequence <= (closed ? base : base + 1)) {
        // A gap among batches the checkpoint holds loses nothing. It is what a scan from the first segment
        // finds when a damaged checkpoint's header cannot say where to start: a retired segment kept for
        // reuse, or left by a crash, and then the segments the checkpoint needs.
        lastSequence = closed ? decoded.sequence : decoded.sequence - 1
      }
      if (decoded.sequence !== (closed ? lastSequence : lastSequence + 1)) {
        completionDamage = completionProblem(
          'out_of_sequence',
          segment,
          offset,
          `completion record for batch ${decoded.sequence} where ${lastSequence + 1} was next`,
        )
        break scan
      }
      completionEnd = { segment, offset: offset + completionRecordBytes }
      cleanShutdown = closed
      if (!closed) {
        located.push({ record: decoded, segment, offset })
        lastSequence = decoded.sequence
      }
    }
    if (completionDamage !== undefined) break
  }

  // 2. The intent batches the completion records point at, in order.
  let damage: Damage | undefined = checkpoint.damage
  let replayed = 0
  /** The last batch the table holds: the checkpoint's, then each batch applied after it. */
  let appliedSequence = base
  let recordsReplayed = 0
  let bytesReplayed = 0
  let tailReason: string | undefined
  let tailBytesDropped = 0
  // Where the first batch after the checkpoint must start: where the checkpoint says (anywhere, when a
  // damaged checkpoint's header does not say: truncate only).
  let intentEnd: SegmentLocation | undefined =
    checkpoint.header?.intent ?? (checkpoint.damage === undefined ? { segment: intentSegments[0] ?? 1, offset: 0 } : undefined)
  let keptCompletionEnd = completionEnd
  /** Every batch up to this one was acknowledged before the checkpoint was made current (format/checkpoint.ts). */
  const acknowledgedThrough = checkpoint.header?.acknowledgedThrough ?? 0
  for (let index = 0; index < located.length; index++) {
    const entry = located[index]!
    const { record } = entry
    if (record.sequence <= base) {
      const found = recoveryCase({ completion: 'valid', intent: 'covered', last: false })
      assert.equal(found.decision, 'skip')
      continue
    }
    const contents = readIntent(record.segment)
    const range: [number, number] = [record.offset, record.offset + sectorSpan(record.length)]
    const contiguous = intentEnd === undefined || followsOn(intentEnd, record)
    const batch = contiguous ? readIntentBatch(contents, entry) : undefined
    const problem = batch === undefined ? 'the batch is not where the previous one ended' : batch.problem
    const intent: IntentState = batch === undefined ? 'misplaced' : problem === undefined ? 'intact' : batch.unwritten ? 'torn' : 'damaged'
    // A batch the checkpoint says was acknowledged before it became current is never the in-flight one.
    const last = index === located.length - 1 && !cleanShutdown && record.sequence > acknowledgedThrough
    const found = recoveryCase({ completion: 'valid', intent, last })
    if (found.decision === 'apply') {
      target.apply(batch!.bytes.subarray(batchHeaderBytes), record.recordCount)
      replayed++
      appliedSequence = record.sequence
      recordsReplayed += record.recordCount
      bytesReplayed += range[1] - range[0]
      intentEnd = { segment: record.segment, offset: range[1] }
      continue
    }
    // Whatever the decision, neither this record nor anything after it is kept.
    keptCompletionEnd = { segment: entry.segment, offset: entry.offset }
    if (found.decision === 'drop') {
      // its bytes are counted with the rest of the tail below
      tailReason = `batch ${record.sequence}: its completion record is durable but its intent bytes are torn (${problem}); ${found.why}`
    } else {
      assert.equal(found.decision, 'refuse')
      damage = new Damage(found, record.sequence, filePath('intent', record.segment), range, problem!)
    }
    break
  }
  // Damage in the log is reported even after a damaged checkpoint (truncate): what it cuts is said too.
  if ((damage === undefined || damage === checkpoint.damage) && completionDamage !== undefined) {
    const found = recoveryCase({ completion: completionDamage.state, intent: 'unknown', last: false })
    assert.equal(found.decision, 'refuse')
    damage = new Damage(found, completionDamage.sequence, completionDamage.file, completionDamage.byteRange, completionDamage.reason)
  }
  if (damage === undefined && appliedSequence < acknowledgedThrough) {
    // The log lacks batches acknowledged before the checkpoint was made current (their completion records
    // are gone): what the checkpoint_log_missing case says.
    const found = checkpointCase('log_missing')
    assert.equal(found.decision, 'refuse')
    damage = new Damage(
      found,
      appliedSequence + 1,
      filePath('completion', completionEnd.segment),
      [completionEnd.offset, completionEnd.offset + completionRecordBytes],
      `the checkpoint says batches up to ${acknowledgedThrough} were acknowledged, but the log holds none after batch ${appliedSequence}`,
    )
  }
  // Where the logs' kept part ends (a damaged checkpoint's unknown start: its first segments).
  const intentKeptEnd: SegmentLocation = intentEnd ?? { segment: intentSegments[0] ?? 1, offset: 0 }
  if (damage === undefined) {
    // 3. Past the last complete batch: only the in-flight batch (never acknowledged) may be there.
    for (const segment of intentSegments.filter((number) => number >= intentKeptEnd.segment)) {
      const contents = readIntent(segment)
      const from = segment === intentKeptEnd.segment ? intentKeptEnd.offset : 0
      // Batch appliedSequence+1 may be the in-flight one; anything later was written after it was
      // acknowledged: even torn, its header shows that (say batch n+1 was acknowledged, its intent write
      // lost, and batch n+2 torn by the crash: n+1 looks torn_last, and n+2's header says otherwise).
      const beyond = findBatch(contents, segment, from, appliedSequence + 2, false)
      // Only what this life of the segment wrote: an earlier life's sectors (a reused segment) are not the tail.
      const dirty = writtenEnd(contents, from, segment) - from
      const found = recoveryCase({
        completion: 'none',
        intent: beyond !== undefined ? 'beyond' : dirty > 0 ? 'in_flight' : nonZeroEnd(contents, from) > from ? 'stale' : 'clean',
        last: false,
      })
      if (found.decision === 'refuse') {
        damage = new Damage(
          found,
          appliedSequence + 1,
          filePath('intent', segment),
          [beyond!.offset, beyond!.offset + batchHeaderBytes],
          `intent batch ${beyond!.sequence} was written, so batch ${appliedSequence + 1} was acknowledged, but recovery has nothing intact after batch ${appliedSequence}`,
        )
        break
      }
      if (found.decision === 'drop') {
        const intact = findBatch(contents, segment, from, appliedSequence + 1, true)
        tailBytesDropped += dirty
        tailReason ??=
          intact !== undefined
            ? `batch ${intact.sequence} reached the intent log but its completion record never became durable: never acknowledged`
            : `${dirty} bytes of a torn, never acknowledged batch after batch ${appliedSequence}`
      } else {
        assert.equal(found.decision, 'end')
      }
    }
  }

  let repaired: RecoveryReport['repaired']
  if (damage !== undefined && damage !== checkpoint.damage && options.mode === 'strict') throw corrupt(options, damage, replayed)
  if (damage !== undefined) {
    let intentBytesDropped = 0
    if (damage !== checkpoint.damage) {
      for (const segment of intentSegments.filter((number) => number >= intentKeptEnd.segment)) {
        const contents = readIntent(segment)
        const from = segment === intentKeptEnd.segment ? intentKeptEnd.offset : 0
        intentBytesDropped += writtenEnd(contents, from, segment) - from
      }
    }
    repaired = {
      firstBatchDropped: damage === checkpoint.damage ? 0 : appliedSequence + 1,
      batchesDropped: damage === checkpoint.damage ? 0 : Math.max(0, lastSequence - appliedSequence),
      intentBytesDropped,
      checkpointBlocksDropped: checkpoint.blocksDropped,
      reason: [checkpoint.damage, damage]
        .filter((found, index, both) => found !== undefined && both.indexOf(found) === index)
        .map(
          (found) => `${found!.file} bytes ${found!.byteRange[0]}..${found!.byteRange[1]}: ${found!.reason} (${found!.recoveryCase.label})`,
        )
        .join('; '),
    }
    tailReason = undefined
    tailBytesDropped = 0
    cleanShutdown = false
  }

  const resumeIntent: LogResumption = {
    segment: intentKeptEnd.segment,
    position: intentKeptEnd.offset,
    dirtyPastPosition: writtenEnd(readIntent(intentKeptEnd.segment), intentKeptEnd.offset, intentKeptEnd.segment) > intentKeptEnd.offset,
    removeSegments: intentSegments.filter((number) => number > intentKeptEnd.segment),
    fileLength: readIntent(intentKeptEnd.segment).length,
  }
  const completionContents = readSegment('completion', keptCompletionEnd.segment)
  const resumeCompletion: LogResumption = {
    segment: keptCompletionEnd.segment,
    position: keptCompletionEnd.offset,
    dirtyPastPosition: completionWrittenPast(completionContents, keptCompletionEnd.offset, keptCompletionEnd.segment) !== undefined,
    removeSegments: completionSegments.filter((number) => number > keptCompletionEnd.segment),
    fileLength: completionContents.length,
  }
  return {
    report: {
      batchesReplayed: replayed,
      recordsReplayed,
      bytesReplayed,
      tailBytesDropped,
      tailReason,
      cleanShutdown,
      repaired,
      checkpointSequence: checkpoint.sequence,
      checkpointRecords: checkpoint.records,
      durationMs: performance.now() - started,
    },
    nextSequence: appliedSequence + 1,
    intent: resumeIntent,
    completion: resumeCompletion,
    // A damaged checkpoint that truncate loaded in part is not current for the shard: its next checkpoint
    // replaces it, even with no batch after it, so that the repair leaves a directory a strict open takes.
    checkpoint: checkpoint.damage === undefined ? checkpoint.header : undefined,
    discardFiles: checkpoint.discardFiles,
    retired: {
      intent: checkpoint.header === undefined ? [] : intentSegments.filter((number) => number < checkpoint.header!.intent.segment),
      completion:
        checkpoint.header === undefined ? [] : completionSegments.filter((number) => number < checkpoint.header!.completion.segment),
    },
  }
}

function corrupt(options: RecoveryOptions, damage: Damage, replayed: number): EngineError {
  const details = {
    shard: options.shard,
    case: damage.recoveryCase.label,
    file: damage.file,
    batchSequence: damage.sequence,
    byteRange: damage.byteRange,
    reason: damage.reason,
  }
  const what = damage.recoveryCase.label.startsWith('checkpoint') ? `checkpoint of batch ${damage.sequence}` : `batch ${damage.sequence}`
  const keep = damage.recoveryCase.label.startsWith('checkpoint')
    ? 'load what holds of the checkpoint, replay the log after it, and report what was lost'
    : `keep the ${replayed} batches before it and drop the rest`
  return new EngineError(
    'WAL_CORRUPT',
    `shard ${options.shard}: ${damage.file} bytes ${damage.byteRange[0]}..${damage.byteRange[1]} (${what}): ` +
      `${damage.reason}. Acknowledged data may be damaged; open with { recovery: 'truncate' } to ${keep}`,
    { details },
  )
}
