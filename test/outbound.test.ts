import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import {
  createScope,
  createScopedFetch,
  inspect,
  isDeadlineExceeded,
  isPoolOverloaded,
  registerMetrics,
  type ScopedFetch,
} from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { tether } from '@tether/express'
import express from 'express'
import { Registry } from 'prom-client'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { eventually, send } from './support/http.js'

// The outbound side: scopedFetch over the connection pool tether configures, against real servers
// on 127.0.0.1. Connections are counted where they cannot lie: on the server that accepts them.

/** A downstream on 127.0.0.1 that counts the connections it accepts and holds calls on demand. */
interface Downstream {
  url: string
  origin: string
  server: http.Server
  /** Sockets open right now, on the server side. */
  sockets: Set<Socket>
  /** Connections ever accepted. */
  accepted: number
  /** The most sockets open at once. */
  peak: number
  /** Request paths in arrival order. */
  requests: string[]
  /** Calls to /hold waiting to be answered. */
  held: Array<() => void>
  /** Responses the server saw cut before they were finished. */
  cut: number
}

let downstream: Downstream
const servers: http.Server[] = []
const fetches: ScopedFetch[] = []
let baseline: Record<string, number>

/** Counts of the process's handles by type, as Node reports them. */
function handles(): Record<string, number> {
  const byType: Record<string, number> = {}
  for (const type of process.getActiveResourcesInfo()) byType[type] = (byType[type] ?? 0) + 1
  return byType
}

