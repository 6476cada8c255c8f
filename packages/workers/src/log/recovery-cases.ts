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
// - segments are zero-filled before they are written, and a crash tears a write at sector granularity
//   (each 512-byte sector old or new): a torn intent batch shows whole zero sectors (or ends past the end of
//   the file); a completion record is 64 bytes, 64-byte aligned, inside one sector, so it is never torn.
//
// The facts, for one place in the logs. Recovery walks the completion records in order; for each it looks
// at the intent batch the record points at. Past the last record, it looks at what the intent log holds
// after the last complete batch ("the tail").
//
//   completion  the completion record at this place:
//     valid              decodes, checksum holds, the next sequence
//     damaged            not zero and fails its checksum, magic or status
//     out_of_sequence    valid, but not the sequence that comes next
//     after_empty_slot   a non-zero record after a zero (never-written) slot
//     none               no record: the tail, after the last record
//   intent      the intent bytes there:
//     intact             the batch the record names, every checksum holds (header, body, records, record's)
//     torn               as a crash leaves a write: past the end of its file (or its file missing), or a
//                        whole zero sector inside it
//     damaged            does not hold, and no zero sector: not what a crash does
//     misplaced          not where the previous batch ended (nor at 0 of a later segment)
//     clean              (tail) only zeros after the last complete batch
//     in_flight          (tail) non-zero bytes after the last complete batch, but no intact batch beyond the
//                        next sequence: torn bytes, or the next batch intact without its completion record
//     beyond             (tail) an intact batch with a sequence past the next one
//     unknown            not looked at: a record that does not hold names no batch to look at
//   last        the record is the last "written" record and no close record follows it (so its batch may
//               still have been in flight at the crash); 'any' where it does not matter
//
// The cases are the table `recoveryCases` below: one row each.
//
// The decisions:
//   apply   hand the batch to the table and go on;
//   drop    the batch (or the tail) was never acknowledged: cut it from both logs, report it in `tailReason`;
//   end     nothing more to read;
//   refuse  acknowledged data is damaged: `open` fails with EngineError('WAL_CORRUPT') naming the shard, the
//           file, the batch sequence and the byte range; with recovery: 'truncate', recovery instead keeps
//           every batch before the damage, drops the rest from both logs, and says exactly what (`repaired`).
//
// The blind spot of parallel writes: if the disk LOSES or MISDIRECTS the intent write of the very last
// batch after acknowledging it, the intent log shows zeros there, exactly as after a crash before that
// write reached the disk (torn_last). Recovery drops that batch and says so in `tailReason`. Every other
// loss or damage of acknowledged data is refused. Writing the logs one after the other would close this
// gap at the cost of a second fdatasync per batch; ringkv chose latency here, deliberately.

import assert from 'node:assert/strict'

export const completionStates = ['valid', 'damaged', 'out_of_sequence', 'after_empty_slot', 'none'] as const
export const intentStates = ['intact', 'torn', 'damaged', 'misplaced', 'clean', 'in_flight', 'beyond', 'unknown'] as const
export type CompletionState = (typeof completionStates)[number]
export type IntentState = (typeof intentStates)[number]

export interface RecoveryFacts {
  completion: CompletionState
  intent: IntentState
  last: boolean
}

export type RecoveryDecision = 'apply' | 'drop' | 'end' | 'refuse'

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
  row('torn_last',                   ['valid'],             ['torn'],               true,   'drop',   "the crash came between the two logs' writes, so it was never acknowledged"),
  row('damaged_last',                ['valid'],             ['damaged'],            true,   'refuse', 'a crash cannot damage a batch without a zero sector: damage to a batch that may be acknowledged'),
  row('broken_before_last',          ['valid'],             ['torn', 'damaged'],    false,  'refuse', 'a later batch (or the close) was written only after this one was acknowledged'),
  row('misplaced',                   ['valid'],             ['misplaced'],          'any',  'refuse', 'the write path never leaves a gap between batches: records or batches were lost or moved'),
  row('completion_damaged',          ['damaged'],           ['unknown'],            'any',  'refuse', 'a completion record is never torn: this is damage'),
  row('completion_out_of_sequence',  ['out_of_sequence'],   ['unknown'],            'any',  'refuse', 'a completion record was lost or misplaced'),
  row('completion_after_empty_slot', ['after_empty_slot'],  ['unknown'],            'any',  'refuse', 'completion records are written in order: one in between was lost'),
  row('tail_clean',                  ['none'],              ['clean'],              'any',  'end',    'nothing was in flight (or the shard is new)'),
  row('tail_in_flight',              ['none'],              ['in_flight'],          'any',  'drop',   'the in-flight batch: its completion record never became durable, so it was never acknowledged'),
  row('tail_beyond',                 ['none'],              ['beyond'],             'any',  'refuse', 'completion records of acknowledged batches are gone'),
]

function matches<State>(pattern: readonly State[] | 'any', state: State): boolean {
  return pattern === 'any' || pattern.includes(state)
}

/** The intent states recovery can find with each completion state; any other pair cannot occur. */
const intentStatesWith: Record<CompletionState, readonly IntentState[]> = {
  valid: ['intact', 'torn', 'damaged', 'misplaced'],
  damaged: ['unknown'],
  out_of_sequence: ['unknown'],
  after_empty_slot: ['unknown'],
  none: ['clean', 'in_flight', 'beyond'],
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
