import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  all,
  createPool,
  currentScope,
  DEFAULT_DEADLINE_HEADER,
  inspect,
  isDeadlineExceeded,
  scopedFetch,
  TaskGroup,
} from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { send } from './support/http.js'

// Structured concurrency: inside a fan-out task, tether's helpers called without a signal of their
// own bind to the group, not to the request, so a sibling's failure stops them. Measured against a
// downstream that never answers and a request budget far longer than the test: the request is
// answered soon after the failure, not at its deadline.

afterEach(() => assertNoLingering())

const REQUEST_BUDGET = 20_000
const FAIL_AFTER = 50
// Far below the request's budget and far above a failure plus the abort's propagation on a busy
// machine: the request ending anywhere near its deadline fails this by a wide margin.
const ANSWERED_WITHIN = 5_000

let never: http.Server
let neverUrl: string
let neverOpen = 0
let neverClosed = 0
let lastBudget: string | undefined

beforeAll(async () => {
  never = http.createServer((req) => {
    neverOpen++
    lastBudget = req.headers[DEFAULT_DEADLINE_HEADER] as string | undefined
    req.socket.once('close', () => neverClosed++)
  })
  await new Promise<void>((resolve) => never.listen(0, '127.0.0.1', resolve))
  neverUrl = `http://127.0.0.1:${(never.address() as AddressInfo).port}/never`
})

afterAll(async () => {
  never.closeAllConnections()
  await new Promise((resolve) => never.close(resolve))
})

const failSoon = async () => {
  await sleep(FAIL_AFTER)
  throw new Error('sibling failed')
}

/** The helpers a task may call without a signal: each waits forever unless the group stops it. */
const helpers: Record<string, () => Promise<unknown>> = {
  scopedFetch: () => scopedFetch(neverUrl),
  pool: () => {
    const pool = createPool({ concurrency: 1 })
    // The first call occupies the only slot until its signal (the group's) aborts; the second
    // waits in the queue, bound to the group as well.
    pool
      .run((signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))))
      .catch(() => undefined)
    return pool.run(() => sleep(REQUEST_BUDGET))
  },
  'nested all': () => all([(signal) => sleep(REQUEST_BUDGET, undefined, { signal })]),
  'TaskGroup.go': async () => {
    const inner = new TaskGroup()
    inner.go((signal) => sleep(REQUEST_BUDGET, undefined, { signal }))
    await inner.wait()
  },
}

async function express5(helper: () => Promise<unknown>): Promise<{ url: string; close(): Promise<void> }> {
  const app = express()
  app.use(tetherExpress({ timeout: REQUEST_BUDGET, logger: false }))
  app.get('/', async (_req, res) => {
    try {
      await all([helper, failSoon])
      res.send('unexpected')
    } catch (error) {
      res.status(500).send((error as Error).message)
    }
  })
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

async function fastify5(helper: () => Promise<unknown>): Promise<{ url: string; close(): Promise<void> }> {
  const app = Fastify()
  await app.register(tetherFastify, { timeout: REQUEST_BUDGET, logger: false })
  app.get('/', async (_request, reply) => {
    try {
      await all([helper, failSoon])
      return 'unexpected'
    } catch (error) {
      return reply.code(500).send((error as Error).message)
    }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/`,
    close: () => app.close(),
  }
}

describe.each([
  ['express', express5],
  ['fastify', fastify5],
])('%s: a fan-out task owns the helpers it calls', (_name, start) => {
  it.each(Object.keys(helpers))(
    'a %s call inside all() stops when a sibling fails, so the request is answered at the failure, not at its deadline',
    async (helper) => {
      const server = await start(helpers[helper] as () => Promise<unknown>)
      try {
        const began = Date.now()
        const response = await send(server.url)
        const took = Date.now() - began
        expect(response.status).toBe(500)
        expect(response.body).toBe('sibling failed')
        expect(took).toBeLessThan(ANSWERED_WITHIN)
      } finally {
        await server.close()
      }
    },
  )
})

describe('the group scope', () => {
  it('gives scopedFetch inside a task the group signal: the downstream call is cancelled and its socket closed', async () => {
    const openBefore = neverOpen
    const closedBefore = neverClosed
    const server = await express5(helpers.scopedFetch as () => Promise<unknown>)
    try {
      const response = await send(server.url)
      expect(response.body).toBe('sibling failed')
      // The downstream saw the call, and the call's connection was closed by the abort.
      expect(neverOpen).toBe(openBefore + 1)
      await expect.poll(() => neverClosed, { timeout: 5_000 }).toBe(closedBefore + 1)
    } finally {
      await server.close()
    }
  })

  it("keeps the request's deadline: a task's scopedFetch sends what is left of the request's budget", async () => {
    lastBudget = undefined
    const app = express()
    app.use(tetherExpress({ timeout: 1_000, status: 504, logger: false }))
    app.get('/', async (_req, res) => {
      try {
        await all([() => scopedFetch(neverUrl)])
        res.send('unexpected')
      } catch (error) {
        res.status(200).send(isDeadlineExceeded(error) ? 'deadline' : String(error))
      }
    })
    const server = app.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    try {
      const response = await send(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`)
      // Either the call's own deadline (capped by the budget) or tether's timer answers first.
      expect(response.status === 504 || response.body === 'deadline').toBe(true)
      const budget = Number(lastBudget)
      expect(budget).toBeGreaterThan(0)
      expect(budget).toBeLessThanOrEqual(1_000)
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('makes work a task started and left behind linger once the group is done, not while it is failing', async () => {
    const lingeringBefore = inspect().counters.lingering
    const app = express()
    app.use(tetherExpress({ timeout: REQUEST_BUDGET, logger: false }))
    let leftBehind: Promise<unknown> | undefined
    let stop: (() => void) | undefined
    app.get('/', async (_req, res) => {
      await all([
        async () => {
          const pool = createPool({ concurrency: 1 })
          // Not awaited, and ignoring its signal: it outlives the group.
          leftBehind = pool.run(() => new Promise<void>((resolve) => (stop = resolve)))
        },
      ])
      res.send(currentScope() === undefined ? 'no scope' : 'ok')
    })
    const server = app.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    try {
      const response = await send(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`)
      expect(response.body).toBe('ok')
      await expect.poll(() => inspect().lingering.length).toBe(1)
      expect(inspect().lingering[0]).toMatchObject({ kind: 'pool', tasks: 1 })
      expect(inspect().counters.lingering).toBe(lingeringBefore + 1)
    } finally {
      stop?.()
      await leftBehind
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