async function listen(server: http.Server): Promise<string> {
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function track(fetch: ScopedFetch): ScopedFetch {
  fetches.push(fetch)
  return fetch
}

/** The origin's entry in inspect().outbound, zeros when it has none. */
function outbound(origin: string) {
  return inspect().outbound.find((entry) => entry.origin === origin) ?? { origin, open: 0, idle: 0, busy: 0, queued: 0 }
}

beforeAll(() => {
  baseline = handles()
})

beforeEach(async () => {
  const state = {
    sockets: new Set<Socket>(),
    accepted: 0,
    peak: 0,
    requests: [] as string[],
    held: [] as Array<() => void>,
    cut: 0,
  }
  const server = http.createServer((req, res) => {
    state.requests.push(req.url ?? '')
    res.on('close', () => {
      if (!res.writableEnded) state.cut++
    })
    if (req.url === '/never') return
    if (req.url === '/hold') {
      state.held.push(() => res.end('held'))
      return
    }
    if (req.url === '/stall-body') {
      // Headers and a first chunk, then silence: only a body timeout or an abort ends it.
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('first chunk\n')
      return
    }
    if (req.url === '/big') {
      // More than the socket buffers hold: the response cannot finish until someone reads it.
      res.end(Buffer.alloc(4 * 1024 * 1024, 'x'))
      return
    }
    res.end('ok')
  })
  server.on('connection', (socket: Socket) => {
    state.accepted++
    state.sockets.add(socket)
    state.peak = Math.max(state.peak, state.sockets.size)
    socket.on('close', () => state.sockets.delete(socket))
  })
  const url = await listen(server)
  downstream = Object.assign(state, { url, origin: url, server })
})

afterEach(async () => {
  await assertNoLingering()
  for (const held of downstream.held.splice(0)) held()
  for (const fetch of fetches.splice(0)) await fetch.dispatcher?.destroy()
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})

afterAll(async () => {
  // Nothing the suite opened is left: no listening server, no socket, in either direction.
  const count = (of: Record<string, number>) => (of.TCPSocketWrap ?? 0) + (of.TCPServerWrap ?? 0)
  await eventually(() => count(handles()) <= count(baseline), 5_000, 'every socket and server of the suite to close')
  expect(inspect().outbound).toEqual([])
})

describe('createScopedFetch: the transport', () => {
  it('never opens more than `connections` sockets to an origin under a burst, and queues the rest', async () => {
    const call = track(createScopedFetch({ connections: 3 }))
    const scope = createScope({ timeout: 20_000 })
    const burst = scope.run(() =>
      Promise.all(Array.from({ length: 30 }, () => call(`${downstream.url}/hold`).then((r) => r.text()))),
    )
    await eventually(() => downstream.held.length === 3, 5_000, 'three calls to reach the downstream')
    await eventually(() => outbound(downstream.origin).queued === 27, 5_000, 'the other calls to queue')
    expect(outbound(downstream.origin)).toEqual({ origin: downstream.origin, open: 3, idle: 0, busy: 3, queued: 27 })
    // Answer the held calls as they arrive until all thirty are done.
    let answered = 0
    while (answered < 30) {
      await eventually(() => downstream.held.length > 0, 5_000, 'the next held call')
      for (const held of downstream.held.splice(0)) {
        held()
        answered++
      }
    }
    expect(await burst).toEqual(Array(30).fill('held'))
    expect(downstream.peak).toBe(3)
    expect(downstream.accepted).toBe(3)
    expect(outbound(downstream.origin)).toMatchObject({ open: 3, idle: 3, busy: 0, queued: 0 })
    scope.cancel()
  })

  it('sheds a call beyond `maxQueue` at once with PoolOverloadedError, and counts it', async () => {
    const call = track(createScopedFetch({ connections: 1, maxQueue: 2 }))
    const shedBefore = inspect().counters.outboundShed
    const scope = createScope({ timeout: 20_000 })
    const accepted = scope.run(() => [1, 2, 3].map(() => call(`${downstream.url}/hold`).then((r) => r.text())))
    await eventually(() => outbound(downstream.origin).queued === 2, 5_000, 'two calls to queue')
    const error = await scope.run(() => call(`${downstream.url}/hold`).catch((e: unknown) => e))
    expect(isPoolOverloaded(error)).toBe(true)
    expect((error as Error).message).toContain(`maxQueue 2`)
    expect((error as Error).message).toContain(downstream.origin)
    expect(inspect().counters.outboundShed).toBe(shedBefore + 1)
    for (let answered = 0; answered < 3; answered++) {
      await eventually(() => downstream.held.length === 1, 5_000, 'the next call')
      downstream.held.shift()?.()
    }
    expect(await Promise.all(accepted)).toEqual(['held', 'held', 'held'])
    expect(downstream.requests).toHaveLength(3)
    scope.cancel()
  })

  it('takes a waiting call out of the queue at once when its caller aborts; it never opens a connection', async () => {
    const call = track(createScopedFetch({ connections: 1 }))
    const scope = createScope({ timeout: 20_000 })
    const first = scope.run(() => call(`${downstream.url}/hold`).then((r) => r.text()))
    await eventually(() => downstream.held.length === 1, 5_000, 'the first call to arrive')

    const caller = new AbortController()
    const waiting = scope.run(() => call(`${downstream.url}/ok`, { signal: caller.signal }))
    const expiring = createScope({ timeout: 150 })
    const timedOut = expiring.run(() => call(`${downstream.url}/ok`))
    await eventually(() => outbound(downstream.origin).queued === 2, 5_000, 'two calls to queue')

    const reason = new Error('user pressed stop')
    caller.abort(reason)
    await expect(waiting).rejects.toBe(reason)
    expect(outbound(downstream.origin).queued).toBe(1)
    const expired = await timedOut.catch((e: unknown) => e)
    expect(isDeadlineExceeded(expired)).toBe(true)
    expect(outbound(downstream.origin).queued).toBe(0)

    downstream.held.shift()?.()
    expect(await first).toBe('held')
    // Only the first call ever reached the downstream, on the only connection ever opened.
    expect(downstream.requests).toEqual(['/hold'])
    expect(downstream.accepted).toBe(1)
    scope.cancel()
  })

  it('closes idle sockets after `keepAliveTimeout`, not before', async () => {
    const keepAliveTimeout = 400
    const call = track(createScopedFetch({ connections: 3, keepAliveTimeout }))
    const scope = createScope()
    const done = scope.run(() => Promise.all([1, 2, 3].map(() => call(`${downstream.url}/hold`).then((r) => r.text()))))
    await eventually(() => downstream.held.length === 3, 5_000, 'three calls to arrive')
    for (const held of downstream.held.splice(0)) held()
    await done
    const idleSince = Date.now()
    expect(outbound(downstream.origin)).toMatchObject({ open: 3, idle: 3, busy: 0 })
    expect(downstream.sockets.size).toBe(3)
    // Generous upper bound: undici checks keep-alive on a coarse timer and the machine is shared;
    // what matters is that the sockets go at all (the server's own keep-alive is 5 s, so a close
    // before that is the client's).
    await eventually(() => downstream.sockets.size === 0, 4_500, 'the idle sockets to close')
    const closedAfter = Date.now() - idleSince
    expect(closedAfter).toBeGreaterThanOrEqual(keepAliveTimeout / 2)
    await eventually(() => outbound(downstream.origin).open === 0, 2_000, 'the pool to forget them')
    scope.cancel()
  })

  it("cuts a slow downstream at the caller's deadline, not at undici's 300 s", async () => {
    const call = track(createScopedFetch())
    const scope = createScope({ timeout: 300 })
    const started = Date.now()
    const error = await scope.run(() => call(`${downstream.url}/never`).catch((e: unknown) => e))
    expect(isDeadlineExceeded(error)).toBe(true)
    // 300 s is undici's default; anything near the 300 ms budget proves the deadline cut it.
    expect(Date.now() - started).toBeLessThan(5_000)
    await eventually(() => downstream.cut === 1, 5_000, 'the downstream to see the call go away')
  })

  it("stops a call made through undici's request() at the caller's deadline: no signal is involved", async () => {
    const call = track(createScopedFetch())
    const dispatcher = call.dispatcher
    if (dispatcher === undefined) throw new Error('a scoped fetch without `fetch` has a dispatcher')
    // undici's request() is given no signal here: the call is bound to the scope by the dispatcher.
    const headersScope = createScope({ timeout: 300 })
    const started = Date.now()
    const headers = await headersScope.run(() =>
      dispatcher.request({ origin: downstream.origin, path: '/never', method: 'GET' }).catch((e: unknown) => e),
    )
    expect(isDeadlineExceeded(headers)).toBe(true)
    expect(Date.now() - started).toBeLessThan(5_000)

    const bodyScope = createScope({ timeout: 300 })
    const body = await bodyScope.run(async () => {
      const response = await dispatcher.request({ origin: downstream.origin, path: '/stall-body', method: 'GET' })
      return response.body.text().catch((e: unknown) => e)
    })
    expect(isDeadlineExceeded(body)).toBe(true)
    await eventually(() => downstream.cut === 2, 5_000, 'the downstream to see both calls go away')
    expect(outbound(downstream.origin)).toMatchObject({ busy: 0, queued: 0 })
  })

  it("rejects with the scope's own reason when the scope ends mid-call, and cuts a body being read", async () => {
    const call = track(createScopedFetch())
    const reason = new Error('caller went away')
    const waiting = createScope({ timeout: 20_000 })
    const pending = waiting.run(() => call(`${downstream.url}/never`))
    await eventually(() => downstream.requests.length === 1, 5_000, 'the call to arrive')
    waiting.cancel(reason)
    await expect(pending).rejects.toBe(reason)

    const reading = createScope({ timeout: 20_000 })
    const response = await reading.run(() => call(`${downstream.url}/stall-body`))
    const body = response.text().catch((e: unknown) => e)
    reading.cancel(reason)
    const error = await body
    expect(error).toBeInstanceOf(TypeError)
    expect((error as Error).cause).toBe(reason)
    await eventually(() => downstream.cut === 2, 5_000, 'the downstream to see both calls go away')
    expect(outbound(downstream.origin)).toMatchObject({ busy: 0, queued: 0 })
  })

  it('applies its own headers timeout outside any scope', async () => {
    const call = track(createScopedFetch({ headersTimeout: 200 }))
    const error = await call(`${downstream.url}/never`).catch((e: unknown) => e)
    expect((error as Error).cause).toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' })
  })

  it('releases the connections of bodies nobody read when their requests end (seed 004)', async () => {
    const call = track(createScopedFetch({ connections: 4 }))
    const app = express()
    app.use(tether({ logger: false }))
    app.get('/proxy', async (_req, res) => {
      const response = await call(`${downstream.url}/big`)
      res.json({ status: response.status }) // the body is never read, as Go code forgets Body.Close()
    })
    const url = await listen(http.createServer(app))
    for (let i = 0; i < 12; i++) expect((await send(`${url}/proxy`)).status).toBe(200)
    // Every call got a socket (none stayed pinned by the body before it), and none is busy now.
    await eventually(() => outbound(downstream.origin).busy === 0, 5_000, 'no socket to stay busy')
    expect(downstream.requests).toHaveLength(12)
    expect(outbound(downstream.origin).queued).toBe(0)
  })

  it('shows its sockets as Prometheus gauges per origin and state', async () => {
    const register = new Registry()
    const metrics = registerMetrics({ register })
    const call = track(createScopedFetch({ connections: 2 }))
    const scope = createScope({ timeout: 20_000 })
    const calls = scope.run(() => [1, 2, 3].map(() => call(`${downstream.url}/hold`).then((r) => r.text())))
    await eventually(() => downstream.held.length === 2, 5_000, 'two calls to reach the downstream')
    await eventually(() => outbound(downstream.origin).queued === 1, 5_000, 'one call to queue')
    const text = await register.metrics()
    expect(text).toContain(`tether_outbound_connections{origin="${downstream.origin}",state="busy"} 2`)
    expect(text).toContain(`tether_outbound_connections{origin="${downstream.origin}",state="open"} 2`)
    expect(text).toContain(`tether_outbound_queued{origin="${downstream.origin}"} 1`)
    expect(text).toMatch(/tether_outbound_shed_total \d+/)
    for (let answered = 0; answered < 3; ) {
      await eventually(() => downstream.held.length > 0, 5_000, 'the next held call')
      for (const held of downstream.held.splice(0)) {
        held()
        answered++
      }
    }
    await Promise.all(calls)
    metrics.unregister()
    scope.cancel()
  })

  it('takes a Request of Node’s own fetch as input', async () => {
    const call = track(createScopedFetch())
    const response = await call(new Request(`${downstream.url}/ok`, { method: 'POST', body: 'hello' }))
    expect(await response.text()).toBe('ok')
  })

  it('validates its transport options when created', () => {
    expect(() => createScopedFetch({ connections: 0 })).toThrow(RangeError)
    expect(() => createScopedFetch({ connections: 0 })).toThrow('`connections`')
    expect(() => createScopedFetch({ connections: Number.POSITIVE_INFINITY })).toThrow(RangeError)
    expect(() => createScopedFetch({ connections: '8' as unknown as number })).toThrow(TypeError)
    expect(() => createScopedFetch({ maxQueue: -1 })).toThrow('`maxQueue`')
    expect(() => createScopedFetch({ keepAliveTimeout: 0 })).toThrow('`keepAliveTimeout`')
    expect(() => createScopedFetch({ headersTimeout: Number.NaN })).toThrow('`headersTimeout`')
    expect(() => createScopedFetch({ bodyTimeout: -5 })).toThrow('`bodyTimeout`')
    expect(() => createScopedFetch({ fetch: globalThis.fetch, connections: 4 })).toThrow(
      /`connections` configures tether's own transport and cannot be combined with `fetch`, received 4/,
    )
    expect(createScopedFetch({ fetch: globalThis.fetch }).dispatcher).toBeUndefined()
  })
})
