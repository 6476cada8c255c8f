// @ringkv/level: ringkv as an abstract-level database. `new RingLevel(location, options?)` works wherever
// Level's API is expected; the options are abstract-level's plus the engine's open() options (shards, …).

export { RingLevel, type RingLevelOptions } from './level.js'
export { RingLevelError } from './errors.js'
