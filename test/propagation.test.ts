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
import { eventually, hangUpAfter, send } from './support/http.js'

// Nothing a test started through tether may outlive its request (goleak's VerifyNone, per test).
afterEach(() => assertNoLingering())

// Three tether services on loopback, A → B → C, each calling the next with scopedFetch; A and C
// are Express, B is Fastify, so the deadline crosses both adapters. C's work takes 5 s and
// listens to its signal. What each service saw is recorded with the time it saw it, on the one
// clock all three share.
interface Seen {
  /** When the request reached the service's first middleware or hook. */
  arrivedAt?: number
  deadline?: number
  abortedAt?: number
  reason?: string
  /** The budget this service sent to the next one, and when. */
  sentBudget?: number
  sentAt?: number
}

const MARGIN = 10

/** Calls the next service and passes its failure on, status included, as a real service would. */
async function callNext(url: string, seen: Seen): Promise<string> {
  // scopedFetch over a fetch that notes what was sent: the budget header, and when.
  const call = createScopedFetch({
    margin: MARGIN,
    fetch: (input, init) => {
      seen.sentAt = Date.now()
      seen.sentBudget = Number(new Headers(init?.headers).get('x-request-timeout-ms'))
      return fetch(input, init)
    },
  })
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
  seen.deadline = scope.deadline
  scope.signal.addEventListener('abort', () => {
    seen.abortedAt = Date.now()
    seen.reason = (scope.signal.reason as Error).message
  })
}

async function expressService(options: { timeout?: number }, next: string | undefined, seen: Seen) {
  const app = express()
  app.use((_req, _res, nextMiddleware) => {
    seen.arrivedAt = Date.now()
    nextMiddleware()
  })
  app.use(tetherExpress({ ...options, logger: false }))
  app.get('/', async (req, res) => {
    watch(req.scope, seen)
    if (next === undefined) await sleep(5_000, undefined, { signal: req.scope.signal })
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
  app.addHook('onRequest', async () => {
    seen.arrivedAt = Date.now()
  })
  await app.register(tetherFastify, { logger: false, grace: 0 })
  app.get('/', async (request) => {
    watch(request.scope, seen)
    return callNext(next, seen)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  closers.push(() => app.close())
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/`
}

describe('deadline propagation across services A → B → C', () => {
  // What is guaranteed, exactly: a budget is relative, so each hop sends what it has left minus
  // the margin, and the callee counts it from when the request reaches it. The callee's deadline
  // is therefore never later than the caller's plus whatever the call spent in transit beyond the
  // margin. On a busy machine transit can exceed any fixed margin (a loaded loop is late to read a
  // request); the bound holds whatever the machine does, and it is what is asserted.
  it('sends each hop no more than the caller had left minus the margin, so a deadline moves later only by transit past the margin', async () => {
    const a: Seen = {}
    const b: Seen = {}
    const c: Seen = {}
    const cUrl = await expressService({ timeout: 60_000 }, undefined, c)
    const bUrl = await fastifyService(cUrl, b)
    const aUrl = await expressService({ timeout: 300 }, bUrl, a)

    const response = await send(aUrl)
    // C's budget runs out first (it was given the least); its 504 comes back up.
    expect(response.status).toBe(504)
    await eventually(() => b.abortedAt !== undefined && c.abortedAt !== undefined, 5_000, 'B and C to be aborted')

    for (const [caller, callee] of [
      [a, b],
      [b, c],
    ] as const) {
      const leftWhenSent = (caller.deadline as number) - (caller.sentAt as number)
      // The budget sent: what was left, less the margin (one ms of rounding: remaining() is read a
      // moment after the fetch stub notes the time).
      expect(caller.sentBudget).toBeGreaterThan(0)
      expect(caller.sentBudget).toBeLessThanOrEqual(leftWhenSent - MARGIN + 1)
      // The callee's deadline: its arrival plus that budget, so at most the transit past the margin
      // after the caller's. Two millisecond clocks are read a moment apart on each side, each may
      // cross a millisecond: the budget (read after `sentAt`), and the callee's own arrival stamp
      // (taken by tether, after the test's `arrivedAt`): one ms of rounding each.
      const transit = (callee.arrivedAt as number) - (caller.sentAt as number)
      expect(callee.deadline as number).toBeLessThanOrEqual(
        (caller.deadline as number) + Math.max(0, transit - MARGIN) + 2,
      )
    }
    expect(c.reason).toBe('deadline exceeded')
    // Every service's work stopped once its own deadline passed, not at C's 60 s timeout.
    expect((c.abortedAt as number) - (a.deadline as number)).toBeLessThan(5_000)
    expect((b.abortedAt as number) - (a.deadline as number)).toBeLessThan(5_000)
  })

  it("aborts B's and C's work when A's client hangs up", async () => {
    const a: Seen = {}
    const b: Seen = {}
    const c: Seen = {}
    const cUrl = await expressService({}, undefined, c)
    const bUrl = await fastifyService(cUrl, b)
    const aUrl = await expressService({}, bUrl, a)

    await hangUpAfter(aUrl, 150)
    const gone = Date.now()
    await eventually(() => c.abortedAt !== undefined, 2_000, 'C to be aborted')
    expect(a.reason).toBe('client closed the connection')
    expect(b.reason).toBe('client closed the connection')
    expect(c.reason).toBe('client closed the connection')
    expect((c.abortedAt as number) - gone).toBeLessThan(500)
  })
})
