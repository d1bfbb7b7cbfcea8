import http from 'node:http'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { hardenServer } from '@tether/core'
import { resolveHardening } from '@tether/core/adapter'
import { assertNoLingering } from '@tether/core/testing'
import { tether } from '@tether/fastify'
import Fastify from 'fastify'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { connect, loopbackServers, send } from './support/http.js'

// Nothing a test started through tether may outlive its request (goleak's VerifyNone, per test).
afterEach(() => assertNoLingering())

// Real sockets on 127.0.0.1. The bounds are one-sided and generous: what matters is that a slow
// or idle client is cut at all, soon after its timeout, rather than after Node's default 30 s
// checking interval or never.
const { listen, closeAll } = loopbackServers()
afterEach(closeAll)

const hello = (_req: http.IncomingMessage, res: http.ServerResponse) => res.end('hello')

/** Opens a connection, starts a request and sends one more header byte every `everyMs`. */
async function trickleHeaders(url: string, everyMs: number) {
  const socket = await connect(url)
  const started = Date.now()
  let received = ''
  socket.on('data', (chunk) => {
    received += chunk
  })
  socket.write('GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ')
  const timer = setInterval(() => socket.writable && socket.write('a'), everyMs)
  const closedAfter = await new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now() - started)))
  clearInterval(timer)
  return { closedAfter, received }
}

describe('hardenServer()', () => {
  it('applies safe defaults and a short checking interval', () => {
    const server = hardenServer(http.createServer(hello))
    expect(server.headersTimeout).toBe(10_000)
    expect(server.requestTimeout).toBe(30_000)
    expect(server.keepAliveTimeout).toBe(65_000)
    expect((server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval).toBe(1_000)
  })

  it('cuts a client that trickles its headers within headersTimeout plus one second, while serving others', async () => {
    const server = hardenServer(http.createServer(hello), { headersTimeout: 500, requestTimeout: 1_000 })
    const url = await listen(server)
    const slow = trickleHeaders(url, 100)
    const served = await send(url)
    expect(served.body).toBe('hello')
    const { closedAfter, received } = await slow
    expect(received).toMatch(/^HTTP\/1.1 408/)
    expect(closedAfter).toBeGreaterThanOrEqual(450)
    expect(closedAfter).toBeLessThan(500 + 1_000 + 500)
  })

  it('cuts a client that trickles its body within requestTimeout plus one second', async () => {
    const server = hardenServer(
      http.createServer((req, res) => {
        req.resume()
        req.on('end', () => res.end('read'))
      }),
      { headersTimeout: 300, requestTimeout: 600, checkInterval: 100 },
    )
    const socket = await connect(await listen(server))
    const started = Date.now()
    let received = ''
    socket.on('data', (chunk) => {
      received += chunk
    })
    socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx')
    const timer = setInterval(() => socket.writable && socket.write('x'), 100)
    const closedAfter = await new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now() - started)))
    clearInterval(timer)
    expect(received).toMatch(/^HTTP\/1.1 408/)
    expect(closedAfter).toBeGreaterThanOrEqual(550)
    expect(closedAfter).toBeLessThan(600 + 100 + 1_000)
  })

  it('takes effect on a server that is already listening', async () => {
    const server = http.createServer(hello)
    const url = await listen(server)
    hardenServer(server, { headersTimeout: 400, requestTimeout: 800, checkInterval: 200 })
    const { closedAfter } = await trickleHeaders(url, 100)
    // Without re-arming Node's checker, the old 30 s interval would keep this socket far longer.
    expect(closedAfter).toBeLessThan(400 + 200 + 1_000)
  })

  it('closes an idle keep-alive connection after the keep-alive timeout', async () => {
    const server = hardenServer(http.createServer(hello), { keepAliveTimeout: 300 })
    const url = await listen(server)
    const socket = await connect(url)
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    await new Promise((resolve) => socket.once('data', resolve))
    const answered = Date.now()
    await new Promise((resolve) => socket.on('close', resolve))
    const idle = Date.now() - answered
    // Node 24 adds keepAliveTimeoutBuffer (1 s) to the socket's own timeout.
    expect(idle).toBeGreaterThanOrEqual(250)
    expect(idle).toBeLessThan(300 + 1_000 + 1_000)
  })

  it('validates its options, and rejects a header timeout longer than the request timeout', () => {
    expect(() => resolveHardening({ headersTimeout: -1 })).toThrow(/`headersTimeout`.*-1/)
    expect(() => resolveHardening({ headersTimeout: 0 })).toThrow(RangeError)
    expect(() => resolveHardening({ keepAliveTimeout: '5s' as never })).toThrow(TypeError)
    expect(() => resolveHardening({ checkInterval: Number.NaN })).toThrow(/`checkInterval`/)
    expect(() => resolveHardening({ headersTimeout: 20_000, requestTimeout: 10_000 })).toThrow(
      /`headersTimeout` \(20000\) must not be longer than `requestTimeout` \(10000\)/,
    )
    expect(resolveHardening({ headersTimeout: 20_000, requestTimeout: 0 }).requestTimeout).toBe(0)
    expect(() => hardenServer(http.createServer(), 'fast' as never)).toThrow(TypeError)
  })
})

describe('the Fastify plugin', () => {
  it('hardens app.server with the harden option', async () => {
    const app = Fastify()
    await app.register(tether, { harden: { headersTimeout: 500, requestTimeout: 1_000, keepAliveTimeout: 2_000 } })
    app.get('/', async () => 'hello')
    await app.listen({ port: 0, host: '127.0.0.1' })
    try {
      expect(app.server.keepAliveTimeout).toBe(2_000)
      const { closedAfter, received } = await trickleHeaders(
        `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
        100,
      )
      expect(received).toMatch(/^HTTP\/1.1 408/)
      expect(closedAfter).toBeLessThan(500 + 1_000 + 500)
    } finally {
      await app.close()
    }
  })

  it('rejects invalid hardening options at registration', async () => {
    const app = Fastify()
    await expect(app.register(tether, { harden: { headersTimeout: 5_000, requestTimeout: 1_000 } })).rejects.toThrow(
      RangeError,
    )
    await app.close().catch(() => undefined)
  })
})

describe('the hardening checker', () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it('runs the delivery, idle and HTTP/2 session checks from one interval per server, cleared at close', async () => {
    const server = http2.createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const started = vi.spyOn(globalThis, 'setInterval')
    const cleared = vi.spyOn(globalThis, 'clearInterval')
    // Three checks on (delivery, idle, sessions), each of which once had an interval of its own.
    hardenServer(server, { writeTimeout: 5_000, minResponseRate: 1_000, maxIdleConnections: 10, checkInterval: 200 })
    expect(started).toHaveBeenCalledTimes(1)
    // Hardened again with another interval: the one checker is replaced, not joined by another.
    hardenServer(server, { writeTimeout: 5_000, maxIdleConnections: 10, checkInterval: 300 })
    expect(started).toHaveBeenCalledTimes(2)
    expect(cleared).toHaveBeenCalledTimes(1)
    await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())))
    expect(cleared).toHaveBeenCalledTimes(2)
    expect(cleared.mock.calls[1]?.[0]).toBe(started.mock.results[1]?.value)
  })
})
