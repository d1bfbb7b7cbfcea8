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
//   async resource (the promise that waits for its tasks) over Promise.all.
// The deadline timer costs nothing per request: requests of one delay share a list and its timer.
const BUDGET: Record<string, { listeners: number; async: number; controllers: number; timers: number }> = {
  express: { listeners: 1, async: 0, controllers: 0, timers: 0 },
  'express, hardenServer()': { listeners: 1, async: 0, controllers: 0, timers: 0 },
  'express fan-out: Promise.all vs all()': { listeners: 1, async: 1, controllers: 1, timers: 0 },
  fastify: { listeners: 1, async: 0, controllers: 0, timers: 0 },
  'fastify, hardenServer()': { listeners: 1, async: 0, controllers: 0, timers: 0 },
  'fastify fan-out: Promise.all vs all()': { listeners: 1, async: 1, controllers: 1, timers: 0 },
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
