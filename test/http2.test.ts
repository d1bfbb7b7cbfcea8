import http2 from 'node:http2'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createTether, hardenServer, inspect, shutdown } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { connect, eventually } from './support/http.js'
import {
  destroyClients,
  type H2TestServer,
  openSession,
  request,
  startCore,
  startFastify,
  tls,
} from './support/http2.js'

// HTTP/2 end to end: Node's http2 client against the core on node:http2 and Fastify with
// `http2: true`, over h2c and TLS, on 127.0.0.1. As in the HTTP/1.1 suites, bounds are one-sided
// and generous (a busy CI machine), and the order of what happens is what is checked.

afterEach(() => assertNoLingering())

const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_NO_ERROR, NGHTTP2_CANCEL } = http2.constants
const GRACE = 500
const BOUND = 1_000 + 700 // shutdown's flush bound after the grace period, plus slack for a busy machine

let running: H2TestServer | undefined
afterEach(async () => {
  destroyClients()
  await running?.close().catch(() => undefined)
  running = undefined
})

const variants = [
  { name: 'core on node:http2, h2c', start: (o: object) => startCore({ secure: false, ...o }) },
  { name: 'core on node:http2, TLS', start: (o: object) => startCore({ secure: true, ...o }) },
  { name: 'Fastify http2: true, h2c', start: (o: object) => startFastify({ secure: false, ...o }) },
  { name: 'Fastify http2: true, TLS', start: (o: object) => startFastify({ secure: true, ...o }) },
]

describe.each(variants)('$name: graceful shutdown', (variant) => {
  it('sends GOAWAY to every session at once, lets in-flight streams finish, answers the rest 503 with ShutdownError, and counts streams', async () => {
    running = await variant.start({ grace: GRACE })
    const busy = running.connect()
    const idle = running.connect()
    await request(idle, '/fast')
    const quick = Array.from({ length: 3 }, () => request(busy, '/finish?ms=150'))
    const stuck = Array.from({ length: 2 }, () => request(busy, '/hang'))
    await eventually(() => inspect().inflight.length >= 5, 2_000, 'streams in flight')
    const goaways: number[] = []
    for (const session of [busy, idle]) session.once('goaway', () => goaways.push(Date.now()))
    const before = inspect().counters

    const started = Date.now()
    const report = await running.shutdown()
    const took = Date.now() - started

    for (const response of await Promise.all(quick)) expect(response.status).toBe(200)
    for (const response of await Promise.all(stuck)) {
      expect(response.status).toBe(503)
      expect(JSON.parse(response.body).code).toBe('TETHER_SHUTDOWN')
      expect(response.headers.connection).toBeUndefined()
    }
    // Both sessions were told at once, long before the grace period ran out.
    expect(goaways).toHaveLength(2)
    for (const at of goaways) expect(at - started).toBeLessThan(GRACE)
    expect(running.events.filter((event) => event === 'hang: server is shutting down')).toHaveLength(2)
    expect(report).toMatchObject({ finished: 3, aborted: 2, idleClosed: 1 })
    const after = inspect().counters
    expect(after.abortedByShutdown - before.abortedByShutdown).toBe(2)
    expect(after.clientClosed - before.clientClosed).toBe(0)
    expect(took).toBeGreaterThanOrEqual(GRACE - 10)
    expect(took).toBeLessThan(GRACE + BOUND)
    await eventually(() => busy.closed && idle.closed, 2_000, 'sessions closed')
    expect(inspect().inflight).toHaveLength(0)
  })

  it('returns as soon as in-flight streams are done, well before the grace period', async () => {
    running = await variant.start({ grace: 10_000 })
    const session = running.connect()
    const quick = request(session, '/finish?ms=100')
    await eventually(() => inspect().inflight.length >= 1, 2_000, 'a stream in flight')
    const started = Date.now()
    const report = await running.shutdown()
    expect(Date.now() - started).toBeLessThan(3_000)
    expect((await quick).status).toBe(200)
    expect(report).toMatchObject({ finished: 1, aborted: 0 })
  })

  it('refuses a stream opened after shutdown began with REFUSED_STREAM, which a client may retry', async () => {
    running = await variant.start({ grace: GRACE })
    const session = running.connect()
    const stuck = request(session, '/hang')
    await eventually(() => inspect().inflight.length >= 1, 2_000, 'a stream in flight')
    const done = running.shutdown()
    // Sent in the same tick, before the client can have read the GOAWAY.
    const late = await request(session, '/fast')
    expect(late.status).toBe(0)
    expect(late.rstCode).toBe(NGHTTP2_REFUSED_STREAM)
    await done
    expect((await stuck).status).toBe(503)
  })
})

