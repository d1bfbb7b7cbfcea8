import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  all,
  createScope,
  currentScope,
  isCanceled,
  isDeadlineExceeded,
  isShutdown,
  type Scope,
  scopedFetch,
  shutdown,
} from '@tether/core'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { eventually, send } from './support/http.js'

// Whatever a scope aborts with must reach the user's own calls intact. Node's fetch (undici)
// decorates the reason it rejects with (it defines `stack` on it), so a frozen or otherwise
// hostile reason turns into `TypeError: Cannot define property stack` and the guards fail. These
// tests use the real fetch and scopedFetch against a real downstream that never answers, for each
// way a request's scope can end, in both adapters, and check the guard on what the call rejected
// with.

let downstream: http.Server
let slowUrl = ''
let pendingDownstream = 0

beforeAll(async () => {
  // Never answers; counts the requests waiting on it so a test knows the call is out.
  downstream = http.createServer((req) => {
    pendingDownstream++
    req.socket.once('close', () => pendingDownstream--)
  })
  await new Promise<void>((resolve) => downstream.listen(0, '127.0.0.1', resolve))
  slowUrl = `http://127.0.0.1:${(downstream.address() as AddressInfo).port}/slow`
})

afterAll(async () => {
  downstream.closeAllConnections()
  await new Promise((resolve) => downstream.close(resolve))
})

type Client = 'fetch' | 'scopedFetch'
type Outcome = { name: string; canceled: boolean; deadline: boolean; shutdown: boolean; frozen: boolean }

function describeRejection(error: unknown): Outcome {
  return {
    name: (error as Error)?.name,
    canceled: isCanceled(error),
    deadline: isDeadlineExceeded(error),
    shutdown: isShutdown(error),
    frozen: Object.isFrozen(error),
  }
}

/** Starts the call as a handler would, and records how it ends. */
function call(client: Client, scope: Scope, outcomes: Outcome[]): Promise<void> {
  const started = client === 'fetch' ? fetch(slowUrl, { signal: scope.signal }) : scope.run(() => scopedFetch(slowUrl))
  return started.then(
    () => {
      outcomes.push({ name: 'resolved', canceled: false, deadline: false, shutdown: false, frozen: false })
    },
    (error: unknown) => {
      outcomes.push(describeRejection(error))
    },
  )
}

/** A task that starts a call and leaves it behind: the fan-out finishing must stop it. */
function leaveBehind(client: Client, outcomes: Outcome[]) {
  return (signal: AbortSignal) => {
    const started = client === 'fetch' ? fetch(slowUrl, { signal }) : scopedFetch(slowUrl, { signal })
    started.then(
      () => outcomes.push({ name: 'resolved', canceled: false, deadline: false, shutdown: false, frozen: false }),
      (error: unknown) => outcomes.push(describeRejection(error)),
    )
    return 'started'
  }
}

interface App {
  url: string
  server: http.Server
  outcomes: Outcome[]
  stop(): Promise<unknown>
}

// The same routes in both frameworks; `client` picks fetch or scopedFetch.
async function startExpress(client: Client, timeout?: number): Promise<App> {
  const outcomes: Outcome[] = []
  const app = express()
  app.use(tetherExpress({ logger: false, ...(timeout === undefined ? {} : { timeout }) }))
  app.get('/wait', async (req) => {
    await call(client, req.scope, outcomes)
  })
  app.get('/answer-first', (req, res) => {
    void call(client, req.scope, outcomes)
    res.json({ answered: true })
  })
  app.get('/fan-out', async (_req, res) => {
    res.json(await all([leaveBehind(client, outcomes)]))
  })
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    outcomes,
    stop: () => shutdown(server, { grace: 0 }),
  }
}

async function startFastify(client: Client, timeout?: number): Promise<App> {
  const outcomes: Outcome[] = []
  const app = Fastify()
  await app.register(tetherFastify, { logger: false, grace: 0, ...(timeout === undefined ? {} : { timeout }) })
  app.get('/wait', async (request) => {
    await call(client, request.scope, outcomes)
  })
  app.get('/answer-first', async (request) => {
    void call(client, request.scope, outcomes)
    return { answered: true }
  })
  app.get('/fan-out', async () => all([leaveBehind(client, outcomes)]))
  await app.listen({ port: 0, host: '127.0.0.1' })
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    server: app.server,
    outcomes,
    stop: () => app.close(),
  }
}

