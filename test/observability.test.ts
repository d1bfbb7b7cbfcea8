import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { all, createScope, inspect, type LeakReport, onLeak, registerMetrics } from '@tether/core'
import { assertNoLingering, LingeringTasksError, resetLingering } from '@tether/core/testing'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import client from 'prom-client'
import request from 'supertest'
import { afterEach, describe, expect, it } from 'vitest'
import { eventually } from './support/http.js'

let closers: Array<() => Promise<unknown>> = []

/** A gate the test opens to let lingering work finish; opened after each test in any case. */
function gate() {
  let open!: () => void
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  closers.push(async () => open())
  return { opened, open }
}

afterEach(async () => {
  await Promise.all(closers.map((close) => close()))
  closers = []
  await assertNoLingering()
})

type Logged = Array<{ object: object; message?: string }>

/** An Express app with a route whose fan-out ignores its signal and waits for the gate. */
function expressApp(options: Parameters<typeof tetherExpress>[0], wait: Promise<void>, logged: Logged) {
  const app = express()
  app.use(tetherExpress({ logger: { warn: (object, message) => logged.push({ object, message }) }, ...options }))
  app.get('/report/:id', async (_req, res) => {
    // The response does not wait for the fan-out: it is left running past the request.
    void all([() => wait, () => wait]).catch(() => undefined)
    res.json({ started: true })
  })
  return app
}

async function fastifyApp(options: object, wait: Promise<void>, logged: Logged) {
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      const line = JSON.parse(String(chunk))
      if (line.tether) logged.push({ object: line, message: line.msg })
      callback()
    },
  })
  const app: FastifyInstance = Fastify({ logger: { level: 'warn', stream } })
  closers.push(() => app.close())
  await app.register(tetherFastify, options)
  app.get('/report/:id', async () => {
    void all([() => wait, () => wait]).catch(() => undefined)
    return { started: true }
  })
  await app.ready()
  return app
}

describe('tasks that never settle', () => {
  const NEVER = 1_005

  it("are kept listed only up to the latest 1,000 once leaked, still counted, and let their request's scope go", async () => {
    const leakedBefore = inspect().counters.leaked
    const app = express()
    app.use(tetherExpress({ leakAfter: 20, logger: false }))
    let seen: WeakRef<object> | undefined
    app.get('/never/:id', (req, res) => {
      seen = new WeakRef(req.scope)
      for (let index = 0; index < NEVER; index++) void req.scope.track(new Promise(() => undefined))
      res.json({ tracked: NEVER })
    })
    await request(app).get('/never/1').expect(200)
    await eventually(() => inspect().counters.leaked === leakedBefore + NEVER, 5_000, 'every task reported')
    const listed = inspect().lingering
    expect(listed).toHaveLength(1_000)
    expect(listed.every((task) => task.leaked && task.method === 'GET' && task.route === '/never/:id')).toBe(true)
    // Nothing holds the request's scope (nor its record) any more.
    await eventually(
      () => {
        global.gc?.()
        return seen?.deref() === undefined
      },
      5_000,
      'the scope collected',
    )
    resetLingering()
    expect(inspect().lingering).toHaveLength(0)
    await assertNoLingering({ timeout: 0 })
  })

  it('resetLingering() lets the next test start clean after a leaky one, and keeps the counters', async () => {
    const scope = createScope()
    void scope.track(new Promise(() => undefined))
    scope.cancel()
    await expect(assertNoLingering({ timeout: 20 })).rejects.toBeInstanceOf(LingeringTasksError)
    const counted = inspect().counters.lingering
    resetLingering()
    await assertNoLingering({ timeout: 0 })
    expect(inspect().counters.lingering).toBe(counted)
  })
})

