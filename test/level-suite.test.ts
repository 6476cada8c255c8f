// abstract-level's shared test suite against @ringkv/level's RingLevel (packages/level/test/suite.js, on
// tape, two shards per database): it proves that RingLevel behaves as Level's API says, every test of the
// suite, run once on the database and once more on a sublevel, plus the seek() rule the suite's own test
// leaves unchecked. It fails if any assertion fails, if tape does not finish, or if far fewer assertions
// ran than the suite has (tests silently left out).

import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect, test } from 'vitest'

const level = fileURLToPath(new URL('../packages/level/', import.meta.url))

/**
 * Assertions made when this test was written: abstract-level 3.1.1's 2,173, twice (database and sublevel),
 * and the 42 of suite.js's own seek() test.
 */
const assertionsObserved = 4388
/** A run may make somewhat fewer (a newer abstract-level may move tests around), never far fewer. */
const assertionsMin = Math.floor(assertionsObserved * 0.9)

test(
  'RingLevel passes every test of abstract-level/test, on the database and on a sublevel',
  () => {
    const run = spawnSync(process.execPath, ['test/suite.js'], {
      cwd: level,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      timeout: 14 * 60_000,
    })
    const output = run.stdout
    const count = (name: string): number | undefined => {
      const match = new RegExp(`^# ${name}\\s+(\\d+)$`, 'm').exec(output)
      return match === null ? undefined : Number(match[1])
    }
    const total = count('tests')
    const passed = count('pass')
    const failed = count('fail') ?? 0
    console.log(`abstract-level suite: ${total} assertions, ${passed} passed, ${failed} failed`)

    const failures = output.split('\n').filter((line) => line.startsWith('not ok'))
    expect(failures, `${failures.join('\n')}\n${run.stderr}`).toEqual([])
    expect(run.error, run.stderr).toBeUndefined()
    expect(run.status, run.stderr).toBe(0)
    expect(failed).toBe(0)
    expect(total).toBeGreaterThanOrEqual(assertionsMin)
    expect(passed).toBe(total)
    // The suite reruns itself on a sublevel: its first test ran twice.
    expect(output.match(/^# testCommon\.factory\(\) returns valid database$/gm)).toHaveLength(2)
  },
  15 * 60_000,
)
