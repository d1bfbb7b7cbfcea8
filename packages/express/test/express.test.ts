import http from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  all,
  createPool,
  createScope,
  currentScope,
  inspect,
  isCanceled,
  isDeadlineExceeded,
  TaskGroup,
} from '@tether/core'
import express, { type Express, type Request, type Response } from 'express'
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { type TetherExpressOptions, tether, timeout } from '../src/index.js'

function appWith(options: TetherExpressOptions | undefined, routes: (app: Express) => void): Express {
  const app = express()
  app.use(tether({ logger: false, ...options }))
  routes(app)
  return app
}

/** Waits until the counter named moves by `by` (late writes land after the response). */
async function counterMoved(name: keyof ReturnType<typeof inspect>['counters'], from: number, by = 1) {
  for (let i = 0; i < 100 && inspect().counters[name] < from + by; i++) await sleep(10)
  return inspect().counters[name] - from
}

describe('tether() for Express', () => {
  it('sets req.scope and runs the rest of the chain inside it, across awaits', async () => {
    const app = appWith(undefined, (app) => {
      app.use((req, _res, next) => {
        ;(req as { seenInMiddleware?: unknown }).seenInMiddleware = currentScope() === req.scope
        next()
      })
      app.get('/', async (req, res) => {
        await sleep(1)
        res.json({
          middleware: (req as { seenInMiddleware?: unknown }).seenInMiddleware,
          handler: currentScope() === req.scope,
          deadline: req.scope.deadline ?? null,
        })
      })
    })
    const response = await request(app).get('/').expect(200)
    expect(response.body).toEqual({ middleware: true, handler: true, deadline: null })
  })

  it('binds all(), TaskGroup and pools in handlers to the request without being passed a signal', async () => {
    const pool = createPool({ concurrency: 2 })
    const app = appWith(undefined, (app) => {
      app.get('/', async (req, res) => {
        const [a] = await all([async (signal) => signal.aborted])
        const group = new TaskGroup()
        let groupAborted: boolean | undefined
        group.go(async (signal) => {
          groupAborted = signal.aborted
        })
        await group.wait()
        const poolSignal = await pool.run((signal) => signal)
        res.json({ a, groupAborted, poolUsesRequestSignal: poolSignal === req.scope.signal })
      })
    })
    const response = await request(app).get('/').expect(200)
    expect(response.body).toEqual({ a: false, groupAborted: false, poolUsesRequestSignal: true })
  })

  it('answers 504 with a short JSON body and no Retry-After at the deadline, and aborts the work with DeadlineExceededError', async () => {
    let reason: unknown
    const app = appWith({ timeout: 60 }, (app) => {
      app.get('/', async (_req, res) => {
        await all([(signal) => sleep(5_000, undefined, { signal })]).catch((error: unknown) => {
          reason = error
        })
        if (!res.headersSent) res.json({ late: true })
      })
    })
    const started = Date.now()
    const response = await request(app)
      .get('/')
      .expect(504)
      .expect('content-type', /application\/json/)
    const elapsed = Date.now() - started
    expect(response.body).toEqual({
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
    const app = appWith({ timeout: 20, status: 503 }, (app) => {
      app.get('/', (_req, _res) => undefined)
    })
    const response = await request(app).get('/').expect(503)
    expect(response.body.statusCode).toBe(503)
    expect(response.body.error).toBe('Service Unavailable')
    // A deadline's answer, whatever its status: no Retry-After (that is for shed and shutdown).
    expect(response.headers['retry-after']).toBeUndefined()
  })

  it('swallows and counts what the handler writes after the deadline', async () => {
    const before = inspect().counters.lateWrites
    const app = appWith({ timeout: 30 }, (app) => {
      app.get('/', async (_req, res) => {
        await sleep(80) // ignores the signal
        res.status(200).json({ tooLate: true })
      })
    })
    const response = await request(app).get('/').expect(504)
    expect(response.body.code).toBe('TETHER_DEADLINE_EXCEEDED')
    expect(await counterMoved('lateWrites', before)).toBe(1)
  })

  it('ends the scope with a CanceledError once the response is finished, so leftover work is told to stop', async () => {
    let after: { aborted: boolean; reason: unknown } | undefined
    const app = appWith(undefined, (app) => {
      app.get('/', (req, res) => {
        const { signal } = req.scope
        signal.addEventListener('abort', () => {
          after = { aborted: signal.aborted, reason: signal.reason }
        })
        res.json({ done: true })
      })
    })
    await request(app).get('/').expect(200)
    await sleep(5)
    expect(after?.aborted).toBe(true)
    expect(isCanceled(after?.reason)).toBe(true)
    expect((after?.reason as Error | undefined)?.message).toBe('response finished')
  })

  it('leaves nothing in flight and no timer behind once requests are done', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length
    const app = appWith({ timeout: 10_000 }, (app) => {
      app.get('/', (_req, res) => res.json({ ok: true }))
    })
    const agent = request(app)
    await agent.get('/').expect(200)
    const baseline = timers()
    for (let i = 0; i < 20; i++) await agent.get('/').expect(200)
    expect(timers()).toBeLessThanOrEqual(baseline)
    expect(inspect().inflight).toEqual([])
  })
})

describe('req.scope', () => {
  it('is read from the response the request is bound to, not set on each request, and still reads the scope once the response has closed', async () => {
    let seen: Request | undefined
    const app = appWith(undefined, (app) => {
      app.get('/', (req, res) => {
        seen = req
        res.json({ own: Object.hasOwn(req, 'scope'), listed: Object.keys(req).includes('scope') })
      })
    })
    const response = await request(app).get('/').expect(200)
    expect(response.body).toEqual({ own: false, listed: false })
    const scope = seen?.scope
    for (let i = 0; i < 100 && scope?.signal.aborted !== true; i++) await sleep(10)
    expect(scope?.signal.aborted).toBe(true)
    expect(isCanceled(scope?.signal.reason)).toBe(true)
    expect(seen?.scope).toBe(scope)
  })

  it('is the same in a sub-app without tether() of its own, and undefined in an app without tether()', async () => {
    const sub = express()
    sub.get('/x', (req, res) => {
      res.json({ bound: req.scope !== undefined, same: currentScope() === req.scope })
    })
    const app = appWith(undefined, (app) => {
      app.use('/sub', sub)
    })
    expect((await request(app).get('/sub/x').expect(200)).body).toEqual({ bound: true, same: true })
    const plain = express()
    plain.get('/', (req, res) => {
      res.json({ bound: req.scope !== undefined })
    })
    expect((await request(plain).get('/').expect(200)).body).toEqual({ bound: false })
  })

  it('can be assigned, for that request only', async () => {
    const replacement = createScope()
    const app = appWith(undefined, (app) => {
      app.get('/replaced', (req, res) => {
        req.scope = replacement
        res.json({ replaced: req.scope === replacement, own: Object.hasOwn(req, 'scope') })
      })
      app.get('/', (req, res) => {
        res.json({ replaced: req.scope === replacement, same: currentScope() === req.scope })
      })
    })
    expect((await request(app).get('/replaced').expect(200)).body).toEqual({ replaced: true, own: true })
    expect((await request(app).get('/').expect(200)).body).toEqual({ replaced: false, same: true })
    replacement.cancel()
  })

  it('is set on a request Express did not make (the middleware called from node:http)', async () => {
    const middleware = tether({ logger: false })
    const server = http.createServer((req, res) => {
      middleware(req as Request, res as Response, () => {
        const scope = (req as Request).scope
        res.end(JSON.stringify({ own: Object.hasOwn(req, 'scope'), same: currentScope() === scope }))
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = server.address() as AddressInfo
      const response = await fetch(`http://127.0.0.1:${port}/`)
      expect(await response.json()).toEqual({ own: true, same: true })
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('the deadline header', () => {
  const app = () =>
    appWith({ timeout: 2_000 }, (app) => {
      app.get('/', (req, res) => {
        res.json({ remaining: req.scope.remaining() })
      })
      app.get('/wait', (_req, _res) => undefined) // never answers: only the deadline does
    })

  it("tightens the deadline to the caller's remaining budget", async () => {
    const started = Date.now()
    await request(app()).get('/wait').set('x-request-timeout-ms', '40').expect(504)
    expect(Date.now() - started).toBeLessThan(1_000)
    const response = await request(app()).get('/').set('x-request-timeout-ms', '500').expect(200)
    expect(response.body.remaining).toBeLessThanOrEqual(500)
    expect(response.body.remaining).toBeGreaterThan(0)
  })

  it("never loosens the server's own timeout", async () => {
    const response = await request(app()).get('/').set('x-request-timeout-ms', '999999').expect(200)
    expect(response.body.remaining).toBeLessThanOrEqual(2_000)
  })

  it('answers a budget of 0 at once', async () => {
    await request(app()).get('/wait').set('x-request-timeout-ms', '0').expect(504)
  })

  // Unicode digits travel as UTF-8 bytes, which the server reads as latin1: send those bytes.
  const wire = (text: string) => Buffer.from(text, 'utf8').toString('latin1')
  const malformed = [
    '',
    '-5',
    '1.5',
    '1e3',
    '0x10',
    '+100',
    'abc',
    wire('１００'),
    wire('١٠٠'),
    '100ms',
    '12345678901',
    '100, 200',
  ]
  it.each(malformed)('ignores and counts the malformed value %j', async (value) => {
    const before = inspect().counters.ignoredDeadlineHeaders
    const response = await request(app()).get('/').set('x-request-timeout-ms', value).expect(200)
    expect(response.body.remaining).toBeGreaterThan(1_000)
    expect(inspect().counters.ignoredDeadlineHeaders).toBe(before + 1)
  })

  it('reads another header name, and grpc-timeout in its own format', async () => {
    const custom = appWith({ timeout: 2_000, deadlineHeader: 'x-budget' }, (app) => {
      app.get('/', (req, res) => res.json({ remaining: req.scope.remaining() }))
    })
    const response = await request(custom).get('/').set('x-budget', '300').expect(200)
    expect(response.body.remaining).toBeLessThanOrEqual(300)

    const grpc = appWith({ timeout: 2_000, deadlineHeader: 'grpc-timeout' }, (app) => {
      app.get('/', (req, res) => res.json({ remaining: req.scope.remaining() }))
    })
    const fromGrpc = await request(grpc).get('/').set('grpc-timeout', '1S').expect(200)
    expect(fromGrpc.body.remaining).toBeLessThanOrEqual(1_000)
    expect(fromGrpc.body.remaining).toBeGreaterThan(500)
  })

  it('is ignored when deadlineHeader is false', async () => {
    const before = inspect().counters.ignoredDeadlineHeaders
    const off = appWith({ timeout: 2_000, deadlineHeader: false }, (app) => {
      app.get('/', (req, res) => res.json({ remaining: req.scope.remaining() }))
    })
    const response = await request(off).get('/').set('x-request-timeout-ms', '10').expect(200)
    expect(response.body.remaining).toBeGreaterThan(1_000)
    await request(off).get('/').set('x-request-timeout-ms', 'junk').expect(200)
    expect(inspect().counters.ignoredDeadlineHeaders).toBe(before)
  })
})

describe('timeout(ms)', () => {
  it("tightens the route's deadline", async () => {
    const app = appWith({ timeout: 5_000 }, (app) => {
      app.get('/quick', timeout(40), (_req, _res) => undefined)
      app.get('/remaining', timeout(300), (req, res) => res.json({ remaining: req.scope.remaining() }))
    })
    const started = Date.now()
    await request(app).get('/quick').expect(504)
    expect(Date.now() - started).toBeLessThan(1_000)
    const response = await request(app).get('/remaining').expect(200)
    expect(response.body.remaining).toBeLessThanOrEqual(300)
  })

  it('never loosens the deadline', async () => {
    const app = appWith({ timeout: 200 }, (app) => {
      app.get('/', timeout(60_000), (req, res) => res.json({ remaining: req.scope.remaining() }))
    })
    const response = await request(app).get('/').expect(200)
    expect(response.body.remaining).toBeLessThanOrEqual(200)
  })

  it('fails the request with a clear error without tether() before it', async () => {
    const app = express()
    app.get('/', timeout(100), (_req, res) => res.send('unreachable'))
    app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(500).json({ message: error.message })
    })
    const response = await request(app).get('/').expect(500)
    expect(response.body.message).toMatch(/needs the tether\(\) middleware/)
  })

  it('rejects an invalid ms at once', () => {
    expect(() => timeout(0)).toThrow(RangeError)
    expect(() => timeout(-5)).toThrow(/`ms`.*-5/)
    expect(() => timeout(Number.NaN)).toThrow(RangeError)
    expect(() => timeout('100' as never)).toThrow(TypeError)
  })
})

describe('options are validated when the middleware is created', () => {
  const cases: Array<[string, unknown, ErrorConstructor, RegExp]> = [
    ['a negative timeout', { timeout: -1 }, RangeError, /`timeout`.*-1/],
    ['a zero timeout', { timeout: 0 }, RangeError, /`timeout`.*0/],
    ['a string timeout', { timeout: '5000' }, TypeError, /`timeout`.*'5000'/],
    ['an infinite timeout', { timeout: Number.POSITIVE_INFINITY }, RangeError, /`timeout`/],
    ['a status that is not 5xx', { status: 200 }, RangeError, /`status`.*200/],
    ['a string status', { status: '503' }, TypeError, /`status`.*'503'/],
    ['a header name with spaces', { deadlineHeader: 'x budget' }, TypeError, /`deadlineHeader`.*'x budget'/],
    ['an uppercase header name', { deadlineHeader: 'X-Budget' }, TypeError, /`deadlineHeader`/],
    ['a numeric header name', { deadlineHeader: 5 }, TypeError, /`deadlineHeader`.*5/],
    ['a header named like an Object property', { deadlineHeader: 'constructor' }, TypeError, /`deadlineHeader`/],
    ['trusted headers given as one string', { trustHeaders: 'x-budget' }, TypeError, /`trustHeaders`.*'x-budget'/],
    [
      'an uppercase trusted header',
      { trustHeaders: ['x-budget', 'X-Budget'] },
      TypeError,
      /`trustHeaders\[1\]`.*'X-Budget'/,
    ],
    [
      'a trusted header named like an Object property',
      { trustHeaders: ['toString'] },
      TypeError,
      /`trustHeaders\[0\]`/,
    ],
    ['trustHeaders: true', { trustHeaders: true }, TypeError, /`trustHeaders`.*true/],
    ['a propagated header with spaces', { propagateHeader: 'x budget' }, TypeError, /`propagateHeader`.*'x budget'/],
    ['a numeric propagated header', { propagateHeader: 5 }, TypeError, /`propagateHeader`.*5/],
    ['a misspelt trustHeaders', { trustedHeaders: [] }, TypeError, /`trustedHeaders`.*did you mean `trustHeaders`/],
    ['a NaN leakAfter', { leakAfter: Number.NaN }, RangeError, /`leakAfter`/],
    ['a string captureStacks', { captureStacks: 'yes' }, TypeError, /`captureStacks`.*'yes'/],
    ['a logger without warn()', { logger: {} }, TypeError, /`logger`/],
    ['options that are not an object', 'fast', TypeError, /options object.*'fast'/],
  ]
  it.each(cases)('throws for %s', (_name, options, type, message) => {
    expect(() => tether(options as never)).toThrow(type)
    expect(() => tether(options as never)).toThrow(message)
  })

  it('works with no options at all', async () => {
    const app = express()
    app.use(tether())
    app.get('/', (req, res) => res.json({ remaining: req.scope.remaining() }))
    const response = await request(app).get('/').expect(200)
    expect(response.body.remaining).toBeNull() // Infinity serialises as null: no deadline
  })
})

describe('tether() attached twice to one request', () => {
  it.each([
    [
      'a sub-app with its own tether()',
      (app: Express) => {
        const sub = express()
        sub.use(tether({ logger: false, timeout: 5_000 }))
        sub.get('/x', (req, res) => {
          res.json({ deadline: req.scope.deadline, same: currentScope() === req.scope })
        })
        app.use('/sub', sub)
      },
      '/sub/x',
    ],
    [
      'router.use(tether())',
      (app: Express) => {
        const router = express.Router()
        router.use(tether({ logger: false, timeout: 5_000 }))
        router.get('/x', (req, res) => {
          res.json({ deadline: req.scope.deadline, same: currentScope() === req.scope })
        })
        app.use('/router', router)
      },
      '/router/x',
    ],
    [
      'tether() mounted twice',
      (app: Express) => {
        app.use(tether({ logger: false, timeout: 5_000 }))
        app.get('/x', (req, res) => {
          res.json({ deadline: req.scope.deadline, same: currentScope() === req.scope })
        })
      },
      '/x',
    ],
  ] as const)(
    '%s: joins the first binding, tightens its deadline, and leaves nothing behind',
    async (_case, mount, path) => {
      const before = inspect().counters.requests
      const app = express()
      let outer: number | undefined
      app.use(tether({ logger: false }))
      app.use((req, _res, next) => {
        outer = req.scope.deadline
        next()
      })
      mount(app)
      for (let i = 0; i < 20; i++) {
        const response = await request(app).get(path).expect(200)
        expect(outer).toBeUndefined() // the outer binding had no deadline...
        expect(response.body.deadline).toBeGreaterThan(Date.now()) // ...the inner one tightened it
        expect(response.body.same).toBe(true)
      }
      expect(inspect().counters.requests - before).toBe(20) // one request each, not two
      for (let i = 0; i < 100 && inspect().inflight.length > 0; i++) await sleep(10)
      expect(inspect().inflight).toEqual([])
    },
  )

  it('a second binding never loosens the first one', async () => {
    const app = express()
    app.use(tether({ logger: false, timeout: 50 }))
    app.use(tether({ logger: false, timeout: 10_000 }))
    app.get('/wait', async (req, res) => {
      await sleep(5_000, undefined, { signal: req.scope.signal }).catch(() => undefined)
      res.json({ late: true })
    })
    const response = await request(app).get('/wait').expect(504)
    expect(response.body.code).toBe('TETHER_DEADLINE_EXCEEDED')
  })
})

describe('tether() on an Express 4 app', () => {
  it('refuses every request with a clear error instead of crashing at the first deadline', async () => {
    // A real Express 4, installed beside Express 5 under another name.
    const express4 = createRequire(import.meta.url)('express4') as () => Express
    const app = express4()
    app.use(tether({ logger: false, timeout: 20 }))
    app.get('/slow', async (_req, res) => {
      await sleep(100)
      res.json({ late: true })
    })
    const errors: unknown[] = []
    app.use((error: Error & { code?: string }, _req: unknown, res: Response, _next: unknown) => {
      errors.push(error.code)
      res.status(500).json({ message: error.message })
    })
    for (let i = 0; i < 2; i++) {
      const response = await request(app).get('/slow').expect(500)
      expect(response.body.message).toMatch(/@tether\/express needs Express 5: this app runs Express 4/)
    }
    expect(errors).toEqual(['TETHER_UNSUPPORTED_EXPRESS', 'TETHER_UNSUPPORTED_EXPRESS'])
  })
})
