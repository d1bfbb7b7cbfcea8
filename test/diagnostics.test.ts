import diagnostics from 'node:diagnostics_channel'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  createPool,
  createScope,
  createScopedFetch,
  currentScope,
  DEADLINE_CHANNEL,
  type DeadlineMessage,
  inspect,
  isCanceled,
  isDeadlineExceeded,
  isPoolOverloaded,
  isShutdown,
  LEAK_CHANNEL,
  LINGERING_CHANNEL,
  REQUEST_END_CHANNEL,
  REQUEST_START_CHANNEL,
  type RequestEndMessage,
  type RequestStartMessage,
  type Scope,
  SHED_CHANNEL,
  type ShedMessage,
  type TaskMessage,
} from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { tether as tetherExpress } from '@tether/express'
import express from 'express'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { eventually, hangUpWhen, inRoute, loopbackServers, send } from './support/http.js'
import { frameworks, type TestServer } from './support/servers.js'

// Lifecycle events on node:diagnostics_channel, seen by real subscribers, from real servers.

type Event =
  | { channel: 'start'; message: RequestStartMessage }
  | { channel: 'end'; message: RequestEndMessage }
  | { channel: 'deadline'; message: DeadlineMessage }
  | { channel: 'shed'; message: ShedMessage }
  | { channel: 'lingering'; message: TaskMessage }
  | { channel: 'leak'; message: TaskMessage }

const CHANNELS = {
  start: REQUEST_START_CHANNEL,
  end: REQUEST_END_CHANNEL,
  deadline: DEADLINE_CHANNEL,
  shed: SHED_CHANNEL,
  lingering: LINGERING_CHANNEL,
  leak: LEAK_CHANNEL,
} as const

/** Subscribes to every channel; events arrive in one ordered list. */
function subscribeAll(): { events: Event[]; stop(): void } {
  const events: Event[] = []
  const handlers = Object.entries(CHANNELS).map(([channel, name]) => {
    const handler = (message: unknown) => events.push({ channel, message } as Event)
    diagnostics.subscribe(name, handler)
    return () => diagnostics.unsubscribe(name, handler)
  })
  return {
    events,
    stop: () => {
      for (const unsubscribe of handlers) unsubscribe()
    },
  }
}

const cleanups: Array<() => unknown> = []
const servers = loopbackServers()
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  await servers.closeAll()
})

function subscribed() {
  const subscription = subscribeAll()
  cleanups.push(() => subscription.stop())
  return subscription.events
}

async function started(framework: (typeof frameworks)[number], options: Parameters<typeof framework.start>[0]) {
  const server: TestServer = await framework.start(options)
  cleanups.push(() => server.close())
  return server
}

type MessageOf<C extends Event['channel']> = Extract<Event, { channel: C }>['message']

/** The messages one channel published, in order. */
const ofChannel = <C extends Event['channel']>(events: Event[], channel: C): Array<MessageOf<C>> =>
  events.filter((event) => event.channel === channel).map((event) => event.message as MessageOf<C>)

