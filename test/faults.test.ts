import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable, Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { all, createPool, hardenServer, inspect, shutdown } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { timeout as routeTimeout, tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { connect, eventually } from './support/http.js'

// Reliability under load, faults and bad input, against real servers on 127.0.0.1. Bounded: a few
// thousand requests per adapter, in well under a minute. What is checked is what must never
// happen (a crash, an unhandled rejection, a headers-sent error, a response that is neither the
// handler's nor the timeout's, anything left in flight or lingering), not timing precision.

afterEach(() => assertNoLingering())

// The /hang routes announce each request they receive (by its x-call header), so that a client
// hangs up once its request has reached the handler: a fixed delay measured the machine's speed
// instead (on two busy cores, most 10 ms hang-ups came before the request was even read).
const arrivals = new EventEmitter()
arrivals.setMaxListeners(0)

const crashes: unknown[] = []
const onCrash = (error: unknown) => crashes.push(error)
beforeAll(() => {
  process.on('uncaughtException', onCrash)
  process.on('unhandledRejection', onCrash)
})
afterAll(() => {
  process.off('uncaughtException', onCrash)
  process.off('unhandledRejection', onCrash)
})

const DEADLINE = 60
// The server-wide deadline of the mixed-load run. Only /slow and /late are meant to miss a deadline,
// and they carry DEADLINE as a route-level timeout; the other routes get a budget no busy machine
// comes near, so whether they finish in time is never a race against the scheduler.
const GENEROUS = 20_000
const ALREADY_SENT = /ERR_HTTP_HEADERS_SENT|FST_ERR_REP_ALREADY_SENT/

interface Service {
  url: string
  server: http.Server
  /** Error codes and log lines the server saw: headers-sent errors must never be among them. */
  problems: string[]
  close(): Promise<unknown>
}

/**
 * A handler that answers after its deadline, whatever it is told. It waits for the deadline itself
 * rather than sleeping past it: Node bases a timer on the event loop's cached time, which on a busy
 * loop is tens of milliseconds stale, so a `sleep(DEADLINE + 40)` can end before the deadline.
 */
async function writeLate(signal: AbortSignal): Promise<void> {
  if (!signal.aborted) await once(signal, 'abort')
  await sleep(5)
}

/** The mixed-load routes, identical in both frameworks. */
async function startExpress(timeout = DEADLINE): Promise<Service> {
  const problems: string[] = []
  const app = express()
  app.use(tetherExpress({ timeout, logger: false }))
  app.get('/fast', (_req, res) => {
    res.json({ ok: true })
  })
  app.get('/slow', routeTimeout(DEADLINE), async (req, res) => {
    await all([(signal) => sleep(5_000, undefined, { signal }), (signal) => sleep(5_000, undefined, { signal })])
    res.json({ unreachable: req.url })
  })
  app.get('/late', routeTimeout(DEADLINE), async (req, res) => {
    await writeLate(req.scope.signal)
    res.json({ late: true })
  })
  app.get('/throws', async () => {
    throw new Error('handler failed')
  })
  app.get('/hang', async (req) => {
    arrivals.emit(String(req.headers['x-call']))
    await sleep(5_000, undefined, { signal: req.scope.signal }).catch(() => undefined)
  })
  app.post('/echo', express.json(), (req, res) => {
    res.json(req.body)
  })
  app.get('/stream', async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    for (let i = 0; i < 3; i++) {
      res.write(`chunk ${i}\n`)
      await sleep(3)
    }
    res.end('end\n')
  })
  app.use(
    (
      error: Error & { code?: string; status?: number },
      _req: express.Request,
      res: express.Response,
      next: express.NextFunction,
    ) => {
      if (error.code !== undefined) problems.push(error.code)
      if (res.headersSent) return next(error)
      res.status(error.status ?? 500).json({ error: error.message })
    },
  )
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    problems,
    close: () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}

