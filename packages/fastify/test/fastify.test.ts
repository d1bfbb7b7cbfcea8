import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { all, createPool, currentScope, inspect, isCanceled, isDeadlineExceeded, TaskGroup } from '@tether/core'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import defaultExport, { type TetherFastifyOptions, tether } from '../src/index.js'

let apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.map((app) => app.close()))
  apps = []
})

/** A fresh app per test; `logs` collects what Fastify's logger writes (warn and above). */
async function appWith(options: TetherFastifyOptions | undefined, routes: (app: FastifyInstance) => void) {
  const logs: Array<{ level: number; msg?: string; err?: { code?: string; message?: string } }> = []
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(JSON.parse(String(chunk)))
      callback()
    },
  })
  const app = Fastify({ logger: { level: 'warn', stream } })
  apps.push(app)
  await app.register(tether, { logger: false, ...options })
  routes(app)
  await app.ready()
  return { app, logs }
}

async function counterMoved(name: keyof ReturnType<typeof inspect>['counters'], from: number, by = 1) {
  for (let i = 0; i < 100 && inspect().counters[name] < from + by; i++) await sleep(10)
  return inspect().counters[name] - from
}

describe('the Fastify plugin', () => {
  it('is the default and the named export, a fastify-plugin named @tether/fastify', () => {
    expect(defaultExport).toBe(tether)
    expect((tether as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')]).toBe('@tether/fastify')
    expect((tether as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')]).toBe(true)
  })

  it('sets request.scope and runs hooks and the handler inside it, for GET and for POST with a body', async () => {
    const { app } = await appWith(undefined, (app) => {
      app.addHook('preHandler', async (request) => {
        ;(request as unknown as { inPreHandler: boolean }).inPreHandler = currentScope() === request.scope
      })
      const handler = async (request: import('fastify').FastifyRequest) => {
        await sleep(1)
        return {
          handler: currentScope() === request.scope,
          preHandler: (request as unknown as { inPreHandler: boolean }).inPreHandler,
          aborted: request.scope.signal.aborted,
          body: request.body ?? null,
        }
      }
      app.get('/', handler)
      app.post('/', handler)
    })
    const get = await app.inject('/')
    expect(get.json()).toEqual({ handler: true, preHandler: true, aborted: false, body: null })
    const post = await app.inject({ method: 'POST', url: '/', payload: { hello: 'world' } })
    expect(post.json()).toEqual({ handler: true, preHandler: true, aborted: false, body: { hello: 'world' } })
  })

  it('binds all(), TaskGroup and pools in handlers to the request', async () => {
    const pool = createPool({ concurrency: 2 })
    const { app } = await appWith(undefined, (app) => {
      app.get('/', async (request) => {
        const [a] = await all([async (signal) => signal.aborted])
        const group = new TaskGroup()
        group.go(async () => undefined)
        await group.wait()
        const poolSignal = await pool.run((signal) => signal)
        return { a, poolUsesRequestSignal: poolSignal === request.scope.signal }
      })
    })
    expect((await app.inject('/')).json()).toEqual({ a: false, poolUsesRequestSignal: true })
  })

  it('answers 504 with a short JSON body and no Retry-After at the deadline, and aborts the work with DeadlineExceededError', async () => {
    let reason: unknown
    const { app } = await appWith({ timeout: 60 }, (app) => {
      app.get('/', async () => {
        await all([(signal) => sleep(5_000, undefined, { signal })]).catch((error: unknown) => {
          reason = error
        })
        return { late: true }
      })
    })
    const started = Date.now()
    const response = await app.inject('/')
    const elapsed = Date.now() - started
    expect(response.statusCode).toBe(504)
    expect(response.headers['content-type']).toMatch(/application\/json/)
    expect(response.json()).toEqual({
      statusCode: 504,
      code: 'TETHER_DEADLINE_EXCEEDED',
      error: 'Gateway Timeout',
      message: 'deadline exceeded',
    })
    // The work ran out of time: nothing invites a proxy or client to retry it.
    expect(response.headers['retry-after']).toBeUndefined()
    // Answered promptly after the deadline; the bound is generous for a shared CI machine.
    expect(elapsed).toBeGreaterThanOrEqual(55)
    expect(elapsed).toBeLessThan(60 + 500)
    await sleep(5)
    expect(isDeadlineExceeded(reason)).toBe(true)
  })

  it('answers with the configured status', async () => {
    const { app } = await appWith({ timeout: 20, status: 503 }, (app) => {
      app.get('/', () => new Promise(() => undefined))
    })
    const response = await app.inject('/')
    expect(response.statusCode).toBe(503)
    expect(response.json().error).toBe('Service Unavailable')
    // A deadline's answer, whatever its status: no Retry-After (that is for shed and shutdown).
    expect(response.headers['retry-after']).toBeUndefined()
  })

  it('swallows and counts a late reply.send, a late return value and a late throw, with nothing logged', async () => {
    const before = inspect().counters.lateWrites
    const { app, logs } = await appWith({ timeout: 30 }, (app) => {
      app.get('/send', async (_request, reply) => {
        await sleep(80)
        reply.code(200).send({ tooLate: true })
        return reply
      })
      app.get('/return', async () => {
        await sleep(80)
        return { tooLate: true }
      })
      app.get('/throw', async () => {
        await sleep(80)
        throw new Error('too late to fail')
      })
    })
    for (const url of ['/send', '/return', '/throw']) {
      const response = await app.inject(url)
      expect(response.statusCode, url).toBe(504)
      expect(response.json().code).toBe('TETHER_DEADLINE_EXCEEDED')
    }
    expect(await counterMoved('lateWrites', before, 3)).toBe(3)
    await sleep(20)
    expect(logs.filter((line) => line.err?.code === 'FST_ERR_REP_ALREADY_SENT')).toEqual([])
    expect(logs.filter((line) => /reply.sent = true/.test(line.msg ?? ''))).toEqual([])
  })

  it('ends the scope with a CanceledError once the response is finished', async () => {
    let reason: unknown
    const { app } = await appWith(undefined, (app) => {
      app.get('/', async (request) => {
        request.scope.signal.addEventListener('abort', () => {
          reason = request.scope.signal.reason
        })
        return 'done'
      })
    })
    await app.inject('/')
    await sleep(5)
    expect(isCanceled(reason)).toBe(true)
    expect((reason as Error).message).toBe('response finished')
    expect(inspect().inflight).toEqual([])
  })

  it('reads the deadline header like the Express middleware, ignoring and counting malformed values', async () => {
    const { app } = await appWith({ timeout: 2_000 }, (app) => {
      app.get('/', async (request) => ({ remaining: request.scope.remaining() }))
    })
    const tightened = await app.inject({ url: '/', headers: { 'x-request-timeout-ms': '300' } })
    expect(tightened.json().remaining).toBeLessThanOrEqual(300)
    const before = inspect().counters.ignoredDeadlineHeaders
    const ignored = await app.inject({ url: '/', headers: { 'x-request-timeout-ms': '1e3' } })
    expect(ignored.json().remaining).toBeGreaterThan(1_000)
    expect(inspect().counters.ignoredDeadlineHeaders).toBe(before + 1)
  })
})

describe('route-level timeouts', () => {
  it('config.tether.timeout tightens the route, and never loosens the plugin timeout', async () => {
    const { app } = await appWith({ timeout: 300 }, (app) => {
      app.get('/quick', { config: { tether: { timeout: 40 } } }, () => new Promise(() => undefined))
      app.get('/loose', { config: { tether: { timeout: 60_000 } } }, async (request) => ({
        remaining: request.scope.remaining(),
      }))
    })
    const started = Date.now()
    expect((await app.inject('/quick')).statusCode).toBe(504)
    expect(Date.now() - started).toBeLessThan(250)
    expect((await app.inject('/loose')).json().remaining).toBeLessThanOrEqual(300)
  })

  it("takes Fastify's own handlerTimeout into account", async () => {
    const app = Fastify({ handlerTimeout: 50 })
    apps.push(app)
    await app.register(tether, { timeout: 5_000, logger: false })
    let deadline: number | undefined
    let started = 0
    app.get('/', async (request) => {
      started = Date.now()
      deadline = request.scope.deadline
      await sleep(2_000, undefined, { signal: request.scope.signal })
    })
    const response = await app.inject('/')
    expect(response.statusCode).toBe(504)
    expect(deadline).toBeLessThanOrEqual(started + 50)
  })

  it("answers Fastify's own handlerTimeout with tether's status, whichever timer fires first", async () => {
    const app = Fastify({ handlerTimeout: 40 })
    apps.push(app)
    await app.register(tether, { logger: false })
    // Ignores every signal: the answer is whoever notices the deadline first.
    app.get('/', () => new Promise(() => undefined))
    const answers = []
    for (let i = 0; i < 5; i++) {
      const response = await app.inject('/')
      answers.push({ status: response.statusCode, body: response.json().statusCode, code: response.json().code })
    }
    for (const answer of answers) {
      expect(answer).toMatchObject({ status: 504, body: 504 })
      expect(['FST_ERR_HANDLER_TIMEOUT', 'TETHER_DEADLINE_EXCEEDED']).toContain(answer.code)
    }
    // Fastify's timer starts before tether's hooks run: it is the one that answers.
    expect(answers.map((answer) => answer.code)).toContain('FST_ERR_HANDLER_TIMEOUT')
  })

  it("answers Fastify's own handlerTimeout with a configured status as well", async () => {
    const app = Fastify({ handlerTimeout: 40 })
    apps.push(app)
    await app.register(tether, { status: 500, logger: false })
    app.get('/', () => new Promise(() => undefined))
    const response = await app.inject('/')
    expect(response.statusCode).toBe(500)
    expect(response.json().statusCode).toBe(500)
  })

  it('rejects an invalid config.tether.timeout when the route is registered', async () => {
    const app = Fastify()
    apps.push(app)
    await app.register(tether)
    expect(() => app.get('/', { config: { tether: { timeout: -1 } } }, async () => 'x')).toThrow(
      /config\.tether\.timeout.*-1/,
    )
    expect(() => app.get('/s', { config: { tether: { timeout: '1' as never } } }, async () => 'x')).toThrow(TypeError)
  })
})

describe('options are validated when the plugin is registered', () => {
  const cases: Array<[string, unknown, ErrorConstructor, RegExp]> = [
    ['a negative timeout', { timeout: -1 }, RangeError, /`timeout`.*-1/],
    ['a string timeout', { timeout: '5000' }, TypeError, /`timeout`.*'5000'/],
    ['a status that is not 5xx', { status: 404 }, RangeError, /`status`.*404/],
    ['a bad header name', { deadlineHeader: 'x:y' }, TypeError, /`deadlineHeader`/],
    ['a bad trusted header', { trustHeaders: ['x:y'] }, TypeError, /`trustHeaders\[0\]`/],
    ['trusted headers that are not a list', { trustHeaders: 'x-budget' }, TypeError, /`trustHeaders`/],
    ['a bad propagated header', { propagateHeader: 'X-Budget' }, TypeError, /`propagateHeader`/],
    ['a negative leakAfter', { leakAfter: -5 }, RangeError, /`leakAfter`.*-5/],
    ['options that are not an object', 1, TypeError, /options object.*1/],
    ['a harden value that is neither a boolean nor options', { harden: 0 }, TypeError, /`harden`.*0/],
    ['a null harden timeout', { harden: { headersTimeout: null } }, TypeError, /`headersTimeout`.*null/],
  ]
  it.each(cases)('fails registration for %s', async (_name, options, type, message) => {
    const app = Fastify()
    apps.push(app)
    const registering = app.register(tether, options as never)
    await expect(registering).rejects.toThrow(type)
    await expect(app.ready()).rejects.toThrow(message)
  })

  it('reads inherited options, as the Express middleware does', async () => {
    const app = Fastify()
    apps.push(app)
    await app.register(tether, Object.create({ timeout: 5_000, logger: false }))
    app.get('/', async (request) => ({ remaining: request.scope.remaining() }))
    expect((await app.inject('/')).json().remaining).toBeLessThanOrEqual(5_000)
  })

  it('works with no options at all', async () => {
    const app = Fastify()
    apps.push(app)
    await app.register(tether)
    app.get('/', async (request) => ({ remaining: request.scope.remaining() }))
    expect((await app.inject('/')).json()).toEqual({ remaining: null })
  })
})

describe('the plugin beside what Fastify users do', () => {
  it("never answers a reply taken over with reply.hijack(): it is the user's, though its scope still ends", async () => {
    const reasons: string[] = []
    let responded = 0
    const { app, logs } = await appWith({ timeout: 50 }, (app) => {
      app.addHook('onResponse', async () => {
        responded++
      })
      app.get('/hijacked', (request, reply) => {
        reply.hijack()
        request.scope.signal.addEventListener('abort', () => {
          reasons.push((request.scope.signal.reason as Error).name)
          // The user answers in their own time, in their own way.
          setTimeout(() => reply.raw.end('mine'), 30)
        })
      })
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const response = await fetch(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/hijacked`)
    expect(response.status).toBe(200)
    expect(await response.text()).toBe('mine')
    expect(reasons).toEqual(['DeadlineExceededError'])
    expect(responded).toBe(1) // once, when the user ended it, as bare Fastify does
    expect(logs.filter((line) => line.level >= 50)).toEqual([])
  })

  it("onRoute hooks registered after the plugin see the route's own handler", async () => {
    const seen: unknown[] = []
    async function handler() {
      return { ok: true }
    }
    const { app } = await appWith({ timeout: 1_000 }, (app) => {
      app.addHook('onRoute', (route) => {
        seen.push(route.handler)
      })
      app.get('/x', handler)
    })
    expect(seen.length).toBeGreaterThan(0) // GET, and the HEAD route Fastify adds
    expect(new Set(seen)).toEqual(new Set([handler]))
    const response = await app.inject('/x')
    expect(response.json()).toEqual({ ok: true })
  })
})