describe('lingering tasks', () => {
  it('Express: fan-out left running after the response is listed as lingering, then leaves the list when it settles', async () => {
    const { opened, open } = gate()
    const before = inspect().counters.lingering
    await request(expressApp({}, opened, []))
      .get('/report/7')
      .expect(200)
    await eventually(() => inspect().lingering.length === 1, 2_000, 'a lingering task')
    const [task] = inspect().lingering
    expect(task).toMatchObject({ kind: 'group', tasks: 2, method: 'GET', route: '/report/:id', leaked: false })
    expect(task?.ageMs).toBeGreaterThanOrEqual(0)
    expect(task?.pastEndMs).toBeGreaterThanOrEqual(0)
    expect(inspect().counters.lingering).toBe(before + 1)
    await expect(assertNoLingering({ timeout: 50 })).rejects.toBeInstanceOf(LingeringTasksError)
    open()
    await assertNoLingering()
    expect(inspect().counters.lingering).toBe(before + 1)
  })

  it('Fastify: the same, with the route pattern', async () => {
    const { opened, open } = gate()
    const app = await fastifyApp({}, opened, [])
    expect((await app.inject('/report/7')).statusCode).toBe(200)
    await eventually(() => inspect().lingering.length === 1, 2_000, 'a lingering task')
    expect(inspect().lingering[0]).toMatchObject({ kind: 'group', method: 'GET', route: '/report/:id' })
    open()
    await assertNoLingering()
  })

  it('reports a task still pending leakAfter ms later once: an event and the logger, and counts it', async () => {
    const { opened, open } = gate()
    const events: LeakReport[] = []
    const stop = onLeak((report) => events.push(report))
    const logged: Logged = []
    const leakedBefore = inspect().counters.leaked
    await request(expressApp({ leakAfter: 100 }, opened, logged))
      .get('/report/1')
      .expect(200)
    await eventually(() => events.length === 1, 3_000, 'a leak report')
    await sleep(300) // a second report would come by now
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({ kind: 'group', method: 'GET', route: '/report/:id' })
    expect(events[0]?.pastEndMs).toBeGreaterThanOrEqual(100)
    expect(logged).toHaveLength(1)
    expect(logged[0]?.message).toMatch(/GET \/report\/:id still pending \d+ ms after the request ended/)
    expect(inspect().counters.leaked).toBe(leakedBefore + 1)
    expect(inspect().lingering[0]?.leaked).toBe(true)
    stop()
    open()
    await assertNoLingering()
  })

  it("Fastify reports leaks to the request's logger", async () => {
    const { opened, open } = gate()
    const logged: Logged = []
    const app = await fastifyApp({ leakAfter: 50 }, opened, logged)
    await app.inject('/report/2')
    await eventually(() => logged.length === 1, 3_000, 'a log line')
    expect(logged[0]?.object).toMatchObject({ level: 40, tether: { kind: 'group', route: '/report/:id' } })
    open()
    await assertNoLingering()
  })

  it('records where a task was started when stack capture is on', async () => {
    const { opened, open } = gate()
    await request(expressApp({ captureStacks: true }, opened, []))
      .get('/report/3')
      .expect(200)
    await eventually(() => inspect().lingering.length === 1, 2_000, 'a lingering task')
    expect(inspect().lingering[0]?.startedAt).toContain('observability.test.ts')
    const failure = await assertNoLingering({ timeout: 20 }).catch((error: unknown) => error)
    expect(String((failure as Error).message)).toMatch(
      /group \(2 task\(s\)\) of GET \/report\/:id[\s\S]*observability\.test\.ts/,
    )
    open()
    await assertNoLingering()
  })

  it('assertNoLingering ignores what it is told to, and validates its options', async () => {
    const scope = createScope()
    const { opened, open } = gate()
    const tracked = scope.track(opened)
    scope.cancel()
    await assertNoLingering({ ignore: (task) => task.kind === 'track' })
    await expect(assertNoLingering({ timeout: 10 })).rejects.toThrow(/1 task\(s\) outlived their request/)
    open()
    await tracked
    await assertNoLingering()
    await expect(assertNoLingering({ timeout: -1 })).rejects.toThrow(RangeError)
    await expect(assertNoLingering({ ignore: 'x' as never })).rejects.toThrow(/`ignore`/)
  })
})

