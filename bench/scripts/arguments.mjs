// The bench scripts' command line: `--name value` pairs.

/** The value after `--name`, else `fallback` (undefined when none is given). */
export function argument(name, fallback) {
  const index = process.argv.indexOf(`--${name}`)
  return index >= 0 ? process.argv[index + 1] : fallback
}

/** The value after `--name`; a RangeError when it is missing. */
export function requiredArgument(name) {
  const value = argument(name, undefined)
  if (value === undefined) throw new RangeError(`--${name} is required`)
  return value
}
