import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { scopedFetch } from '@tether/core'
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
// listens to its signal. What each service saw is recorded with the time it saw it.
interface Seen {
  deadline?: number
  abortedAt?: number
  reason?: string
}

/** Calls the next service and passes its failure on, status included, as a real service would. */
async function callNext(url: string): Promise<string> {
  const response = await scopedFetch(url)
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

async function expressService(options: { timeout?: number }, next: string | undefined, seen: Seen) {
  const app = express()
  app.use(tetherExpress({ ...options, logger: false }))
  app.get('/', async (req, res) => {
    seen.deadline = req.scope.deadline
    req.scope.signal.addEventListener('abort', () => {
      seen.abortedAt = Date.now()
      seen.reason = (req.scope.signal.reason as Error).message
    })
    if (next === undefined) await sleep(5_000, undefined, { signal: req.scope.signal })
    else await callNext(next)
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
  app.get('/', async (request) => {
    seen.deadline = request.scope.deadline
    request.scope.signal.addEventListener('abort', () => {
      seen.abortedAt = Date.now()
      seen.reason = (request.scope.signal.reason as Error).message
    })
    return callNext(next)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  closers.push(() => app.close())
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/`
}

describe('deadline propagation across services A → B → C', () => {
  it("keeps C's deadline no later than A's, and aborts B's and C's work when A's deadline passes", async () => {
    const a: Seen = {}
    const b: Seen = {}
    const c: Seen = {}
    const cUrl = await expressService({ timeout: 60_000 }, undefined, c)
    const bUrl = await fastifyService(cUrl, b)
    const aUrl = await expressService({ timeout: 300 }, bUrl, a)
    // Warm the chain once, as a running fleet is warm. A budget is relative: the callee counts it
    // from when the call arrives, so the call's transit time is kept back by scopedFetch's margin
    // (10 ms). The first fetch of a cold process takes 15-30 ms on the client side (cold code,
    // first connection); warm, a hop on loopback takes 1-3 ms.
    await send(aUrl)
    await eventually(() => c.abortedAt !== undefined, 2_000, 'the warm-up to end')
    for (const seen of [a, b, c]) delete seen.abortedAt

    const started = Date.now()
    const response = await send(aUrl)
    const took = Date.now() - started
    // C's budget runs out first (budgets only shrink on the way down); its 503 comes back up.
    expect(response.status).toBe(503)
    expect(took).toBeLessThan(300 + 500)

    await eventually(() => b.abortedAt !== undefined && c.abortedAt !== undefined, 2_000, 'B and C to be aborted')
    const aDeadline = a.deadline as number
    expect(b.deadline).toBeLessThanOrEqual(aDeadline)
    expect(c.deadline).toBeLessThanOrEqual(b.deadline as number)
    // Budgets only shrink on the way down, so C's own deadline passes first; all within a short
    // bound of A's (generous for CI).
    expect((c.abortedAt as number) - aDeadline).toBeLessThan(300)
    expect((b.abortedAt as number) - aDeadline).toBeLessThan(300)
    expect(c.reason).toBe('deadline exceeded')
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