async function startFastify(timeout = DEADLINE): Promise<Service> {
  const problems: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      const line = String(chunk)
      if (ALREADY_SENT.test(line)) problems.push(line)
      callback()
    },
  })
  const app = Fastify({ logger: { level: 'warn', stream } })
  await app.register(tetherFastify, { timeout, logger: false, grace: 0 })
  const routeDeadline = { config: { tether: { timeout: DEADLINE } } }
  app.get('/fast', async () => ({ ok: true }))
  app.get('/slow', routeDeadline, async () => {
    await all([(signal) => sleep(5_000, undefined, { signal }), (signal) => sleep(5_000, undefined, { signal })])
    return { unreachable: true }
  })
  app.get('/late', routeDeadline, async (request) => {
    await writeLate(request.scope.signal)
    return { late: true }
  })
  app.get('/throws', async () => {
    throw new Error('handler failed')
  })
  app.get('/hang', async (request) => {
    arrivals.emit(String(request.headers['x-call']))
    await sleep(5_000, undefined, { signal: request.scope.signal }).catch(() => undefined)
  })
  app.post('/echo', async (request) => request.body)
  app.get('/stream', async (_request, reply) => {
    const body = new Readable({ read() {} })
    ;(async () => {
      for (let i = 0; i < 3; i++) {
        body.push(`chunk ${i}\n`)
        await sleep(3)
      }
      body.push('end\n')
      body.push(null)
    })()
    return reply.type('text/plain').send(body)
  })
  app.setErrorHandler((error: Error & { code?: string; statusCode?: number }, _request, reply) => {
    if (error.code !== undefined) problems.push(error.code)
    reply.code(error.statusCode ?? 500).send({ error: error.message })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    server: app.server,
    problems,
    close: () => app.close(),
  }
}

type Kind = 'slow' | 'hangup' | 'throws' | 'late' | 'post' | 'stream' | 'fast'

/** A third past the deadline, a fifth hung up, a tenth throwing, a tenth writing late, the rest mixed. */
function kindOf(i: number): Kind {
  const slot = i % 30
  if (slot < 10) return 'slow'
  if (slot < 16) return 'hangup'
  if (slot < 19) return 'throws'
  if (slot < 22) return 'late'
  if (slot < 26) return 'post'
  if (slot < 28) return 'stream'
  return 'fast'
}

/** The statuses a client may see for each kind: the handler's own, or the timeout's. */
const EXPECTED: Record<Exclude<Kind, 'hangup'>, number[]> = {
  slow: [504],
  late: [504],
  throws: [500],
  post: [200],
  stream: [200],
  fast: [200],
}

