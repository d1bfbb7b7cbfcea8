import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { type ConcurrencySnapshot, createTether, inspect, registerMetrics } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { type TetherExpressOptions, tether as tetherExpress, unlimited } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { eventually, hangUpWhen, send } from './support/http.js'

/** What a test server's routes report. */
interface Probe {
  /** Handlers started, by `id` (a query parameter), in order. */
  readonly started: string[]
  /** Handlers running now: counted from the handler's start to its response's `finish`. */
  running: number
  /** The most handlers running at once. */
  most: number
}

interface Server {
  readonly url: string
  readonly probe: Probe
  /** This server's limit, as `inspect()` lists it. */
  limit(): ConcurrencySnapshot
  /** Whether it was made with `concurrency` (so has a limit). */
  readonly limited: boolean
  close(): Promise<void>
}

const open: Server[] = []
afterEach(async () => {
  for (const server of open.splice(0)) await server.close()
})

/**
 * One server per framework with the same routes:
 *
 * - `GET /work?ms=N&id=X`: awaits N ms (listening to its signal), then answers.
 * - `GET /later?ms=N&id=X`: returns at once and answers N ms later (the slot is the response's).
 * - `GET /stream?id=X` and `GET /free-stream?id=X` (exempt from the limit): headers and a first
 *   chunk, then nothing until the request ends.
 */
async function serve(framework: 'express' | 'fastify', options: TetherExpressOptions): Promise<Server> {
  const probe: Probe = { started: [], running: 0, most: 0 }
  const begin = (id: unknown, raw: http.ServerResponse) => {
    probe.started.push(String(id ?? ''))
    probe.running++
    probe.most = Math.max(probe.most, probe.running)
    raw.once('finish', () => probe.running--)
  }
  let url: string
  let close: () => Promise<void>
  if (framework === 'express') {
    const app = express()
    app.set('env', 'test')
    app.use(tetherExpress({ logger: false, ...options }))
    app.get('/work', async (req, res) => {
      begin(req.query.id, res)
      await sleep(Number(req.query.ms), undefined, { signal: req.scope.signal })
      res.json({ ok: true })
    })
    app.get('/later', (req, res) => {
      begin(req.query.id, res)
      setTimeout(() => res.json({ ok: true }), Number(req.query.ms))
    })
    const stream = (req: express.Request, res: express.Response) => {
      probe.started.push(String(req.query.id ?? ''))
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('first chunk\n')
    }
    app.get('/stream', stream)
    app.get('/free-stream', unlimited(), stream)
    const server = app.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    close = () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(() => resolve()))
    }
  } else {
    const app = Fastify()
    await app.register(tetherFastify, { logger: false, grace: 0, ...options })
    app.get<{ Querystring: { ms: string; id?: string } }>('/work', async (request, reply) => {
      begin(request.query.id, reply.raw)
      await sleep(Number(request.query.ms), undefined, { signal: request.scope.signal })
      return { ok: true }
    })
    app.get<{ Querystring: { ms: string; id?: string } }>('/later', (request, reply) => {
      begin(request.query.id, reply.raw)
      setTimeout(() => reply.send({ ok: true }), Number(request.query.ms))
    })
    const stream = (request: { query: { id?: string } }, reply: { hijack(): void; raw: http.ServerResponse }) => {
      probe.started.push(String(request.query.id ?? ''))
      reply.hijack()
      reply.raw.writeHead(200, { 'content-type': 'text/plain' })
      reply.raw.write('first chunk\n')
    }
    app.get<{ Querystring: { id?: string } }>('/stream', stream)
    app.get<{ Querystring: { id?: string } }>('/free-stream', { config: { tether: { concurrency: false } } }, stream)
    await app.listen({ port: 0, host: '127.0.0.1' })
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    close = () => app.close()
  }
  const server: Server = {
    url,
    probe,
    // Limits are listed oldest first. Counted from the newest: the limits of apps that earlier tests
    // made leave the list once collected, which shifts every index counted from the oldest, while
    // the limits made after this one (this test's servers, held in `open`) all stay.
    limit: () => {
      const newer = open.slice(open.indexOf(server) + 1).filter((other) => other.limited).length
      const limits = inspect().concurrency
      return limits[limits.length - 1 - newer] as ConcurrencySnapshot
    },
    limited: options.concurrency !== undefined,
    close,
  }
  open.push(server)
  if (typeof options.concurrency === 'number') {
    expect(server.limit()).toMatchObject({ limit: options.concurrency, active: 0, queued: 0 })
  }
  return server
}