describe.each(variants)('$name: a request scope on a stream', (variant) => {
  it('survives a client flooding stream resets (rapid reset): Node closes the session, and nothing is left in flight', async () => {
    running = await variant.start({})
    const session = running.connect()
    await request(session, '/fast')
    let goaway: number | undefined
    session.once('goaway', (code) => {
      goaway = code
    })
    // Open and cancel streams until the server gives up on the session (Node 24 and 26 close it
    // after about a thousand resets; Node 22 over TLS absorbs the flood instead). Bounded in count
    // and time, in case it never does.
    let opened = 0
    const until = Date.now() + 5_000
    while (!session.closed && !session.destroyed && opened < 5_000 && Date.now() < until) {
      for (let i = 0; i < 100 && !session.closed && !session.destroyed; i++, opened++) {
        const stream = session.request({ ':path': '/hang' })
        stream.on('error', () => undefined)
        stream.close(NGHTTP2_CANCEL)
      }
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(opened).toBeGreaterThan(100)
    // Whatever Node did with the session, a GOAWAY it sent says the session was at fault.
    expect(goaway === undefined || goaway !== NGHTTP2_NO_ERROR).toBe(true)
    session.destroy()
    await eventually(() => inspect().inflight.length === 0, 5_000, 'nothing in flight')
    // The server is still there for others.
    expect((await request(running.connect(), '/fast')).status).toBe(200)
  })

  it('resets a response that was streaming at the deadline with INTERNAL_ERROR, and a sibling stream completes', async () => {
    running = await variant.start({ timeout: 300 })
    const session = running.connect()
    const cut = request(session, '/stream')
    const sibling = request(session, '/finish?ms=100')
    const response = await cut
    expect(response.status).toBe(200)
    expect(response.body).toBe('partial ')
    expect(response.rstCode).toBe(NGHTTP2_INTERNAL_ERROR)
    expect(response.error?.code).toBe('ERR_HTTP2_STREAM_ERROR')
    expect((await sibling).status).toBe(200)
    expect(running.events).toContain('stream: deadline exceeded')
    expect(session.closed).toBe(false)
  })

  it('answers an upload still arriving at the deadline with 504 and stops it with RST_STREAM(NO_ERROR), without warnings', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    try {
      running = await variant.start({ timeout: 300 })
      const session = running.connect()
      const upload = request(session, '/upload', { method: 'POST', body: 'x'.repeat(1024), keepOpen: true })
      const plain = request(session, '/hang')
      const response = await upload
      expect(response.status).toBe(504)
      expect(JSON.parse(response.body).code).toBe('TETHER_DEADLINE_EXCEEDED')
      // A deadline's answer is the default 504 on a stream too, and never invites a retry.
      expect(response.headers['retry-after']).toBeUndefined()
      expect(response.rstCode).toBe(NGHTTP2_NO_ERROR)
      // The client's side was closed by the server: it cannot keep uploading.
      expect(upload.stream.writable).toBe(false)
      const hung = await plain
      expect(hung.status).toBe(504)
      expect(hung.headers['retry-after']).toBeUndefined()
      await eventually(() => inspect().inflight.length === 0, 2_000, 'nothing in flight')
      expect(running.events).toContain('upload: deadline exceeded')
      expect(warnings.map((warning) => warning.name)).not.toContain('UnsupportedWarning')
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('aborts the scope of a stream the client resets, with a reason that says so, while its siblings go on', async () => {
    running = await variant.start({})
    const session = running.connect()
    const before = inspect().counters.clientClosed
    const reset = request(session, '/hang')
    const sibling = request(session, '/finish?ms=200')
    await eventually(() => inspect().inflight.length >= 2, 2_000, 'streams in flight')
    reset.stream.close(NGHTTP2_CANCEL)
    await eventually(() => running?.events.includes('hang: client reset the stream') === true, 2_000, 'the abort')
    expect((await sibling).status).toBe(200)
    expect(inspect().counters.clientClosed - before).toBe(1)
    await eventually(() => inspect().inflight.length === 0, 2_000, 'nothing in flight')
  })
})

describe('shutdown of an HTTP/2 server', () => {
  it('shuts down HTTP/1.1 clients of an allowHTTP1 server beside its HTTP/2 sessions', async () => {
    const binding = createTether({ logger: false })
    const events: string[] = []
    const server = http2.createSecureServer({ ...tls, allowHTTP1: true }, (req, res) => {
      const scope = binding.attach(req, res)
      scope.signal.addEventListener('abort', () => events.push(`${req.httpVersion}: ${scope.signal.reason.message}`))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      const h1 = new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        https
          .get(`${url}/hang`, { ca: tls.cert, agent: false }, (res) => {
            res.resume()
            res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }))
          })
          .on('error', reject)
      })
      const h2 = request(openSession(url), '/hang')
      await eventually(() => inspect().inflight.length >= 2, 2_000, 'both requests in flight')
      const report = await shutdown(server, { grace: 200 })
      expect(await h1).toEqual({ status: 503, connection: 'close' })
      expect((await h2).status).toBe(503)
      expect(report).toMatchObject({ finished: 0, aborted: 2 })
      expect(events.sort()).toEqual(['1.1: server is shutting down', '2.0: server is shutting down'])
    } finally {
      destroyClients()
      await shutdown(server, { grace: 0 })
    }
  })
})

