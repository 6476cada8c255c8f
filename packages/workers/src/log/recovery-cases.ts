// The recovery decision table of one shard, as data (after TigerBeetle's journal `recovery_cases`): each
// case is a label, the facts it matches, what recovery does, and why. recovery.ts establishes the facts
// about each place in the logs and asks `recoveryCase`, which returns the one case that matches; it never
// branches on the facts itself. A new kind of fact (a checkpoint, a reused segment) is new rows here, and a
// test in recovery.test.ts that names each new label.
//
// What the write path guarantees (log.ts, segment-writer.ts), and these cases rely on:
// - one batch in flight per shard: batch s+1 is written only after batch s was acknowledged, so at a crash
//   only the last batch can be incomplete;
// - a batch is acknowledged only after its intent bytes and its completion record are both durable;
// - the two are written in parallel (one fdatasync of latency instead of two: measured here, p50 255–270 µs
//   for the pair in parallel against 358–417 µs one after the other, for 4 KiB + 64 B appends), so a crash
//   can leave either one durable without the other;
// - each batch starts where the previous one ended, or at offset 0 of a later segment;
// - every intent sector is stamped with the number of the segment it was written in, and every completion
//   record names its own segment (format/sectors.ts, format/completion.ts); a segment is either fresh and
//   zero-filled before it is written, or reused (a segment a checkpoint retired, renamed to a larger number
//   than any it was written as), so ahead of the write position lie only zeros or an earlier life's bytes,
//   neither of which carries the segment's own number: "unwritten in this life";
// - a crash tears a write at sector granularity (each 512-byte sector old or new): a torn intent batch shows
//   a sector unwritten in this life (or ends past the end of the file); a completion record is 64 bytes,
//   64-byte aligned, inside one sector, so it is never torn.
//
// The facts, for one place in the logs. Recovery walks the completion records in order; for each it looks
// at the intent batch the record points at. Past the last record, it looks at what the intent log holds
// after the last complete batch ("the tail").
//
//   completion  the completion record at this place:
//     valid              decodes, checksum holds, written in this life of its segment, the next sequence
//     damaged            not zero and fails its checksum, magic or status
//     out_of_sequence    valid, but not the sequence that comes next
//     after_empty_slot   a record of this life after a slot not written in it (zeros, or a record of an
//                        earlier life of a reused segment)
//     none               no record: the tail, after the last record
//   intent      the intent bytes there:
//     intact             the batch the record names, every checksum holds (header, body, records, record's)
//     torn               as a crash leaves a write: past the end of its file (or its file missing), or a
//                        sector inside it not written in this life (zeros, or stale in a reused segment)
//     damaged            does not hold, though every sector of it was written in this life: not what a
//                        crash does
//     misplaced          not where the previous batch ended (nor at 0 of a later segment)
//     clean              (tail) only zeros after the last complete batch
//     stale              (tail) after the last complete batch, only zeros and sectors of an earlier life (a
//                        reused segment, or one renamed for reuse and not written yet)
//     in_flight          (tail) sectors written in this life after the last complete batch, but no batch
//                        beyond the next sequence: torn bytes, or the next batch intact without its
//                        completion record
//     beyond             (tail) a batch written in this life whose header holds, with a sequence past the
//                        next one (its body may be torn: the header alone shows it was written)
//     unknown            not looked at: a record that does not hold names no batch to look at
//     covered            not looked at: the batch's sequence is not after the checkpoint's (the
//                        checkpoint holds it)
//   last        the record is the last "written" record and no close record follows it (so its batch may
//               still have been in flight at the crash); 'any' where it does not matter
//
// The cases are the table `recoveryCases` below: one row each.
//
// The decisions:
//   apply   hand the batch to the table and go on;
//   skip    the checkpoint already holds the batch: go on;
//   drop    the batch (or the tail) was never acknowledged: cut it from both logs, report it in `tailReason`;
//   end     nothing more to read;
//   refuse  acknowledged data is damaged: `open` fails with EngineError('WAL_CORRUPT') naming the shard, the
//           file, the batch sequence and the byte range; with recovery: 'truncate', recovery instead keeps
//           every batch before the damage, drops the rest from both logs, and says exactly what (`repaired`).
//
// The blind spot of parallel writes: if the disk LOSES or MISDIRECTS the intent write of the very last
// batch after acknowledging it, the intent log shows zeros (or stale sectors) there, exactly as after a crash before that
// write reached the disk (torn_last); if it loses its completion write, the batch sits in the intent log
// without a record, exactly as after a crash before the record reached the disk (tail_in_flight). Recovery
// drops that batch and says so in `tailReason`. Every other loss or damage of acknowledged data is refused. Writing the logs one after the other would close this
// gap at the cost of a second fdatasync per batch; ringkv chose latency here, deliberately.

