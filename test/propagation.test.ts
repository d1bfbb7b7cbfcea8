import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createScopedFetch, type Scope } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { eventually, hangUpWhen, send } from './support/http.js'

// Nothing a test started through tether may outlive its request (goleak's VerifyNone, per test).
afterEach(() => assertNoLingering())

// Three tether services on loopback, A → B → C, each calling the next with scopedFetch; A and C
// are Express, B is Fastify, so the deadline crosses both adapters. C's work takes WORK_MS and
// listens to its signal. What each service saw is recorded with the time it saw it, on the one
// clock all three share.
interface Seen {
  /** When the request had passed the service's tether middleware or hook (tether stamped it before). */
  arrivedAt?: number
  /** When the handler began its work (and listened to its scope). */
  workingAt?: number
  deadline?: number
  abortedAt?: number
  reason?: string
  /** When the handler called the next service (scopedFetch reads the budget after this). */
  calledAt?: number
  /** The budget this service sent to the next one. */
  sentBudget?: number
}

const MARGIN = 10
/** How long C's work takes when nothing stops it. */
const WORK_MS = 5_000

/** Calls the next service and passes its failure on, status included, as a real service would. */
async function callNext(url: string, seen: Seen): Promise<string> {
  // scopedFetch over a fetch that notes the budget header it was given.
  const call = createScopedFetch({
    margin: MARGIN,
    fetch: (input, init) => {
      seen.sentBudget = Number(new Headers(init?.headers).get('x-request-timeout-ms'))
      return fetch(input, init)
    },
  })
  seen.calledAt = Date.now()
  const response = await call(url)
  const body = await response.text()
  if (!response.ok)
    throw Object.assign(new Error(`downstream answered ${response.status}`), {
      statusCode: response.status,
      status: response.status,
    })
  return body
}

let closers: Array<() => Promise<unknown>> = []
afterEach(async () => {
  await Promise.all(closers.map((close) => close()))
  closers = []
})

function watch(scope: Scope, seen: Seen): void {
  seen.workingAt = Date.now()
  seen.deadline = scope.deadline
  scope.signal.addEventListener('abort', () => {
    seen.abortedAt = Date.now()
    seen.reason = (scope.signal.reason as Error).message
  })
}

async function expressService(options: { timeout?: number }, next: string | undefined, seen: Seen) {
  const app = express()
  app.use(tetherExpress({ ...options, logger: false }))
  app.use((_req, _res, nextMiddleware) => {
    seen.arrivedAt = Date.now()
    nextMiddleware()
  })
  app.get('/', async (req, res) => {
    watch(req.scope, seen)
    if (next === undefined) await sleep(WORK_MS, undefined, { signal: req.scope.signal })
    else await callNext(next, seen)
    res.json({ ok: true })
  })
  const server = http.createServer(app)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  closers.push(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
}

async function fastifyService(next: string, seen: Seen) {
  const app: FastifyInstance = Fastify()
  await app.register(tetherFastify, { logger: false, grace: 0 })
  // Added after tether's: hooks run in the order they were added.
  app.addHook('onRequest', async () => {
    seen.arrivedAt = Date.now()
  })
  app.get('/', async (request) => {
    watch(request.scope, seen)
    return callNext(next, seen)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  closers.push(() => app.close())
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/`
}

/**
 * Starts C, B and A, and warms the path between them: the first fetch of a process loads undici,
 * and on a busy machine that alone can take longer than a short budget.
 */
async function services(a: Seen, aOptions: { timeout?: number }, b: Seen, c: Seen, cOptions: { timeout?: number }) {
  const cUrl = await expressService(cOptions, undefined, c)
  const bUrl = await fastifyService(cUrl, b)
  const aUrl = await expressService(aOptions, bUrl, a)
  await Promise.all(
    [aUrl, bUrl, cUrl].map((url) => fetch(new URL('/warm-up', url)).then((response) => response.text())),
  )
  return aUrl
}

describe('deadline propagation across services A → B → C', () => {
  // What is guaranteed, exactly: a budget is relative, so each hop sends what it has left minus
  // the margin when it makes the call, and the callee counts it from when the request reaches it.
  // The callee's deadline is therefore never later than the caller's plus whatever the call spent
  // in transit beyond the margin. On a busy machine transit can exceed any fixed margin (a loaded
  // loop is late to read a request); the bound holds whatever the machine does, and it is what is
  // asserted. Both ends are read so that no rounding slack is needed: the call's start before
  // scopedFetch reads the budget, and the callee's arrival after tether has stamped it.
  it('sends each hop no more than the caller had left minus the margin, so a deadline moves later only by transit past the margin', async () => {
    const a: Seen = {}
    const b: Seen = {}
    const c: Seen = {}
    // A's budget must outlast the two calls on a busy machine, so that C is reached at all.
    const aUrl = await services(a, { timeout: 1_000 }, b, c, { timeout: 60_000 })

    const response = await send(aUrl)
    // C's budget runs out first (it was given the least); its 504 comes back up.
    expect(response.status).toBe(504)
    await eventually(() => b.abortedAt !== undefined && c.abortedAt !== undefined, WORK_MS, 'B and C to be aborted')

    for (const [caller, callee] of [
      [a, b],
      [b, c],
    ] as const) {
      const leftWhenCalled = (caller.deadline as number) - (caller.calledAt as number)
      expect(caller.sentBudget).toBeGreaterThan(0)
      expect(caller.sentBudget).toBeLessThanOrEqual(leftWhenCalled - MARGIN)
      const transit = (callee.arrivedAt as number) - (caller.calledAt as number)
      expect(callee.deadline as number).toBeLessThanOrEqual((caller.deadline as number) + Math.max(0, transit - MARGIN))
    }
    expect(c.reason).toBe('deadline exceeded')
    // Every service's work stopped once its own deadline passed, not when C's work would have ended.
    expect((c.abortedAt as number) - (a.deadline as number)).toBeLessThan(WORK_MS)
    expect((b.abortedAt as number) - (a.deadline as number)).toBeLessThan(WORK_MS)
  })

  it("aborts B's and C's work when A's client hangs up", async () => {
    const a: Seen = {}
    const b: Seen = {}
    const c: Seen = {}
    const aUrl = await services(a, {}, b, c, {})

    // Hang up once the request has reached C's work, however long the machine took to get there.
    await hangUpWhen(aUrl, () => c.workingAt !== undefined, 'C to start its work')
    const gone = Date.now()
    await eventually(() => c.abortedAt !== undefined, WORK_MS, 'C to be aborted')
    expect(a.reason).toBe('client closed the connection')
    expect(b.reason).toBe('client closed the connection')
    expect(c.reason).toBe('client closed the connection')
    // Nothing in the cascade waits for a timer, so it takes what the machine takes to pass two
    // hang-ups along; the bound only shows that C's work stopped early, long before it would
    // have finished (which would also have ended it as 'response finished', not as asserted above).
    expect((c.abortedAt as number) - gone).toBeLessThan(WORK_MS / 2)
  })
})
