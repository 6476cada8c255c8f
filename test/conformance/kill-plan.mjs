// What logical client `id` writes at `step`: shared by the writer child and the checker, so the checker
// knows the exact state every acknowledged prefix of steps must leave. Each client owns its keys and
// runs one step at a time, so at a crash at most one step per client is unacknowledged.
export const keysPerClient = 7

/** Effects of one step: value null is a delete. Several effects are one batch. */
export function plan(id, step) {
  const key = `c${id}-k${step % keysPerClient}`
  const roll = (id * 7919 + step * 104729) % 10
  if (roll < 6) return [{ key, value: `${id}:${step}:${'x'.repeat((step * 31) % 300)}` }]
  if (roll < 8) return [{ key, value: null }]
  return [
    { key, value: `${id}:${step}:b` },
    { key: `c${id}-k${(step + 3) % keysPerClient}`, value: null },
  ]
}

/** Each key's state after steps 0..lastStep of client `id` (undefined: never written). */
export function stateAfter(id, lastStep) {
  const state = new Map()
  for (let step = 0; step <= lastStep; step++) for (const { key, value } of plan(id, step)) state.set(key, value)
  return state
}
