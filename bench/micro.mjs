// Micro-benchmarks of the core primitives against their plain counterparts, in one process:
// contenders alternate within each round (A B, B A, ...), and what is reported is the median over
// rounds of the per-round ratio, which cancels most of the drift of a shared, noisy machine.
//
//   node bench/micro.mjs [--rounds 15] [--json]
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { alternate } from './lib.mjs'

const require = createRequire(import.meta.url)
const { all, createPool, createScope } = require('@tether/core')
const pLimit = (await import('p-limit')).default
// p-queue 10 supports Node 22+; on older Nodes its row is left out.
const PQueue = await import('p-queue').then(
  (module) => module.default,
  () => undefined,
)
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '15' }, json: { type: 'boolean' } } })
const rounds = Number(values.rounds)

/** Times `iterations` sequential awaited calls of `fn`; returns ns per call. */
async function time(fn, iterations) {
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) await fn()
  return Number(process.hrtime.bigint() - start) / iterations
}

/**
 * Runs `baseline` and `candidate` alternately for `rounds` rounds after a warm-up and returns the
 * median ns/op of each and the median of per-round ratios (candidate ÷ baseline).
 */
async function compare({ name, baseline, candidate, iterations, target }) {
  await time(baseline.fn, iterations)
  await time(candidate.fn, iterations)
  const medians = await alternate(rounds, baseline, candidate, (contender) => time(contender.fn, iterations))
  return {
    name,
    baseline: baseline.name,
    candidate: candidate.name,
    ...medians,
    target,
  }
}

const tenImmediate = Array.from({ length: 10 }, (_, i) => async () => i)
const scope = createScope()
const thousand = Array.from({ length: 1000 }, (_, i) => i)
const immediateTask = async () => 1
const plainSignal = new AbortController().signal
// The pool side of the comparisons with p-limit and p-queue: 1,000 immediate tasks, 8 at a time.
const poolOfEight = {
  name: 'createPool',
  fn: () => {
    const pool = createPool({ concurrency: 8 })
    return Promise.all(thousand.map(() => pool.run(immediateTask)))
  },
}

const results = [
  await compare({
    name: 'all() over 10 immediate tasks vs Promise.all',
    baseline: { name: 'Promise.all', fn: () => Promise.all(tenImmediate.map((task) => task())) },
    candidate: { name: 'all()', fn: () => all(tenImmediate) },
    iterations: 20_000,
    target: { max: 2 },
  }),
  // Both contenders run inside the scope, so the ratio shows what tracking adds, not the cost of
  // entering AsyncLocalStorage (which a request pays once, not per fan-out).
  await scope.run(() =>
    compare({
      name: 'all() inside a scope (tracking on) vs Promise.all',
      baseline: { name: 'Promise.all', fn: () => Promise.all(tenImmediate.map((task) => task())) },
      candidate: { name: 'all() in scope', fn: () => all(tenImmediate) },
      iterations: 20_000,
      target: undefined, // informational: the target applies to all() on its own
    }),
  ),
  ...(PQueue === undefined
    ? []
    : [
        await compare({
          name: 'pool vs p-queue, concurrency 8, 1,000 immediate tasks',
          baseline: {
            name: 'p-queue',
            fn: () => {
              const queue = new PQueue({ concurrency: 8 })
              return Promise.all(thousand.map(() => queue.add(immediateTask)))
            },
          },
          candidate: poolOfEight,
          iterations: 200,
          target: { max: 1 },
        }),
      ]),
  // What tracking costs: the same pool runs, registered with a scope or not (a plain signal).
  await compare({
    name: 'tracking: pool tasks registered with a scope vs not',
    baseline: {
      name: 'untracked',
      fn: () => {
        const pool = createPool({ concurrency: Number.POSITIVE_INFINITY })
        const signal = plainSignal
        return Promise.all(thousand.map(() => pool.run(immediateTask, { signal })))
      },
    },
    candidate: {
      name: 'tracked',
      fn: () => {
        const pool = createPool({ concurrency: Number.POSITIVE_INFINITY })
        return scope.run(() => Promise.all(thousand.map(() => pool.run(immediateTask))))
      },
    },
    iterations: 200,
    target: undefined,
  }),
  await compare({
    name: 'pool vs p-limit, concurrency 8, 1,000 immediate tasks',
    baseline: {
      name: 'p-limit',
      fn: () => {
        const limit = pLimit(8)
        return Promise.all(thousand.map(() => limit(immediateTask)))
      },
    },
    candidate: poolOfEight,
    iterations: 200,
    target: { max: 1 },
  }),
]

if (values.json) {
  console.log(JSON.stringify({ node: process.version, rounds, results }))
} else {
  console.log(`node ${process.version}, ${rounds} interleaved rounds, medians`)
  for (const r of results) {
    const verdict =
      r.target === undefined ? '' : ` (target ≤ ${r.target.max}: ${r.ratio <= r.target.max ? 'meets' : 'MISSES'})`
    console.log(
      `${r.name}: ${r.candidate} ${(r.candidateNs / 1000).toFixed(2)} µs, ${r.baseline} ${(r.baselineNs / 1000).toFixed(2)} µs, ratio ${r.ratio.toFixed(2)}${verdict}`,
    )
  }
}
