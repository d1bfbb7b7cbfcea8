// The core primitives without any framework: a deadline scope, a fan-out that stops its siblings,
// and a pool that drops callers who left. Run with `node examples/core.mjs` after `pnpm build`.
import { setTimeout as sleep } from 'node:timers/promises'
import { all, createPool, createScope, inspect, isDeadlineExceeded } from '@tether/core'

/** A downstream call that honours its signal, as fetch and most drivers do. */
async function downstream(name, ms, signal) {
  await sleep(ms, undefined, { signal })
  return `${name} after ${ms} ms`
}

// 1. A deadline scope around a fan-out: the slow call is aborted at the deadline, and all()
//    rejects only once both calls have stopped.
const scope = createScope({ timeout: 100 })
const started = Date.now()
try {
  await scope.run(() =>
    all([(signal) => downstream('fast', 20, signal), (signal) => downstream('slow', 5_000, signal)]),
  )
} catch (error) {
  const elapsed = Date.now() - started
  console.log(
    `fan-out: ${isDeadlineExceeded(error) ? 'deadline exceeded' : error} after ${elapsed} ms, nothing left running`,
  )
}

// 2. The first failure aborts the siblings (errgroup semantics).
let siblingStopped = false
await all([
  async () => {
    await sleep(10)
    throw new Error('inventory service is down')
  },
  async (signal) => {
    await sleep(10_000, undefined, { signal }).catch(() => {
      siblingStopped = true
    })
  },
]).catch((error) => console.log(`first failure: ${error.message}; sibling stopped: ${siblingStopped}`))

// 3. A pool of two: a caller who leaves while queued is dropped at once and never runs.
const pool = createPool({ concurrency: 2, maxQueue: 10 })
const caller = new AbortController()
const ran = []
const jobs = [1, 2, 3, 4].map((n) =>
  pool
    .run(
      async () => {
        ran.push(n)
        await sleep(30)
      },
      n === 4 ? { signal: caller.signal } : undefined,
    )
    .then(
      () => `job ${n} done`,
      (error) => `job ${n} dropped (${error.message})`,
    ),
)
caller.abort(new Error('caller went away'))
console.log(`pool: ${(await Promise.all(jobs)).join(', ')}; ran ${ran.join(', ')}`)

console.log('counters:', JSON.stringify(inspect().counters))