// hardenServer() on node:http2. Bounds are one-sided: a session is cut at all, soon after its
// timeout plus one checking interval, rather than after 72 s (Fastify) or never (Node).
describe('hardenServer() on an HTTP/2 server', () => {
  const servers: (http2.Http2Server | http2.Http2SecureServer)[] = []
  afterEach(async () => {
    destroyClients()
    for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve))
  })

  async function listen(server: http2.Http2Server | http2.Http2SecureServer): Promise<string> {
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const secure = typeof (server as http2.Http2SecureServer).setSecureContext === 'function'
    return `${secure ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  /**
   * A client speaking raw frames: the connection preface and an empty SETTINGS frame sent, the
   * server's frames read and dropped (so its close is seen).
   */
  async function rawSession(url: string) {
    const socket = await connect(url)
    socket.on('error', () => undefined)
    socket.resume()
    const closed = new Promise((resolve) => socket.on('close', resolve))
    socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
    socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    return { socket, closed }
  }

  const hello = (_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => res.end('hello')
  const slow = (_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    setTimeout(() => res.end('slow'), 600)
  }

  it('sends GOAWAY to a session idle for keepAliveTimeout and closes it, but not to one with a stream open', async () => {
    const server = hardenServer(
      http2.createServer((req, res) => (req.url === '/slow' ? slow : hello)(req, res)),
      {
        keepAliveTimeout: 300,
        checkInterval: 50,
      },
    )
    const url = await listen(server)
    const session = openSession(url)
    const started = Date.now()
    expect((await request(session, '/')).body).toBe('hello')
    // A stream open longer than the keep-alive timeout keeps its session.
    expect((await request(session, '/slow')).body).toBe('slow')
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code) => resolve(code)))
    expect(await goaway).toBe(NGHTTP2_NO_ERROR)
    await eventually(() => session.closed, 2_000, 'the session closed')
    // Idle time is measured on a clock the checker refreshes, so it may start one interval early.
    expect(Date.now() - started).toBeGreaterThanOrEqual(600 + 300 - 50 - 10)
  })

  it('closes a connection that never opens a stream within headersTimeout', async () => {
    const server = hardenServer(http2.createServer(hello), { headersTimeout: 300, checkInterval: 50 })
    const url = await listen(server)
    const socket = await connect(url)
    socket.resume() // reads (and drops) the server's SETTINGS and GOAWAY, so the close is seen
    const started = Date.now()
    await new Promise((resolve) => socket.on('close', resolve))
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(300 - 10)
    expect(took).toBeLessThan(300 + 2_000)
  })

  it('closes a session whose first HEADERS block never completes (HTTP/2 slowloris) within headersTimeout', async () => {
    const server = hardenServer(http2.createServer(hello), { headersTimeout: 300, checkInterval: 50 })
    const url = await listen(server)
    const { socket, closed } = await rawSession(url)
    const started = Date.now()
    // HEADERS on stream 1 without END_HEADERS: the server waits for a CONTINUATION frame.
    socket.write(Buffer.from([0, 0, 1, 1, 0, 0, 0, 0, 1, 0x82]))
    // ... and trickles in as CONTINUATION frames without END_HEADERS, one every 100 ms.
    const trickle = setInterval(
      () => socket.writable && socket.write(Buffer.from([0, 0, 1, 9, 0, 0, 0, 0, 1, 0x84])),
      100,
    )
    await closed
    clearInterval(trickle)
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(300 - 10)
    expect(took).toBeLessThan(300 + 2_000)
  })

  it('closes a session whose HEADERS block stops half-way and then sends nothing, within headersTimeout', async () => {
    const server = hardenServer(http2.createServer(hello), { headersTimeout: 300, checkInterval: 50 })
    const url = await listen(server)
    const { socket, closed } = await rawSession(url)
    const started = Date.now()
    // HEADERS on stream 1 without END_HEADERS, then silence: the stream is half-open in nghttp2,
    // and Node has no stream object for it.
    socket.write(Buffer.from([0, 0, 1, 1, 0, 0, 0, 0, 1, 0x82]))
    await closed
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(300 - 10)
    expect(took).toBeLessThan(300 + 2_000)
  })

  it('closes a session whose later HEADERS block stops half-way, after a stream it completed', async () => {
    let served = 0
    const counted = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
      served++
      hello(req, res)
    }
    const server = hardenServer(http2.createServer(counted), {
      headersTimeout: 300,
      keepAliveTimeout: 60_000,
      checkInterval: 50,
    })
    const url = await listen(server)
    const { socket, closed } = await rawSession(url)
    // A complete GET / on stream 1 (END_STREAM | END_HEADERS): :method GET, :scheme http, :path /,
    // :authority (indexed name, literal value "a").
    socket.write(Buffer.from([0, 0, 6, 1, 0x05, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 0x01, 0x61]))
    await eventually(() => served === 1, 2_000, 'stream 1 served')
    await sleep(100)
    // Then stream 3's HEADERS without END_HEADERS, and silence.
    const started = Date.now()
    socket.write(Buffer.from([0, 0, 1, 1, 0, 0, 0, 0, 3, 0x82]))
    await closed
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(300 - 60)
    // Far below keepAliveTimeout, which is what an idle session would get.
    expect(took).toBeLessThan(300 + 2_000)
  })

  it('resets a stream whose ended response the client does not take within writeTimeout, and counts it', async () => {
    const body = Buffer.alloc(4 * 1024 * 1024, 'x')
    const server = hardenServer(
      http2.createServer((_req, res) => res.end(body)),
      { writeTimeout: 300, checkInterval: 50 },
    )
    const url = await listen(server)
    const before = inspect().counters.writeTimeouts
    // A client that never reads: its flow-control window stays shut after the first 64 KB.
    const session = openSession(url)
    const stream = session.request({ ':path': '/' })
    stream.pause()
    const started = Date.now()
    const closed = new Promise<number>((resolve) => stream.once('close', () => resolve(stream.rstCode ?? 0)))
    stream.on('error', () => undefined)
    expect(await closed).toBe(NGHTTP2_INTERNAL_ERROR)
    expect(Date.now() - started).toBeGreaterThanOrEqual(300 - 10)
    expect(inspect().counters.writeTimeouts).toBe(before + 1)
    // A client that reads gets the same body whole.
    const whole = await request(openSession(url), '/')
    expect(whole.body.length).toBe(body.length)
  })

  it('closes the sessions idle longest past maxIdleConnections, never one with a stream open', async () => {
    // The busy session's stream stays open until the test lets it end, however slow the machine.
    let release = () => {}
    const held = new Promise<void>((resolve) => (release = resolve))
    const server = hardenServer(
      http2.createServer((req, res) => {
        if (req.url === '/held') void held.then(() => res.end('slow'))
        else hello(req, res)
      }),
      { maxIdleConnections: 2, checkInterval: 50 },
    )
    const url = await listen(server)
    const before = inspect().counters.idleEvicted
    const sessions = Array.from({ length: 4 }, () => openSession(url))
    for (const session of sessions) expect((await request(session, '/')).body).toBe('hello')
    const busy = openSession(url)
    const slowAnswer = request(busy, '/held')
    await eventually(() => sessions.filter((session) => session.closed).length === 2, 3_000, 'two evicted')
    // The two idle longest (opened first) went; the busy one stays.
    expect(sessions.map((session) => session.closed)).toEqual([true, true, false, false])
    expect(inspect().counters.idleEvicted).toBe(before + 2)
    await sleep(150)
    expect(busy.closed).toBe(false)
    release()
    expect((await slowAnswer).body).toBe('slow')
    // Its stream done, the busy session is idle too: three idle, one over the limit, and the one
    // idle longest of them goes, not the one that has just answered.
    await eventually(() => sessions[2]?.closed === true, 3_000, 'the third evicted')
    expect(sessions.map((session) => session.closed)).toEqual([true, true, true, false])
    expect(busy.closed).toBe(false)
    expect(inspect().counters.idleEvicted).toBe(before + 3)
  })

  it('answers 408 to a stream whose request is not complete within requestTimeout, and resets it', async () => {
    const server = hardenServer(
      http2.createServer((_req, _res) => undefined),
      { headersTimeout: 200, requestTimeout: 400, checkInterval: 50 },
    )
    const url = await listen(server)
    const session = openSession(url)
    const started = Date.now()
    const response = await request(session, '/upload', { method: 'POST', body: 'part', keepOpen: true })
    expect(response.status).toBe(408)
    expect(response.rstCode).toBe(NGHTTP2_NO_ERROR)
    expect(Date.now() - started).toBeGreaterThanOrEqual(400 - 10)
    expect(session.closed).toBe(false)
  })

  it('announces maxConcurrentStreams in SETTINGS (100 by default, Node: unbounded)', async () => {
    const defaults = hardenServer(http2.createServer(hello))
    const configured = hardenServer(http2.createSecureServer(tls, hello), { maxConcurrentStreams: 7 })
    for (const [server, expected] of [
      [defaults, 100],
      [configured, 7],
    ] as const) {
      const url = await listen(server)
      const session = openSession(url)
      await new Promise((resolve) => session.once('remoteSettings', resolve))
      expect(session.remoteSettings.maxConcurrentStreams).toBe(expected)
      session.destroy()
    }
  })

  it('hardens the server of Fastify with http2: true through the plugin', async () => {
    running = await startFastify({ secure: false, harden: { keepAliveTimeout: 200, checkInterval: 50 } })
    const session = running.connect()
    await request(session, '/fast')
    expect(session.remoteSettings.maxConcurrentStreams).toBe(100)
    await eventually(() => session.closed, 3_000, 'the idle session closed')
  })

  it('refuses a maxConcurrentStreams that is not a 32-bit count', () => {
    expect(() => hardenServer(http2.createServer(), { maxConcurrentStreams: 0 })).toThrow(/`maxConcurrentStreams`/)
    expect(() => hardenServer(http2.createServer(), { maxConcurrentStreams: 2 ** 32 })).toThrow(RangeError)
    expect(() => hardenServer(http2.createServer(), { maxConcurrentStreams: '10' as never })).toThrow(TypeError)
  })
})