/** Opens a streaming route and resolves once its first chunk has arrived; `end()` hangs up. */
function openStream(url: string): Promise<{ status: number; end(): void }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      res.once('data', () => resolve({ status: res.statusCode ?? 0, end: () => req.destroy() }))
    })
    req.on('error', reject)
  })
}

const frameworks = ['express', 'fastify'] as const

describe('tether({ concurrency })', () => {
  it.each(frameworks)(
    '%s: at most n handlers run at once, counted from their start to their response, and the rest are served in turn',
    async (framework) => {
      const server = await serve(framework, { timeout: 10_000, concurrency: 3 })
      const requests = Array.from({ length: 12 }, (_, i) =>
        send(`${server.url}/${i % 2 === 0 ? 'work' : 'later'}?ms=40&id=${i}`),
      )
      await eventually(() => server.limit().queued > 0, 5_000, 'requests waiting for a slot')
      expect(server.limit()).toMatchObject({ auto: false, limit: 3, active: 3 })
      const answers = await Promise.all(requests)
      expect(answers.map((answer) => answer.status)).toEqual(Array(12).fill(200))
      expect(server.probe.started).toHaveLength(12)
      expect(server.probe.most).toBe(3)
      expect(server.limit()).toMatchObject({ limit: 3, active: 0, queued: 0, shed: 0, baselineMs: null })
      await eventually(() => inspect().inflight.length === 0, 5_000, 'no request in flight')
      await assertNoLingering()

      // The same load without the option: the count above could have seen more.
      const unlimitedServer = await serve(framework, { timeout: 10_000 })
      await Promise.all(Array.from({ length: 12 }, (_, i) => send(`${unlimitedServer.url}/later?ms=100&id=${i}`)))
      expect(unlimitedServer.probe.most).toBeGreaterThan(3)
    },
  )

  it.each(frameworks)(
    '%s: a request that cannot finish in time is answered 503 with Retry-After at once, and its handler never runs',
    async (framework) => {
      const server = await serve(framework, { timeout: 10_000, concurrency: 1 })
      // Two at once: the second waits, and how long it ran is what the limit expects of a handler.
      const warm = await Promise.all([send(`${server.url}/work?ms=100`), send(`${server.url}/work?ms=100`)])
      expect(warm.map((answer) => answer.status)).toEqual([200, 200])

      const running = send(`${server.url}/work?ms=300&id=running`)
      await eventually(() => server.probe.started.includes('running'), 5_000, 'the first handler to start')
      const shedBefore = inspect().counters.shed
      // 150 ms of budget cannot cover the handler running now and its own run (≥ 100 ms each).
      const hopeless = await send(`${server.url}/work?ms=100&id=hopeless`, {
        headers: { 'x-request-timeout-ms': '150' },
      })
      // Refused when it arrived, not answered at its deadline: only a shed carries Retry-After
      // (the deadline's answer never does; see the next test), and its code says which.
      expect(hopeless.status).toBe(503)
      expect(hopeless.headers['retry-after']).toBe('1')
      expect(JSON.parse(hopeless.body)).toMatchObject({ statusCode: 503, code: 'TETHER_POOL_OVERLOADED' })
      expect((await running).status).toBe(200)
      expect(server.probe.started).not.toContain('hopeless')
      expect(server.limit()).toMatchObject({ shed: 1, active: 0, queued: 0 })
      expect(inspect().counters.shed).toBe(shedBefore + 1)
      await eventually(() => inspect().inflight.length === 0, 5_000, 'no request in flight')
      await assertNoLingering()
    },
  )

  it.each(frameworks)(
    '%s: a request whose deadline passes while it waits gets the deadline answer and never runs',
    async (framework) => {
      const server = await serve(framework, { timeout: 10_000, status: 504, concurrency: 1 })
      const running = send(`${server.url}/work?ms=400&id=running`)
      await eventually(() => server.probe.started.includes('running'), 5_000, 'the first handler to start')
      // Nothing measured yet, so it waits; its deadline comes first.
      const waiting = await send(`${server.url}/work?ms=10&id=waiting`, { headers: { 'x-request-timeout-ms': '100' } })
      expect(waiting.status).toBe(504)
      expect(waiting.headers['retry-after']).toBeUndefined()
      expect(server.limit()).toMatchObject({ active: 1, queued: 0 })
      expect((await running).status).toBe(200)
      expect(server.probe.started).toEqual(['running'])
      expect(server.limit()).toMatchObject({ active: 0, queued: 0, shed: 0 })
      await assertNoLingering()
    },
  )

  it.each(frameworks)(
    '%s: a client that hangs up while it waits leaves the queue, and its handler never runs',
    async (framework) => {
      const server = await serve(framework, { timeout: 10_000, concurrency: 1 })
      const running = send(`${server.url}/work?ms=600&id=running`)
      await eventually(() => server.probe.started.includes('running'), 5_000, 'the first handler to start')
      await hangUpWhen(
        `${server.url}/work?ms=10&id=gone`,
        () => server.limit().queued === 1,
        'the second request waiting',
      )
      // It leaves the queue when its client goes, while the first handler still runs.
      await eventually(() => server.limit().queued === 0, 5_000, 'the queue emptied')
      expect(server.limit().active).toBe(1)
      expect((await running).status).toBe(200)
      expect(server.probe.started).toEqual(['running'])
      expect(server.limit()).toMatchObject({ active: 0, queued: 0 })
    },
  )

  it.each(frameworks)(
    '%s: a route that opts out holds no slot: a stream open for as long as it likes does not hold others back',
    async (framework) => {
      const server = await serve(framework, { timeout: 10_000, concurrency: 1 })
      const free = await openStream(`${server.url}/free-stream?id=free`)
      expect(free.status).toBe(200)
      await eventually(() => server.limit().active === 0, 5_000, 'the stream to give up its slot')
      const work = await send(`${server.url}/work?ms=10&id=work`)
      expect(work.status).toBe(200)
      expect(server.limit()).toMatchObject({ active: 0, queued: 0 })

      // The same stream on a counted route holds the only slot: the next request waits for it,
      // until its own deadline.
      const counted = await openStream(`${server.url}/stream?id=counted`)
      expect(server.limit().active).toBe(1)
      const blocked = await send(`${server.url}/work?ms=10&id=blocked`, { headers: { 'x-request-timeout-ms': '200' } })
      expect(blocked.status).not.toBe(200)
      expect(server.probe.started).not.toContain('blocked')
      free.end()
      counted.end()
      await eventually(() => server.limit().active === 0, 5_000, 'the slot freed when the client hung up')
    },
  )

  it('express: unlimited() needs tether() earlier in the chain, and does nothing without a limit', async () => {
    const app = express()
    app.set('env', 'test')
    app.get('/alone', unlimited(), (_req, res) => res.send('never'))
    app.use('/with', tetherExpress({ logger: false }))
    app.get('/with', unlimited(), (_req, res) => res.send('served'))
    const server = app.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      const alone = await send(`${url}/alone`)
      expect(alone.status).toBe(500)
      expect(alone.body).toContain('unlimited() needs the tether() middleware earlier in the chain')
      const served = await send(`${url}/with`)
      expect([served.status, served.body]).toEqual([200, 'served'])
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53])(
    'refuses concurrency %s with a RangeError naming the option and the value, in every entry point',
    async (value) => {
      const message = new RegExp(`^\`concurrency\` must be an integer ≥ 1 or 'auto', received ${String(value)}`)
      expect(() => createTether({ concurrency: value })).toThrow(RangeError)
      expect(() => createTether({ concurrency: value })).toThrow(message)
      expect(() => tetherExpress({ concurrency: value })).toThrow(message)
      const app = Fastify()
      await expect(app.register(tetherFastify, { concurrency: value })).rejects.toThrow(message)
      await app.close()
    },
  )

  it.each(['4', 'AUTO', null, true, {}])(
    'refuses concurrency %j with a TypeError naming the option and the value, in every entry point',
    async (value) => {
      const options = { concurrency: value as never }
      expect(() => createTether(options)).toThrow(TypeError)
      expect(() => createTether(options)).toThrow(/^`concurrency` must be an integer ≥ 1 or 'auto', received /)
      expect(() => tetherExpress(options)).toThrow(TypeError)
      const app = Fastify()
      await expect(app.register(tetherFastify, options)).rejects.toThrow(TypeError)
      await app.close()
    },
  )

  it("fastify: a route's config.tether.concurrency must be a boolean, named with its route when it is not", async () => {
    const app = Fastify()
    await app.register(tetherFastify, { concurrency: 'auto', logger: false })
    expect(() => app.get('/x', { config: { tether: { concurrency: 'no' as never } } }, async () => 'x')).toThrow(
      /^`config\.tether\.concurrency` of route `GET \/x` must be a boolean \(false exempts the route\), received 'no'/,
    )
    await app.close()
  })

  it('the limit, its queue and its sheds are in the metrics, as in inspect()', async () => {
    const server = await serve('express', { timeout: 10_000, concurrency: 2 })
    const register = new Registry()
    const metrics = registerMetrics({ register })
    try {
      const slow = [send(`${server.url}/work?ms=200&id=a`), send(`${server.url}/work?ms=200&id=b`)]
      const queued = send(`${server.url}/work?ms=10&id=c`)
      await eventually(() => server.limit().queued === 1, 5_000, 'a request waiting')
      const read = async (name: string) =>
        (await register.getSingleMetric(name)?.get())?.values.reduce((total, { value }) => total + value, 0)
      const limits = inspect().concurrency
      const sum = (key: 'limit' | 'active' | 'queued') => limits.reduce((total, limit) => total + limit[key], 0)
      expect(await read('tether_concurrency_limit')).toBe(sum('limit'))
      expect(await read('tether_concurrency_active')).toBe(sum('active'))
      expect(await read('tether_concurrency_queued')).toBe(sum('queued'))
      expect(sum('queued')).toBeGreaterThanOrEqual(1)
      expect(await read('tether_concurrency_shed_total')).toBeGreaterThanOrEqual(
        limits.reduce((total, limit) => total + limit.shed, 0),
      )
      await Promise.all([...slow, queued])
    } finally {
      metrics.unregister()
    }
  })
})

