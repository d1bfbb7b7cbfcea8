// The worker file of bench/worker-pool.mjs: a small synchronous task, the kind that is cheap
// enough inline that a round trip to a thread is what a benchmark of it measures.
import { createHash } from 'node:crypto'

/** SHA-256 of a short text (a 1 KB string in the benchmark): a few microseconds inline. */
export function small(text) {
  return createHash('sha256').update(text).digest('hex')
}