describe.each(frameworks)('$name: a request scope on the diagnostics channels', (framework) => {
  it('publishes its start, then its end as `finished`, with the route and the same scope', async () => {
    const events = subscribed()
    const server = await started(framework, { timeout: 5_000 })
    const before = Date.now()
    expect((await send(`${server.url}/fast`)).status).toBe(200)
    await eventually(() => ofChannel(events, 'end').length === 1, 2_000, 'the end event')
    const [start] = ofChannel(events, 'start')
    const [end] = ofChannel(events, 'end')
    expect(events.map((event) => event.channel)).toEqual(['start', 'end'])
    expect(start?.method).toBe('GET')
    expect(start?.deadline).toBeGreaterThanOrEqual(before + 5_000)
    expect(start?.request.url).toBe('/fast')
    expect(typeof start?.response.setHeader).toBe('function')
    expect(end).toEqual({
      scope: start?.scope,
      method: 'GET',
      route: '/fast',
      reason: 'finished',
      error: undefined,
      durationMs: expect.any(Number),
    })
  })

  it('publishes the deadline, then the end as `deadline` with the DeadlineExceededError the signal aborted with', async () => {
    const events = subscribed()
    const server = await started(framework, { timeout: 100, status: 504 })
    expect((await send(`${server.url}/hang`)).status).toBe(504)
    await eventually(() => ofChannel(events, 'end').length === 1, 2_000, 'the end event')
    expect(events.map((event) => event.channel)).toEqual(['start', 'deadline', 'end'])
    const [start] = ofChannel(events, 'start')
    const scope = start?.scope as Scope
    const [deadline] = ofChannel(events, 'deadline')
    expect(deadline).toEqual({ scope, deadline: start?.deadline, requestScope: scope })
    const [end] = ofChannel(events, 'end')
    expect(end?.reason).toBe('deadline')
    expect(end?.route).toBe('/hang')
    expect(isDeadlineExceeded(end?.error)).toBe(true)
    expect(end?.error).toBe(scope.signal.reason)
    expect(end?.durationMs).toBeGreaterThanOrEqual(95)
  })

  it('publishes a client hang-up as `hang-up`, a cancellation (CanceledError)', async () => {
    const events = subscribed()
    const server = await started(framework, { timeout: 5_000 })
    await hangUpWhen(`${server.url}/hang`, inRoute('/hang'), 'the request to reach /hang')
    await eventually(() => ofChannel(events, 'end').length === 1, 2_000, 'the end event')
    const [end] = ofChannel(events, 'end')
    expect(end?.reason).toBe('hang-up')
    expect(isCanceled(end?.error)).toBe(true)
    expect(isDeadlineExceeded(end?.error)).toBe(false)
  })

  it('publishes a request aborted by shutdown as `shutdown`', async () => {
    const events = subscribed()
    const server = await framework.start({ timeout: 5_000, grace: 50 })
    const pending = send(`${server.url}/hang`).catch(() => undefined)
    await eventually(() => ofChannel(events, 'start').length === 1, 2_000, 'the start event')
    await server.shutdown()
    await pending
    const [end] = ofChannel(events, 'end')
    expect(end?.reason).toBe('shutdown')
    expect(isShutdown(end?.error)).toBe(true)
  })
})

