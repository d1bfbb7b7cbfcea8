import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { createScopedFetch, inspect, type Scope } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { type TetherExpressOptions, tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { eventually, loopbackServers, send } from './support/http.js'

// One status for a missed deadline, whoever notices it: tether's own timer answers with `status`,
// and a DeadlineExceededError that escapes a handler (a child scope's deadline, scopedFetch with
// no budget left, the outbound pool's budget-capped timeouts) carries the same status, which
// Express and Fastify answer with. Work refused before it started keeps 503 with Retry-After.
// Real servers on 127.0.0.1, Node's http client.

afterEach(() => assertNoLingering())

const servers = loopbackServers()
let downstream: string
const closers: Array<() => Promise<unknown>> = []

beforeEach(async () => {
  // Never answers: only the caller giving up ends a call to it.
  downstream = await servers.listen(http.createServer(() => undefined))
})

afterEach(async () => {
  for (const close of closers.splice(0)) await close()
  await servers.closeAll()
})

/** What each route does; every route runs inside the request's scope. */
function routes(calls: ReturnType<typeof createScopedFetch>, greedy: ReturnType<typeof createScopedFetch>) {
  return {
    // The request's own timer: nothing escapes, tether answers.
    '/hang': () => new Promise(() => undefined),
    // A child scope's deadline, long before the request's: its DeadlineExceededError escapes.
    '/child': (scope: Scope) => scope.child({ timeout: 50 }).run(() => calls(`${downstream}/`)),
    // No budget left for the call once the margin is kept back: scopedFetch throws at once.
    '/no-budget': () => greedy(`${downstream}/`),
  } as const
}

type Start = (options: TetherExpressOptions) => Promise<string>

const startExpress: Start = async (options) => {
  const calls = createScopedFetch()
  const greedy = createScopedFetch({ margin: 60_000 })
  closers.push(
    () => calls.close(),
    () => greedy.close(),
  )
  const app = express()
  app.use(tetherExpress({ logger: false, ...options }))
  for (const [path, route] of Object.entries(routes(calls, greedy))) {
    app.get(path, async (req) => {
      await route(req.scope)
    })
  }
  return servers.listen(http.createServer(app))
}

const startFastify: Start = async (options) => {
  const calls = createScopedFetch()
  const greedy = createScopedFetch({ margin: 60_000 })
  closers.push(
    () => calls.close(),
    () => greedy.close(),
  )
  const app = Fastify()
  await app.register(tetherFastify, { logger: false, ...options })
  for (const [path, route] of Object.entries(routes(calls, greedy))) {
    app.get(path, async (request) => {
      await route(request.scope)
      return 'unreachable'
    })
  }
  await app.listen({ port: 0, host: '127.0.0.1' })
  closers.push(() => app.close())
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

describe.each([
  ['express', startExpress],
  ['fastify', startFastify],
] as const)('%s: a missed deadline gets one status, whoever notices it', (_name, start) => {
  it("tether's own answer at the request's deadline is 504 without Retry-After by default", async () => {
    const url = await start({ timeout: 100 })
    const before = inspect().counters.deadlineExceeded
    const response = await send(`${url}/hang`, { headers: { connection: 'close' } })
    expect(response.status).toBe(504)
    expect(JSON.parse(response.body)).toMatchObject({ statusCode: 504, code: 'TETHER_DEADLINE_EXCEEDED' })
    expect(response.headers['retry-after']).toBeUndefined()
    expect(inspect().counters.deadlineExceeded).toBe(before + 1)
  })

  it.each(['/child', '/no-budget'])(
    'a DeadlineExceededError escaping %s is answered 504 without Retry-After by default',
    async (path) => {
      const url = await start({ timeout: 5_000 })
      const started = Date.now()
      const response = await send(`${url}${path}`, { headers: { connection: 'close' } })
      expect(response.status).toBe(504)
      expect(response.headers['retry-after']).toBeUndefined()
      // Long before the request's own deadline (5 s): the error is what was answered, not the
      // request's timer (the bound is generous for a busy machine).
      expect(Date.now() - started).toBeLessThan(4_000)
    },
  )

  it.each([
    ['/child', 503],
    ['/no-budget', 503],
    ['/child', 500],
    ['/no-budget', 500],
  ])(
    'a DeadlineExceededError escaping %s is answered with a configured status (%i), as tether answers',
    async (path, status) => {
      const url = await start({ timeout: 5_000, status })
      const response = await send(`${url}${path}`, { headers: { connection: 'close' } })
      expect(response.status).toBe(status)
      // A deadline's answer, whatever its status: Retry-After is for work that never started.
      expect(response.headers['retry-after']).toBeUndefined()
      await eventually(() => inspect().inflight.length === 0, 2_000, 'nothing in flight')
    },
  )
})

describe('shedding still answers 503 with Retry-After', () => {
  it("an outbound call refused because its origin's queue is full: Retry-After follows `retryAfter`", async () => {
    // One socket and no queue: a second concurrent call to the same origin is shed at once.
    const calls = createScopedFetch({ connections: 1, maxQueue: 0, retryAfter: 7 })
    closers.push(() => calls.close())
    const app = express()
    app.use(tetherExpress({ timeout: 5_000, logger: false }))
    app.get('/', async (req) => {
      // The first call holds the one socket (the downstream never answers) until it is cancelled.
      const holder = req.scope.child()
      const first = holder.run(() => calls(`${downstream}/`)).catch(() => undefined)
      try {
        await calls(`${downstream}/`)
      } finally {
        holder.cancel()
        await first
      }
    })
    const url = await servers.listen(http.createServer(app))
    const shedBefore = inspect().counters.outboundShed
    const response = await send(`${url}/`, { headers: { connection: 'close' } })
    expect(response.status).toBe(503)
    expect(response.headers['retry-after']).toBe('7')
    expect(inspect().counters.outboundShed).toBe(shedBefore + 1)
  })

  it('an outbound call shed without `retryAfter` says 1 second, as the pool does', async () => {
    const calls = createScopedFetch({ connections: 1, maxQueue: 0 })
    closers.push(() => calls.close())
    const holder = new AbortController()
    const first = calls(`${downstream}/`, { signal: holder.signal }).catch(() => undefined)
    const error = await calls(`${downstream}/`).catch((caught: unknown) => caught)
    holder.abort()
    await first
    expect(error).toMatchObject({ code: 'TETHER_POOL_OVERLOADED', statusCode: 503, headers: { 'retry-after': '1' } })
  })
})