const adapters = [
  { name: 'express', start: startExpress },
  { name: 'fastify', start: startFastify },
] as const

let running: App | undefined
afterEach(async () => {
  await running?.stop()
  running = undefined
  await eventually(() => pendingDownstream === 0, 5_000, 'the downstream calls to close')
})

describe.each(adapters)('$name: the reason a scope ends with reaches fetch intact', ({ start }) => {
  describe.each(['fetch', 'scopedFetch'] as const)('%s', (client) => {
    it('rejects with CanceledError when the client hangs up', async () => {
      running = await start(client)
      const app = running
      // A real client that gives up once the handler's call is out.
      const request = http.request(`${app.url}/wait`)
      request.on('error', () => undefined)
      request.end()
      await eventually(() => pendingDownstream === 1, 5_000, 'the call to reach the downstream')
      request.destroy()
      await eventually(() => app.outcomes.length === 1, 5_000, 'the call to reject')
      expect(app.outcomes[0]).toEqual({
        name: 'CanceledError',
        canceled: true,
        deadline: false,
        shutdown: false,
        frozen: false,
      })
    })

    it('rejects with CanceledError when the response has finished (background work)', async () => {
      running = await start(client)
      const app = running
      const response = await send(`${app.url}/answer-first`)
      expect(response.status).toBe(200)
      await eventually(() => app.outcomes.length === 1, 5_000, 'the call to reject')
      expect(app.outcomes[0]).toMatchObject({ name: 'CanceledError', canceled: true, shutdown: false, frozen: false })
    })

    it('rejects with DeadlineExceededError at the deadline', async () => {
      running = await start(client, 100)
      const app = running
      const response = await send(`${app.url}/wait`)
      expect(response.status).toBe(504)
      await eventually(() => app.outcomes.length === 1, 5_000, 'the call to reject')
      expect(app.outcomes[0]).toMatchObject({ name: 'DeadlineExceededError', deadline: true, canceled: false })
    })

    it('rejects with CanceledError when the fan-out that started it has finished', async () => {
      running = await start(client)
      const app = running
      const response = await send(`${app.url}/fan-out`)
      expect(response.status).toBe(200)
      await eventually(() => app.outcomes.length === 1, 5_000, 'the left-behind call to reject')
      expect(app.outcomes[0]).toMatchObject({ name: 'CanceledError', canceled: true, frozen: false })
    })

    it('rejects with ShutdownError when the server shuts down', async () => {
      running = await start(client)
      const app = running
      const response = send(`${app.url}/wait`)
      await eventually(() => pendingDownstream === 1, 5_000, 'the call to reach the downstream')
      await app.stop()
      running = undefined
      expect((await response).status).toBe(503)
      await eventually(() => app.outcomes.length === 1, 5_000, 'the call to reject')
      expect(app.outcomes[0]).toMatchObject({ name: 'ShutdownError', shutdown: true, canceled: true })
    })
  })
})

describe('a scope reason survives every consumer that receives it', () => {
  it('reaches timers/promises, events.once, pipeline and throwIfAborted unchanged, unfrozen', async () => {
    for (const end of ['cancel', 'deadline'] as const) {
      const scope = createScope(end === 'deadline' ? { timeout: 20 } : {})
      const signal = scope.signal
      const pending = [
        sleep(60_000, undefined, { signal }),
        once(new EventEmitter(), 'never', { signal }),
        pipeline(new Readable({ read() {} }), new Writable({ write: (_c, _e, cb) => cb() }), { signal }),
      ]
      if (end === 'cancel') scope.cancel()
      const reasons = await Promise.all(
        pending.map((p) =>
          p.then(
            () => undefined,
            (e: unknown) => e,
          ),
        ),
      )
      let thrown: unknown
      try {
        signal.throwIfAborted()
      } catch (error) {
        thrown = error
      }
      for (const reason of [...reasons, thrown]) {
        // pipeline wraps the reason in an AbortError whose cause is the reason.
        const seen = (reason as Error).name === 'AbortError' ? (reason as Error).cause : reason
        expect(seen).toBe(signal.reason)
        expect(Object.isFrozen(seen)).toBe(false)
      }
      expect(end === 'cancel' ? isCanceled(signal.reason) : isDeadlineExceeded(signal.reason)).toBe(true)
      expect(currentScope()).toBeUndefined()
    }
  })
})