describe('the diagnostics channels, Express', () => {
  async function app(setup: (app: express.Express) => void, options = {}): Promise<string> {
    const application = express()
    application.use(tetherExpress({ logger: false, timeout: 5_000, ...options }))
    setup(application)
    return servers.listen(http.createServer(application))
  }

  it('publishes a scope the application cancels itself as `canceled`', async () => {
    const events = subscribed()
    const url = await app((application) =>
      application.get('/cancel', (req, res) => {
        req.scope.cancel()
        res.json({ ok: true })
      }),
    )
    expect((await send(`${url}/cancel`)).status).toBe(200)
    await eventually(() => ofChannel(events, 'end').length === 1, 2_000, 'the end event')
    expect(ofChannel(events, 'end')[0]).toMatchObject({ reason: 'canceled', route: '/cancel' })
    expect(ofChannel(events, 'end')).toHaveLength(1) // finishing the response later adds nothing
  })

  it('publishes a hang-up as `hang-up` even when an abort listener then ends the response', async () => {
    const events = subscribed()
    const url = await app((application) =>
      application.get('/listen', (req, res) => {
        req.scope.signal.addEventListener('abort', () => res.end('stopped'), { once: true })
      }),
    )
    await hangUpWhen(`${url}/listen`, inRoute('/listen'), 'the request to reach /listen')
    await eventually(() => ofChannel(events, 'end').length === 1, 2_000, 'the end event')
    expect(ofChannel(events, 'end')[0]).toMatchObject({ reason: 'hang-up', route: '/listen' })
  })

  it("publishes a child scope's own deadline with the request it belongs to, and a scope outside any request without one", async () => {
    const events = subscribed()
    const url = await app((application) =>
      application.get('/child', async (req, res) => {
        const child = req.scope.child({ timeout: 30 })
        await sleep(80)
        res.json({ aborted: child.signal.aborted })
      }),
    )
    expect(JSON.parse((await send(`${url}/child`)).body)).toEqual({ aborted: true })
    await eventually(() => ofChannel(events, 'end').length === 1, 2_000, 'the end event')
    const [start] = ofChannel(events, 'start')
    const [deadline] = ofChannel(events, 'deadline')
    expect(deadline?.scope).not.toBe(start?.scope)
    expect(deadline?.requestScope).toBe(start?.scope)
    expect(ofChannel(events, 'end')[0]?.reason).toBe('finished') // the request itself met its deadline

    const alone = createScope({ timeout: 10 })
    await eventually(() => ofChannel(events, 'deadline').length === 2, 2_000, 'the second deadline')
    expect(ofChannel(events, 'deadline')[1]).toEqual({
      scope: alone,
      deadline: alone.deadline,
      requestScope: undefined,
    })
  })

  it("publishes a pool's shed with the caller's scope and its request's", async () => {
    const events = subscribed()
    const pool = createPool({ concurrency: 1, maxQueue: 0 })
    let release = () => {}
    const url = await app((application) =>
      application.get('/pool', async (_req, res) => {
        const outcome = await pool
          .run(() => new Promise<void>((resolve) => (release = resolve)))
          .then(
            () => 'ran',
            (error: unknown) => (isPoolOverloaded(error) ? 'shed' : 'failed'),
          )
        res.json({ outcome, scope: currentScope() !== undefined })
      }),
    )
    const first = send(`${url}/pool`)
    await eventually(() => pool.active === 1, 2_000, 'the first task')
    expect(JSON.parse((await send(`${url}/pool`)).body)).toEqual({ outcome: 'shed', scope: true })
    release()
    await first
    const starts = ofChannel(events, 'start')
    const [shed] = ofChannel(events, 'shed')
    expect(shed?.source).toBe('pool')
    expect(isPoolOverloaded(shed?.error)).toBe(true)
    expect(shed?.scope).toBe(starts[1]?.scope)
    expect(shed?.requestScope).toBe(starts[1]?.scope)
  })

  it("publishes an outbound queue's shed with the origin", async () => {
    const events = subscribed()
    let arrived = 0
    const downstream = http.createServer(() => {
      arrived++ // and never answers
    })
    const downstreamUrl = await servers.listen(downstream)
    const call = createScopedFetch({ connections: 1, maxQueue: 0 })
    cleanups.push(() => call.close())
    const scope = createScope({ timeout: 5_000 })
    cleanups.push(() => scope.cancel())
    const held = scope.run(() => call(`${downstreamUrl}/hold`).catch((e: unknown) => e))
    await eventually(() => arrived === 1, 2_000, 'the held call')
    const error = await scope.run(() => call(`${downstreamUrl}/more`).catch((e: unknown) => e))
    expect(isPoolOverloaded(error)).toBe(true)
    expect(ofChannel(events, 'shed')).toEqual([
      {
        source: 'outbound',
        error,
        scope,
        requestScope: undefined,
        origin: `http://127.0.0.1:${(downstream.address() as AddressInfo).port}`,
      },
    ])
    scope.cancel()
    await held
  })

  it('publishes a task pending past its request as lingering, then as leaked, with the request it outlived', async () => {
    const events = subscribed()
    let finish = () => {}
    const url = await app(
      (application) =>
        application.get('/linger', (req, res) => {
          void req.scope.track(new Promise<void>((resolve) => (finish = resolve)))
          res.json({ ok: true })
        }),
      { leakAfter: 50 },
    )
    expect((await send(`${url}/linger`)).status).toBe(200)
    await eventually(() => ofChannel(events, 'leak').length === 1, 3_000, 'the leak event')
    const [start] = ofChannel(events, 'start')
    const [lingering] = ofChannel(events, 'lingering')
    const [leak] = ofChannel(events, 'leak')
    expect(events.map((event) => event.channel)).toEqual(['start', 'end', 'lingering', 'leak'])
    expect(lingering).toMatchObject({
      kind: 'track',
      tasks: 1,
      method: 'GET',
      route: '/linger',
      requestScope: start?.scope,
    })
    expect(leak).toMatchObject({ kind: 'track', route: '/linger', requestScope: start?.scope })
    expect(leak?.pastEndMs).toBeGreaterThanOrEqual(50)
    finish()
    await assertNoLingering()
  })

  it('publishes nothing, and builds no message, while nobody subscribes', async () => {
    // Every publish is guarded by `hasSubscribers`: with no subscriber, `publish` is never reached.
    const publishes = Object.values(CHANNELS).map((name) => vi.spyOn(diagnostics.channel(name), 'publish'))
    cleanups.push(() => {
      for (const spy of publishes) spy.mockRestore()
    })
    const pool = createPool({ concurrency: 1, maxQueue: 0 })
    const url = await app(
      (application) => {
        application.get('/work', async (req, res) => {
          void req.scope.track(sleep(30))
          req.scope.child({ timeout: 1 })
          const shed = await Promise.all([pool.run(() => sleep(5)), pool.run(() => sleep(5))]).catch(() => 'shed')
          res.json({ shed })
        })
        application.get('/hang', () => {})
      },
      { timeout: 100 },
    )
    for (const name of Object.values(CHANNELS)) expect(diagnostics.hasSubscribers(name)).toBe(false)
    expect(JSON.parse((await send(`${url}/work`)).body)).toEqual({ shed: 'shed' })
    expect((await send(`${url}/hang`)).status).toBeGreaterThanOrEqual(500)
    await sleep(50)
    expect(inspect().counters.lingering).toBeGreaterThan(0)
    for (const spy of publishes) expect(spy).not.toHaveBeenCalled()
    await assertNoLingering()
  })
})