describe("tether({ concurrency: 'auto' }) on a real server", () => {
  it('falls when handlers slow each other down, and climbs when they do not', async () => {
    // Each handler does 10 ms of CPU in 1 ms slices (they share the event loop: n at once take
    // about n times as long), or waits 40 ms on a timer (n at once take as long as one).
    let mode: 'cpu' | 'wait' = 'wait'
    const app = express()
    app.set('env', 'test')
    app.use(tetherExpress({ timeout: 10_000, logger: false, concurrency: 'auto' }))
    app.get('/', async (_req, res) => {
      if (mode === 'wait') await sleep(40)
      else {
        for (let slice = 0; slice < 10; slice++) {
          const until = performance.now() + 1
          while (performance.now() < until) {}
          await new Promise((resolve) => setImmediate(resolve))
        }
      }
      res.end('ok')
    })
    const server = app.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
    // The newest limit is this app's: listed last. (Not by index: the limits of apps earlier tests
    // made leave the list once collected, which shifts the indices under a busy garbage collector.)
    const limit = () => (inspect().concurrency.at(-1) as ConcurrencySnapshot).limit
    const CLIENTS = 40
    const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS })
    let stop = false
    const failures: number[] = []
    // Closed loop: CLIENTS requests in flight all along, until stopped.
    const client = async () => {
      while (!stop) {
        const answer = await send(url, { agent })
        if (answer.status !== 200) failures.push(answer.status)
      }
    }
    /** Runs `mode` until the limit meets `done` (bounded), then returns the limits seen. */
    const phase = async (next: typeof mode, done: (limit: number) => boolean) => {
      mode = next
      await eventually(() => done(limit()), 15_000, `the limit to adapt to ${next} (at ${limit()})`)
      return limit()
    }
    const clients = Array.from({ length: CLIENTS }, client)
    try {
      // Waiting handlers: the limit climbs until the forty clients are served at once.
      const wait = await phase('wait', (limit) => limit >= CLIENTS / 2)
      // CPU-bound handlers: it falls to a handful (one core runs one at a time anyway).
      const cpu = await phase('cpu', (limit) => limit <= CLIENTS / 4)
      // And climbs again once they wait.
      const again = await phase('wait', (limit) => limit >= CLIENTS / 2)
      expect(wait).toBeGreaterThan(cpu)
      expect(again).toBeGreaterThan(cpu)
      // Requests waited, or were shed, but none failed otherwise (every answer 200 or a 503 shed).
      expect(failures.every((status) => status === 503)).toBe(true)
    } finally {
      stop = true
      await Promise.all(clients)
      agent.destroy()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
