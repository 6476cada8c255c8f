// Which shard owns a key. The function is part of the on-disk format (the directory manifest names it:
// "fnv1a32-mod"), so it must never change for an existing directory:
//
//   shard = FNV-1a-32(key bytes) mod shardCount
//   FNV-1a-32: hash = 0x811c9dc5; for each byte b: hash = (hash XOR b) * 0x01000193 mod 2^32
//
// A string key is hashed as its UTF-8 bytes, so "a" and Uint8Array [0x61] are the same key.
// Not collision-resistant, and it need not be: it only spreads keys over shards. The table inside a
// shard uses its own seeded hash.

export function shardOf(key: Uint8Array, shardCount: number): number {
  if (shardCount === 1) return 0
  let hash = 0x811c9dc5
  for (let index = 0; index < key.length; index++) {
    hash = Math.imul(hash ^ key[index]!, 0x01000193)
  }
  return (hash >>> 0) % shardCount
}
