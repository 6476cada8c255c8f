// The segment files of a shard's two logs: their names, and which log each belongs to. Owns names; never
// touches a file.
//
// A shard keeps two logs, each a sequence of segment files in the shard's directory:
//   intent-00000001.wal, intent-00000002.wal, …      batches of records (record.ts), the data itself
//   completion-00000001.wal, …                        one 64-byte completion record per batch (completion.ts)

/** Which of a shard's two logs: the name of the idea everywhere (segment files, storage, the rings). */
export type LogKind = 'intent' | 'completion'
/** What a shard's file is for: one of the logs' segments, or a checkpoint (format/checkpoint.ts). */
export type FileKind = LogKind | 'checkpoint'

const segmentPattern = /^(intent|completion)-(\d{8})\.wal$/

export function segmentName(kind: LogKind, segment: number): string {
  if (!Number.isInteger(segment) || segment < 1 || segment > 99_999_999) throw new RangeError(`bad segment number ${segment}`)
  return `${kind}-${String(segment).padStart(8, '0')}.wal`
}

/** The segment numbers of one log among a directory's file names, ascending. */
export function segmentNumbers(names: readonly string[], kind: LogKind): number[] {
  const numbers: number[] = []
  for (const name of names) {
    const match = segmentPattern.exec(name)
    if (match !== null && match[1] === kind) numbers.push(Number(match[2]))
  }
  return numbers.sort((a, b) => a - b)
}