describe('inspect()', () => {
  it('lists requests in flight with method, route, age and remaining time, as JSON-safe data', async () => {
    const { opened, open } = gate()
    const app = express()
    app.use(tetherExpress({ timeout: 5_000, logger: false }))
    app.get('/slow/:id', async (_req, res) => {
      await opened
      res.json({ done: true })
    })
    const pending = request(app)
      .get('/slow/9')
      .then((response) => response)
    await eventually(() => inspect().inflight.length === 1, 2_000, 'a request in flight')
    const snapshot = JSON.parse(JSON.stringify(inspect()))
    expect(snapshot.inflight[0]).toMatchObject({ method: 'GET', route: '/slow/:id' })
    expect(snapshot.inflight[0].ageMs).toBeGreaterThanOrEqual(0)
    expect(snapshot.inflight[0].remainingMs).toBeGreaterThan(3_000)
    expect(Object.keys(snapshot.counters)).toEqual(
      expect.arrayContaining([
        'requests',
        'deadlineExceeded',
        'clientClosed',
        'lateWrites',
        'lingering',
        'leaked',
        'shed',
      ]),
    )
    open()
    await pending
  })
})

describe('Prometheus metrics', () => {
  it('registers counters, gauges and a histogram that a prom-client registry scrapes', async () => {
    const registry = new client.Registry()
    const metrics = registerMetrics({ register: registry })
    expect(registerMetrics({ register: registry })).toBe(metrics)
    try {
      const { opened, open } = gate()
      await request(expressApp({ timeout: 10 }, opened, [])).get('/report/1')
      const app = express()
      app.use(tetherExpress({ timeout: 20, logger: false }))
      app.get('/slow', () => undefined)
      await request(app).get('/slow').expect(504)
      await eventually(() => inspect().lingering.length === 1, 2_000, 'a lingering task')

      const text = await registry.metrics()
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1])
      expect(value('tether_requests_total')).toBe(inspect().counters.requests)
      expect(value('tether_requests_deadline_exceeded_total')).toBe(inspect().counters.deadlineExceeded)
      expect(value('tether_tasks_lingering')).toBe(1)
      expect(text).toContain('# TYPE tether_tasks_lingered_total counter')
      expect(text).toContain('# TYPE tether_requests_in_flight gauge')
      expect(text).toContain('# TYPE tether_lingering_duration_seconds histogram')

      open()
      await assertNoLingering()
      const after = await registry.metrics()
      expect(Number(/^tether_lingering_duration_seconds_count (\S+)$/m.exec(after)?.[1])).toBe(1)
      const parsed = await registry.getMetricsAsJSON()
      expect(parsed.map((metric) => metric.name)).toEqual(expect.arrayContaining(metrics.names as string[]))
    } finally {
      metrics.unregister()
    }
    expect(await registry.metrics()).not.toContain('tether_')
  })

  it('validates its options', () => {
    expect(() => registerMetrics({ prefix: '1bad' })).toThrow(/`prefix`/)
    expect(() => registerMetrics({ buckets: ['a'] as never })).toThrow(/`buckets`/)
  })
})

describe('the debug route', () => {
  it('is off by default, and serves inspect() as JSON in both adapters when set', async () => {
    const off = express()
    off.use(tetherExpress({ logger: false }))
    await request(off).get('/debug/tether').expect(404)

    const app = express()
    app.use(tetherExpress({ logger: false, debugRoute: '/debug/tether' }))
    const fromExpress = await request(app).get('/debug/tether').expect(200)
    // What inspect() returns, in its order: both adapters serve the same snapshot.
    const snapshotKeys = ['inflight', 'lingering', 'counters', 'outbound', 'workerPools', 'concurrency']
    expect(Object.keys(fromExpress.body)).toEqual(snapshotKeys)

    const fastify = Fastify()
    closers.push(() => fastify.close())
    await fastify.register(tetherFastify, { logger: false, debugRoute: '/debug/tether' })
    const fromFastify = await fastify.inject('/debug/tether')
    expect(fromFastify.statusCode).toBe(200)
    expect(Object.keys(fromFastify.json())).toEqual(snapshotKeys)
  })

  it('must be a path', () => {
    expect(() => tetherExpress({ debugRoute: 'debug' })).toThrow(/`debugRoute`.*'debug'/)
  })
})
