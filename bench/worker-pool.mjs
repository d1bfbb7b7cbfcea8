// What a round trip to a worker thread costs: a small task (SHA-256 of 1 KB) inline, through
// createWorkerPool, and through piscina directly (tether's own layer on top of it). One thread,
// tasks awaited one after another, so what is timed is the round trip, not parallelism: its latency
// (wall clock) and its CPU (the process's, both threads). Contenders alternate within each round
// (A B, B A, ...); reported: the median over rounds of each one's figures per task and of the
// per-round ratios.
//
//   node bench/worker-pool.mjs [--rounds 15] [--json]
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { median } from './lib.mjs'
import { small } from './worker-task.mjs'

const require = createRequire(import.meta.url)
const { createScope, createWorkerPool } = require('@tether/core')
// piscina as tether depends on it, for the baseline of tether's own layer.
const Piscina = createRequire(require.resolve('@tether/core'))('piscina')
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '15' }, json: { type: 'boolean' } } })
const rounds = Number(values.rounds)
const ITERATIONS = 400
const filename = new URL('./worker-task.mjs', import.meta.url)
const text = 'x'.repeat(1024)

/** CPU time of the whole process (every thread), in ns. */
function cpuNs() {
  const { user, system } = process.cpuUsage()
  return (user + system) * 1_000
}

/**
 * Runs `ITERATIONS` sequential awaited calls of `fn`; returns the wall-clock time per call (the
 * latency a caller sees) and the process's CPU time per call (both threads' work), in ns.
 */
async function time(fn) {
  const cpu = cpuNs()
  const start = process.hrtime.bigint()
  for (let i = 0; i < ITERATIONS; i++) await fn()
  return {
    wall: Number(process.hrtime.bigint() - start) / ITERATIONS,
    cpu: (cpuNs() - cpu) / ITERATIONS,
  }
}

async function compare({ name, baseline, candidate }) {
  await time(baseline.fn)
  await time(candidate.fn)
  const samples = { baselineNs: [], candidateNs: [], ratio: [], baselineCpuNs: [], candidateCpuNs: [], cpuRatio: [] }
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? [baseline, candidate] : [candidate, baseline]
    const results = new Map()
    for (const contender of order) results.set(contender, await time(contender.fn))
    const b = results.get(baseline)
    const c = results.get(candidate)
    samples.baselineNs.push(b.wall)
    samples.candidateNs.push(c.wall)
    samples.ratio.push(c.wall / b.wall)
    samples.baselineCpuNs.push(b.cpu)
    samples.candidateCpuNs.push(c.cpu)
    samples.cpuRatio.push(c.cpu / b.cpu)
  }
  const medians = Object.fromEntries(Object.entries(samples).map(([key, list]) => [key, median(list)]))
  return { name, baseline: baseline.name, candidate: candidate.name, ...medians }
}

const workers = createWorkerPool({ filename, concurrency: 1 })
const piscina = new Piscina({ filename: filename.href, minThreads: 1, maxThreads: 1 })
// A request's scope, as a handler runs in: run() binds to it (its signal goes to the thread).
const scope = createScope({ timeout: 60_000 })

const inline = { name: 'inline', fn: async () => small(text) }
const pool = { name: 'createWorkerPool', fn: () => workers.run(text, { name: 'small' }) }
const results = [
  await compare({
    name: 'small task: inline vs a worker thread (createWorkerPool)',
    baseline: inline,
    candidate: pool,
  }),
  await compare({
    name: 'worker thread: piscina directly vs createWorkerPool',
    baseline: { name: 'piscina', fn: () => piscina.run(text, { name: 'small' }) },
    candidate: pool,
  }),
  await compare({
    name: 'worker thread in a request scope: piscina with its signal vs createWorkerPool',
    baseline: { name: 'piscina', fn: () => piscina.run(text, { name: 'small', signal: scope.signal }) },
    candidate: { name: 'createWorkerPool in scope', fn: () => scope.run(() => workers.run(text, { name: 'small' })) },
  }),
]
scope.cancel()
await Promise.all([workers.close(), piscina.destroy()])

if (values.json) {
  console.log(JSON.stringify({ node: process.version, rounds, iterations: ITERATIONS, results }))
} else {
  console.log(`node ${process.version}, ${rounds} interleaved rounds of ${ITERATIONS} tasks, medians (wall; CPU)`)
  const us = (ns) => `${(ns / 1000).toFixed(1)} µs`
  for (const r of results) {
    console.log(
      `${r.name}: ${r.candidate} ${us(r.candidateNs)}; ${us(r.candidateCpuNs)}, ${r.baseline} ${us(r.baselineNs)}; ${us(r.baselineCpuNs)}, ratio ${r.ratio.toFixed(2)}; ${r.cpuRatio.toFixed(2)}`,
    )
  }
}