function call(
  url: string,
  kind: Kind,
  agent: http.Agent,
  i: number,
): Promise<{ kind: Kind; status: number; body: string }> {
  return new Promise((resolve) => {
    const path = kind === 'post' ? '/echo' : kind === 'hangup' ? '/hang' : `/${kind}`
    const body = kind === 'post' ? JSON.stringify({ i, payload: 'x'.repeat(i % 200) }) : undefined
    const req = http.request(`${url}${path}`, {
      method: kind === 'post' ? 'POST' : 'GET',
      agent: kind === 'hangup' ? false : agent,
      headers:
        body === undefined
          ? { 'x-call': String(i) }
          : { 'x-call': String(i), 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    })
    // A hang-up: the client goes away once the handler has its request (a server without /hang
    // answers 404 instead, and the call ends with that answer).
    const hangUp = () => {
      req.destroy()
      resolve({ kind, status: 0, body: '' })
    }
    if (kind === 'hangup') arrivals.once(String(i), hangUp)
    req.on('close', () => arrivals.off(String(i), hangUp))
    req.on('error', () => resolve({ kind, status: 0, body: '' }))
    req.on('response', (res) => {
      let text = ''
      res.on('data', (chunk) => {
        text += chunk
      })
      res.on('end', () => resolve({ kind, status: res.statusCode ?? 0, body: text }))
      res.on('error', () => resolve({ kind, status: -1, body: text }))
    })
    req.end(body)
  })
}

describe.each([
  ['express', startExpress],
  ['fastify', startFastify],
] as const)('%s under mixed load', (_name, start) => {
  it("answers 3,000 mixed requests with the handler's response or the timeout status, and leaves nothing behind", async () => {
    const service = await start(GENEROUS)
    const before = inspect().counters
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
    const total = 3_000
    const results: Array<{ kind: Kind; status: number; body: string }> = []
    let next = 0
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        for (let i = next++; i < total; i = next++) results.push(await call(service.url, kindOf(i), agent, i))
      }),
    )
    agent.destroy()
    await eventually(() => inspect().inflight.length === 0, 5_000, 'nothing in flight')
    await service.close()

    const unexpected = results.filter((r) => r.kind !== 'hangup' && !EXPECTED[r.kind].includes(r.status))
    expect(unexpected.slice(0, 5)).toEqual([])
    for (const r of results.filter((r) => r.kind === 'post')) expect(JSON.parse(r.body)).toHaveProperty('payload')
    for (const r of results.filter((r) => r.kind === 'stream')) expect(r.body).toBe('chunk 0\nchunk 1\nchunk 2\nend\n')
    for (const r of results.filter((r) => r.status === 504))
      expect(JSON.parse(r.body).code).toBe('TETHER_DEADLINE_EXCEEDED')
    expect(service.problems.filter((problem) => ALREADY_SENT.test(problem))).toEqual([])
    expect(crashes).toEqual([])

    const after = inspect().counters
    const count = (kind: Kind) => results.filter((r) => r.kind === kind).length
    // Every request reached the server, and every hang-up was seen as one.
    expect(after.clientClosed - before.clientClosed).toBe(count('hangup'))
    expect(after.requests - before.requests).toBe(total)
    expect(after.deadlineExceeded - before.deadlineExceeded).toBe(count('slow') + count('late'))
    // Every late handler wrote after the deadline: each write was swallowed and counted.
    await eventually(() => inspect().counters.lateWrites - before.lateWrites >= count('late'), 5_000, 'late writes')
  })
})

describe('slow clients against a hardened server', () => {
  it.each([
    ['express', startExpress],
    ['fastify', startFastify],
  ] as const)(
    '%s: a client that trickles its body is answered at the deadline and cut, while others are served',
    async (_name, start) => {
      const service = await start()
      hardenServer(service.server, { headersTimeout: 300, requestTimeout: 600, checkInterval: 100 })
      const socket = await connect(service.url)
      const started = Date.now()
      let received = ''
      socket.on('data', (chunk) => {
        received += chunk
      })
      socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{')
      const trickle = setInterval(() => socket.writable && socket.write(' '), 100)
      const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now() - started)))
      const served: number[] = []
      for (let i = 0; i < 5; i++) {
        const response = await fetch(`${service.url}/fast`)
        served.push(response.status)
        await sleep(50)
      }
      const closedAfter = await closed
      clearInterval(trickle)
      expect(served).toEqual([200, 200, 200, 200, 200])
      // tether's deadline bounds a slow body too: 504 at the deadline, and the connection is closed
      // rather than kept reading a body nobody will use. Node's requestTimeout (600 ms here) is the
      // backstop for a server without a deadline (hardening.test.ts).
      expect(received).toMatch(/^HTTP\/1.1 504/)
      expect(received.toLowerCase()).toContain('connection: close')
      expect(closedAfter).toBeGreaterThanOrEqual(DEADLINE - 5)
      expect(closedAfter).toBeLessThan(600)
      await service.close()
    },
  )
})

