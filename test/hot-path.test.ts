import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// A guard on the request path, counted rather than timed (a shared CI machine cannot time):
// bench/hot-path.mjs runs each bare app and the same app with tether in one process, with the same
// keep-alive client, and counts what each request adds: listeners, async resources (promises,
// timers), AbortControllers and timer calls. The counts are exact and repeatable, so a change that
// adds per-request work to the hot path fails here, named, before any benchmark would notice it.
//
// The budget is what the request path costs today. Lower it when a change saves something; raise
// it only for a cost the contract requires, and say which in the change.
//
// What each unit of today's budget is:
// - listeners 1: the response's 'close' listener, which tells a hang-up from a finished response
//   (the contract's "client hangs up" and "response finished");
// - fan-out: all() adds one AbortController (the group's signal, handed to every task) and one
//   async resource (the promise that waits for its tasks) over Promise.all;
// - on Node 24 and later, one async resource each time a scope is entered (the request's, and the
//   group's for a fan-out): the AsyncResource through which runInScope() puts the caller's async
//   context back as it was, where AsyncLocalStorage.run() would build it again (about 100 ns a
//   request less; see runInScope in packages/core/src/primitives/create-scope.ts).
// The deadline timer costs nothing per request: requests of one delay share a list and its timer.
const entry = Number(process.versions.node.split('.')[0]) >= 24 ? 1 : 0
const BUDGET: Record<string, { listeners: number; async: number; controllers: number; timers: number }> = {
  express: { listeners: 1, async: entry, controllers: 0, timers: 0 },
  'express, hardenServer()': { listeners: 1, async: entry, controllers: 0, timers: 0 },
  'express fan-out: Promise.all vs all()': { listeners: 1, async: 1 + 2 * entry, controllers: 1, timers: 0 },
  fastify: { listeners: 1, async: entry, controllers: 0, timers: 0 },
  'fastify, hardenServer()': { listeners: 1, async: entry, controllers: 0, timers: 0 },
  'fastify fan-out: Promise.all vs all()': { listeners: 1, async: 1 + 2 * entry, controllers: 1, timers: 0 },
}

describe('the request path', () => {
  it('adds no listener, async resource, controller or timer per request beyond its budget', () => {
    const script = fileURLToPath(new URL('../bench/hot-path.mjs', import.meta.url))
    const output = execFileSync(process.execPath, [script, '--json'], { encoding: 'utf8', timeout: 120_000 })
    const measured = JSON.parse(output) as typeof BUDGET
    expect(Object.keys(measured)).toEqual(Object.keys(BUDGET))
    for (const [pair, budget] of Object.entries(BUDGET)) {
      for (const [what, allowed] of Object.entries(budget)) {
        const cost = measured[pair]?.[what as keyof typeof budget]
        expect(cost, `${pair}: ${what} per request`).toBeLessThanOrEqual(allowed)
      }
    }
  })
})

// Heap bytes each request allocates, tether minus bare: bench/in-process.mjs --bytes hands the same
// requests to each app in one process, with V8 on one thread, and reads how much its young
// generation grew. Counted, not timed: runs agree to within a dozen bytes on every line, on an idle
// machine or a busy one (the script serves through the second at which Node rebuilds its cached
// Date header before it counts, and warms each app up fully; see there for what moved the counts
// from run to run before). The budget is today's figure per Node line, the highest of three runs,
// and a request may exceed it by 64 bytes or 3%, whichever is more: an object or closure added per
// request fails here. A line not listed is held to the nearest listed one below it, with 25%
// (another V8 allocates differently).
const BYTES: Record<number, Record<string, number>> = {
  22: {
    express: 1608,
    fastify: 1029,
    'express fan-out: Promise.all vs all()': 2639,
    'fastify fan-out: Promise.all vs all()': 2433,
  },
  24: {
    express: 1290,
    fastify: 1328,
    'express fan-out: Promise.all vs all()': 2761,
    'fastify fan-out: Promise.all vs all()': 2801,
  },
  26: {
    express: 1536,
    fastify: 1333,
    'express fan-out: Promise.all vs all()': 3073,
    'fastify fan-out: Promise.all vs all()': 2873,
  },
}

describe('the heap the request path allocates', () => {
  // About 12 s on Node 22, whose Express is slow to serve the 1,000 warm-up batches each app gets.
  it('allocates no more per request than its budget on this Node line', () => {
    const major = Number(process.versions.node.split('.')[0])
    const lines = Object.keys(BYTES).map(Number)
    const line = lines.filter((listed) => listed <= major).at(-1) ?? (lines[0] as number)
    const allowed = (budget: number) =>
      line === major ? budget + Math.max(64, Math.round(budget * 0.03)) : Math.round(budget * 1.25)
    const script = fileURLToPath(new URL('../bench/in-process.mjs', import.meta.url))
    const output = execFileSync(process.execPath, ['--single-threaded', script, '--bytes', '--json'], {
      encoding: 'utf8',
      timeout: 120_000,
    })
    const { results } = JSON.parse(output) as { results: Record<string, { added: number }> }
    for (const [pair, budget] of Object.entries(BYTES[line] as Record<string, number>)) {
      const added = results[pair]?.added
      expect(
        added,
        `${pair}: bytes per request on Node ${major} (budget of Node ${line}: ${budget})`,
      ).toBeLessThanOrEqual(allowed(budget))
    }
  }, 120_000)
})