import assert from 'node:assert/strict'

export const completionStates = ['valid', 'damaged', 'out_of_sequence', 'after_empty_slot', 'none'] as const
export const intentStates = [
  'intact',
  'torn',
  'damaged',
  'misplaced',
  'clean',
  'stale',
  'in_flight',
  'beyond',
  'unknown',
  'covered',
] as const
export type CompletionState = (typeof completionStates)[number]
export type IntentState = (typeof intentStates)[number]

export interface RecoveryFacts {
  completion: CompletionState
  intent: IntentState
  last: boolean
}

export type RecoveryDecision = 'apply' | 'skip' | 'drop' | 'end' | 'refuse'

export interface RecoveryCase {
  label: string
  /** The states this case matches; `any` matches all. */
  completion: readonly CompletionState[] | 'any'
  intent: readonly IntentState[] | 'any'
  last: boolean | 'any'
  decision: RecoveryDecision
  why: string
}

function row(
  label: string,
  completion: RecoveryCase['completion'],
  intent: RecoveryCase['intent'],
  last: RecoveryCase['last'],
  decision: RecoveryDecision,
  why: string,
): RecoveryCase {
  return { label, completion, intent, last, decision, why }
}

// prettier-ignore
export const recoveryCases: readonly RecoveryCase[] = [
  //  label                          completion             intent                  last    decision  why
  row('complete',                    ['valid'],             ['intact'],             'any',  'apply',  'both halves are durable: the batch is whole'),
  row('covered_by_checkpoint',       ['valid'],             ['covered'],            'any',  'skip',   'the checkpoint holds this batch (its sequence is not after the checkpoint\'s): its intent bytes may already be retired'),
  row('torn_last',                   ['valid'],             ['torn'],               true,   'drop',   "the crash came between the two logs' writes, so it was never acknowledged"),
  row('damaged_last',                ['valid'],             ['damaged'],            true,   'refuse', 'a crash tears a batch only with a sector unwritten in this life: damage to a batch that may be acknowledged'),
  row('broken_before_last',          ['valid'],             ['torn', 'damaged'],    false,  'refuse', 'a later batch (or the close) was written only after this one was acknowledged'),
  row('misplaced',                   ['valid'],             ['misplaced'],          'any',  'refuse', 'the write path never leaves a gap between batches: records or batches were lost or moved'),
  row('completion_damaged',          ['damaged'],           ['unknown'],            'any',  'refuse', 'a completion record is never torn: this is damage'),
  row('completion_out_of_sequence',  ['out_of_sequence'],   ['unknown'],            'any',  'refuse', 'a completion record was lost or misplaced'),
  row('completion_after_empty_slot', ['after_empty_slot'],  ['unknown'],            'any',  'refuse', 'completion records are written in order: one in between was lost'),
  row('tail_clean',                  ['none'],              ['clean'],              'any',  'end',    'nothing was in flight (or the shard is new)'),
  row('tail_stale',                  ['none'],              ['stale'],              'any',  'end',    'a reused segment: what lies ahead was written in an earlier life, before a checkpoint retired it'),
  row('tail_in_flight',              ['none'],              ['in_flight'],          'any',  'drop',   'the in-flight batch: its completion record never became durable, so it was never acknowledged'),
  row('tail_beyond',                 ['none'],              ['beyond'],             'any',  'refuse', 'completion records of acknowledged batches are gone'),
]

function matches<State>(pattern: readonly State[] | 'any', state: State): boolean {
  return pattern === 'any' || pattern.includes(state)
}

/** The intent states recovery can find with each completion state; any other pair cannot occur. */
const intentStatesWith: Record<CompletionState, readonly IntentState[]> = {
  valid: ['intact', 'torn', 'damaged', 'misplaced', 'covered'],
  damaged: ['unknown'],
  out_of_sequence: ['unknown'],
  after_empty_slot: ['unknown'],
  none: ['clean', 'stale', 'in_flight', 'beyond'],
}

export function factsPossible(facts: RecoveryFacts): boolean {
  return intentStatesWith[facts.completion].includes(facts.intent)
}