describe('shutdown under load', () => {
  it.each([
    ['express', startExpress],
    ['fastify', startFastify],
  ] as const)(
    "%s: every accepted request is answered (200, the deadline's 504 or shutdown's 503), and shutdown returns within grace plus a short bound",
    async (_name, start) => {
      const service = await start()
      const results: Array<{ kind: Kind; status: number }> = []
      let stop = false
      const fresh = new http.Agent({ keepAlive: false })
      const clients = Array.from({ length: 32 }, async (_, worker) => {
        for (let i = worker; !stop; i += 32) {
          const kind = (['fast', 'late', 'post', 'slow'] as const)[i % 4] as Kind
          const result = await call(service.url, kind, fresh, i)
          results.push(result)
          if (result.status === 0) break // refused: the server has stopped accepting
        }
      })
      // Shut down once the server is demonstrably under load, however fast this machine serves it.
      await eventually(() => results.length >= 50, 20_000, '50 answers before shutdown')
      const grace = 300
      const started = Date.now()
      const report = await shutdown(service.server, { grace })
      const took = Date.now() - started
      stop = true
      await Promise.all(clients)
      await service.close().catch(() => undefined)

      expect(took).toBeLessThan(grace + 1_000 + 700)
      // Accepted requests all got an HTTP answer; refused connections (status 0) came only after
      // the server stopped accepting, and each client stops at its first refusal.
      const answered = results.filter((r) => r.status !== 0)
      expect(answered.length).toBeGreaterThanOrEqual(50)
      for (const r of answered) expect([200, 503, 504]).toContain(r.status)
      expect(results.filter((r) => r.status === -1)).toEqual([])
      // What the report says must add up with what the clients saw: every request it counts as
      // finished or aborted was answered (a 200, a 503 or a 504).
      expect(report.finished + report.aborted).toBeLessThanOrEqual(answered.length)
      await eventually(() => inspect().inflight.length === 0, 3_000, 'nothing in flight')
      expect(crashes).toEqual([])
    },
  )
})

describe('the pool under overload', () => {
  it.each(['express', 'fastify'] as const)(
    '%s: sheds with 503 and Retry-After, never runs more than its concurrency, and never starts an aborted caller',
    async (framework) => {
      const pool = createPool({ concurrency: 4, maxQueue: 8, retryAfter: 2 })
      let running = 0
      let maxRunning = 0
      let startedAborted = 0
      const work = (signal: AbortSignal) =>
        pool.run(
          async (taskSignal) => {
            if (taskSignal.aborted) startedAborted++
            running++
            maxRunning = Math.max(maxRunning, running)
            try {
              await sleep(30, undefined, { signal: taskSignal })
            } finally {
              running--
            }
            return { done: true }
          },
          { signal },
        )

      let url: string
      let close: () => Promise<unknown>
      if (framework === 'express') {
        const app = express()
        app.use(tetherExpress({ logger: false }))
        app.get('/work', async (req, res) => {
          res.json(await work(req.scope.signal))
        })
        const server = app.listen(0, '127.0.0.1')
        await new Promise((resolve) => server.once('listening', resolve))
        url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
        close = () => {
          server.closeAllConnections()
          return new Promise((resolve) => server.close(resolve))
        }
      } else {
        const app = Fastify()
        await app.register(tetherFastify, { logger: false, grace: 0 })
        app.get('/work', async (request) => work(request.scope.signal))
        await app.listen({ port: 0, host: '127.0.0.1' })
        url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
        close = () => app.close()
      }

      const shedBefore = inspect().counters.shed
      const responses = await Promise.all(
        Array.from({ length: 120 }, (_, i) =>
          i % 3 === 0
            ? call(url, 'hangup', new http.Agent(), i).then(() => undefined)
            : fetch(`${url}/work`).then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after') })),
        ),
      )
      await close()
      const answered = responses.filter((r) => r !== undefined)
      expect(answered.filter((r) => r.status !== 200 && r.status !== 503)).toEqual([])
      const shed = answered.filter((r) => r.status === 503)
      expect(shed.length).toBeGreaterThan(0)
      for (const r of shed) expect(r.retryAfter).toBe('2')
      expect(inspect().counters.shed - shedBefore).toBeGreaterThanOrEqual(shed.length)
      expect(maxRunning).toBeLessThanOrEqual(4)
      expect(startedAborted).toBe(0)
      expect([pool.active, pool.queued]).toEqual([0, 0])
    },
  )
})