/** The one case that matches `facts`. Facts that match no case, or several, are a bug in this table. */
export function recoveryCase(facts: RecoveryFacts): RecoveryCase {
  // The messages are built only when an assertion fails: this runs once per batch during recovery.
  if (!factsPossible(facts)) assert.fail(`recovery facts that cannot occur: ${JSON.stringify(facts)}`)
  let found: RecoveryCase | undefined
  for (const candidate of recoveryCases) {
    if (!matches(candidate.completion, facts.completion) || !matches(candidate.intent, facts.intent)) continue
    if (candidate.last !== 'any' && candidate.last !== facts.last) continue
    if (found !== undefined) assert.fail(`recovery facts ${JSON.stringify(facts)} match both ${found.label} and ${candidate.label}`)
    found = candidate
  }
  if (found === undefined) assert.fail(`recovery facts ${JSON.stringify(facts)} match no case`)
  return found
}

// ---- checkpoints ---------------------------------------------------------------------------------
//
// Before the logs, recovery looks at the shard's checkpoint files (format/checkpoint.ts) and decides, by
// the table below, which one the table starts from. What the checkpoint path guarantees
// (checkpoint/checkpoint-writer.ts), and these cases rely on:
// - a checkpoint is written to a `.tmp` file, every byte of it made durable (fdatasync), and only then
//   renamed to its `.ckpt` name, the directory fsynced: a `.ckpt` file was whole and durable before it
//   could be seen under that name, so a crash never leaves one torn;
// - only after that are older checkpoints removed and the log segments wholly before its sequence retired:
//   so when a `.ckpt` exists, every batch after its sequence is still in the logs, starting in the segments
//   its header names (which are never retired by it);
// - a checkpoint is made only of durable data (batches up to its sequence, applied to the table).
//
// The facts, one per checkpoint file (or 'none' when the shard has no `.ckpt` file):
//   none          no checkpoint file made current
//   intact        the newest `.ckpt`: every checksum holds, and it names this shard and its own sequence
//   damaged       the newest `.ckpt`, and something in it does not hold
//   log_missing   the newest `.ckpt` is intact, but a log segment its header says the log goes on in is gone,
//                 or the log ends before the batch its header says was acknowledged before it was current
//   superseded    an older `.ckpt`, with a newer one present
//   unfinished    a `.tmp`: a checkpoint that was never made current

export const checkpointStates = ['none', 'intact', 'damaged', 'log_missing', 'superseded', 'unfinished'] as const
export type CheckpointState = (typeof checkpointStates)[number]

/**
 * replay   replay the logs from the first batch (there is no checkpoint);
 * load     load the checkpoint into the table, then replay the logs' batches after its sequence;
 * discard  remove the file once the shard is open (it holds nothing that is needed);
 * refuse   acknowledged data is damaged or missing: WAL_CORRUPT, or with recovery: 'truncate', load what
 *          holds of it, replay the logs after it, and say exactly what was lost (`repaired`).
 */
export type CheckpointDecision = 'replay' | 'load' | 'discard' | 'refuse'

export interface CheckpointCase {
  label: string
  checkpoint: CheckpointState
  decision: CheckpointDecision
  why: string
}

// prettier-ignore
export const checkpointCases: readonly CheckpointCase[] = [
  //  label                      checkpoint      decision    why
  { label: 'no_checkpoint',      checkpoint: 'none',        decision: 'replay',  why: 'the logs hold every batch from the first' },
  { label: 'checkpoint_intact',  checkpoint: 'intact',      decision: 'load',    why: 'the newest checkpoint holds: the logs hold every batch after it' },
  { label: 'checkpoint_damaged', checkpoint: 'damaged',     decision: 'refuse',  why: 'a checkpoint was whole and durable before it was made current: this is damage, and the batches it holds may be retired' },
  { label: 'checkpoint_log_missing', checkpoint: 'log_missing', decision: 'refuse', why: 'the segments after a checkpoint are never retired by it: acknowledged batches after it are gone' },
  { label: 'checkpoint_superseded', checkpoint: 'superseded', decision: 'discard', why: 'a newer checkpoint was made current, durably, before this one could be removed' },
  { label: 'checkpoint_unfinished', checkpoint: 'unfinished', decision: 'discard', why: 'never made current: a crash (or a failure) while it was written; the logs still hold what it would have' },
]

export function checkpointCase(state: CheckpointState): CheckpointCase {
  const found = checkpointCases.filter((candidate) => candidate.checkpoint === state)
  if (found.length !== 1) assert.fail(`checkpoint state ${state} matches ${found.length} cases`)
  return found[0]!
}
