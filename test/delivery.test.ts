import http from 'node:http'
import https from 'node:https'
import type net from 'node:net'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { type HardenOptions, hardenServer, inspect, isCanceled } from '@tether/core'
import { resolveHardening } from '@tether/core/adapter'
import { assertNoLingering } from '@tether/core/testing'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { connect, eventually, send } from './support/http.js'
import { cert, key } from './support/tls.js'

// Nothing a test started through tether may outlive its request (goleak's VerifyNone, per test).
afterEach(() => assertNoLingering())

// The write side of hardenServer() against real sockets on 127.0.0.1, with clients that read
// slowly on purpose. Bounds are small so the suite stays quick, and one-sided and generous so a
// busy machine cannot fail them: what matters is that a slow reader is cut at all, within a few
// windows, where without the bound it would hold its connection until it gave up.
//
// The body must be larger than what the kernel accepts at once on loopback (the sender's buffer
// grows to tcp_wmem's maximum, 4 MB by default, plus the receiver's buffer): only then does a
// slow reader leave bytes waiting in the server process, which is what the bound is about.
const BODY = Buffer.alloc(12 * 1024 * 1024, 'x')
const FAST: HardenOptions = { checkInterval: 100, minRateGrace: 500, minResponseRate: 20_000, writeTimeout: 0 }

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function listen(server: http.Server): Promise<string> {
  cleanups.push(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  if (!server.listening) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/**
 * Sends `GET path` on a raw connection and reads the answer `bytes` at a time every `everyMs`
 * (the socket is paused in between, so the kernel's buffers fill and the server has to wait).
 * `serverClosed` resolves with how long the server kept the connection: a paused client learns
 * of a reset only once it has read what it holds, which at this pace takes a while.
 */
async function slowRead(server: http.Server, url: string, path: string, bytes: number, everyMs: number) {
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  const socket = await connect(url)
  cleanups.push(() => {
    socket.destroy()
  })
  const started = Date.now()
  let read = 0
  socket.pause()
  socket.on('error', () => undefined) // the reset, when the server cuts it
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)
  const timer = setInterval(() => {
    const chunk: Buffer | null = socket.read(Math.min(bytes, socket.readableLength) || undefined)
    if (chunk !== null) read += chunk.length
  }, everyMs)
  const serverSocket = await accepted
  const serverClosed = new Promise<number>((resolve) => serverSocket.once('close', () => resolve(Date.now() - started)))
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return {
    serverClosed,
    /** Stops reading and hangs up; resolves with how much was read. */
    async stop() {
      clearInterval(timer)
      socket.destroy()
      await closed
      return read
    },
  }
}

describe('hardenServer(): the write side', () => {
  it('cuts a client that reads below minResponseRate soon after minRateGrace, and serves a fast one whole', async () => {
    const server = hardenServer(
      http.createServer((_req, res) => res.end(BODY)),
      FAST,
    )
    const url = await listen(server)
    const before = inspect().counters.slowReaders
    // 1 KB every 100 ms: 10 KB/s, half the minimum rate.
    const slow = await slowRead(server, url, '/', 1024, 100)
    const answered = await send(url)
    expect(answered.status).toBe(200)
    expect(answered.body.length).toBe(BODY.length)
    const openFor = await slow.serverClosed
    expect(await slow.stop()).toBeLessThan(BODY.length)
    // The 500 ms grace and a check interval or two, with generous slack for a busy machine; it
    // would stay open for minutes at 10 KB/s.
    expect(openFor).toBeLessThan(500 + 100 * 2 + 4_000)
    expect(inspect().counters.slowReaders).toBe(before + 1)
  })

  it('does not cut a client that reads steadily above the rate, though the kernel hands progress back in lumps', async () => {
    // The first measurement comes after minRateGrace; by then the client must have read a lump
    // of the send buffer (up to about 1.4 MB), so the grace here is longer than in FAST.
    const server = hardenServer(
      http.createServer((_req, res) => res.end(BODY)),
      { ...FAST, minRateGrace: 1_500 },
    )
    const url = await listen(server)
    const before = inspect().counters.slowReaders
    // 64 KB every 10 ms at most: a few MB/s, far above the 20 KB/s minimum, yet paced.
    const { read } = await new Promise<{ read: number }>((resolve, reject) => {
      let read = 0
      const req = http.get(url, { agent: false }, (res) => {
        res.pause()
        const timer = setInterval(() => {
          for (let budget = 64 * 1024; budget > 0; ) {
            const chunk: Buffer | null = res.read()
            if (chunk === null) break
            read += chunk.length
            budget -= chunk.length
          }
        }, 10)
        res.once('end', () => resolve({ read }))
        res.once('error', reject)
        res.once('close', () => clearInterval(timer))
      })
      req.on('error', reject)
    })
    expect(read).toBe(BODY.length)
    expect(inspect().counters.slowReaders).toBe(before)
  })

  it('cuts a finished response that is not delivered within writeTimeout, whatever its rate', async () => {
    const server = hardenServer(
      http.createServer((_req, res) => res.end(BODY)),
      { checkInterval: 100, writeTimeout: 800, minResponseRate: 0 },
    )
    const url = await listen(server)
    const before = inspect().counters.writeTimeouts
    // 32 KB every 100 ms: 320 KB/s, which would take about half a minute for what is left.
    const slow = await slowRead(server, url, '/', 32 * 1024, 100)
    const openFor = await slow.serverClosed
    expect(await slow.stop()).toBeLessThan(BODY.length)
    expect(openFor).toBeGreaterThanOrEqual(800)
    expect(openFor).toBeLessThan(800 + 100 * 2 + 4_000)
    expect(inspect().counters.writeTimeouts).toBe(before + 1)
  })

  it('leaves a quiet stream alone: nothing waiting for the client is never measured', async () => {
    const server = hardenServer(
      http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write('data: hello\n\n')
        setTimeout(() => res.end('data: bye\n\n'), 1_500)
      }),
      FAST,
    )
    const url = await listen(server)
    const answered = await send(url)
    expect(answered.status).toBe(200)
    expect(answered.cut).toBe(false)
    expect(answered.body).toBe('data: hello\n\ndata: bye\n\n')
  })

  it('leaves an upgraded connection (a WebSocket) alone, however slowly its client reads', async () => {
    const server = hardenServer(http.createServer(), FAST)
    let upgraded: net.Socket | undefined
    server.on('upgrade', (_req, socket: net.Socket) => {
      upgraded = socket
      socket.on('error', () => undefined) // the client's reset when the test ends
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n')
      socket.write(BODY)
    })
    const url = await listen(server)
    const before = inspect().counters.slowReaders
    const client = await connect(url)
    cleanups.push(() => {
      client.destroy()
    })
    client.pause() // and never read
    client.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n')
    await eventually(() => upgraded !== undefined && upgraded.writableLength > 0, 2_000, 'the upgrade')
    // Several times the 500 ms grace: an HTTP response would have been cut by now.
    await sleep(1_500)
    expect(upgraded?.destroyed).toBe(false)
    expect(inspect().counters.slowReaders).toBe(before)
  })

  it('over TLS, where the rate cannot be seen, bounds a slow reader by writeTimeout alone, without a crash', async () => {
    const server = hardenServer(
      https.createServer({ key, cert }, (_req, res) => res.end(BODY)),
      { ...FAST, writeTimeout: 1_500 },
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    cleanups.push(async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    })
    const before = inspect().counters
    const accepted = new Promise<net.Socket>((resolve) => server.once('secureConnection', resolve))
    const started = Date.now()
    const request = https.get({
      host: '127.0.0.1',
      port: (server.address() as AddressInfo).port,
      rejectUnauthorized: false,
      agent: false,
    })
    request.on('error', () => undefined)
    request.on('response', (res) => {
      res.on('error', () => undefined)
      res.pause() // and never read
    })
    cleanups.push(() => {
      request.destroy()
    })
    const socket = await accepted
    await new Promise((resolve) => socket.once('close', resolve))
    const openFor = Date.now() - started
    // Past the 500 ms grace the rate check would have cut a plain-TCP reader; here only the
    // 1.5 s write bound does (plus a check interval, and slack for a busy machine).
    expect(openFor).toBeGreaterThanOrEqual(1_500)
    expect(openFor).toBeLessThan(1_500 + 200 + 4_000)
    const after = inspect().counters
    expect(after.writeTimeouts).toBe(before.writeTimeouts + 1)
    expect(after.slowReaders).toBe(before.slowReaders)
  })

  it('applies defaults that bound delivery and outlast balancers’ idle timeouts', () => {
    const server = hardenServer(http.createServer())
    expect(server.keepAliveTimeout).toBe(65_000)
    expect(resolveHardening()).toMatchObject({
      writeTimeout: 30_000,
      minResponseRate: 240,
      minRateGrace: 5_000,
      maxIdleConnections: 10_000,
    })
  })

  it('validates the write-side and idle-bound options', () => {
    expect(() => hardenServer(http.createServer(), { writeTimeout: -1 })).toThrow(/`writeTimeout`.*-1/)
    expect(() => hardenServer(http.createServer(), { minResponseRate: '240' as never })).toThrow(TypeError)
    expect(() => hardenServer(http.createServer(), { minResponseRate: Number.NaN })).toThrow(/`minResponseRate`/)
    expect(() => hardenServer(http.createServer(), { minRateGrace: 0 })).toThrow(/`minRateGrace` must be > 0/)
    expect(hardenServer(http.createServer(), { minRateGrace: 0, minResponseRate: 0 })).toBeInstanceOf(http.Server)
    expect(() => hardenServer(http.createServer(), { maxIdleConnections: 1.5 })).toThrow(/`maxIdleConnections`.*1\.5/)
    expect(() => hardenServer(http.createServer(), { maxIdleConnections: '10' as never })).toThrow(TypeError)
  })
})

// Both adapters: a handler that answers at once, a client that does not read, a deadline that
// passes while the answer is being delivered.
const DEADLINE = 300
// Longer than the deadline, so the deadline surely passes while the answer is being delivered.
const DELIVERING: HardenOptions = { ...FAST, minRateGrace: 1_000 }

async function expressApp(reasons: unknown[]): Promise<http.Server> {
  const app = express()
  app.use(tetherExpress({ timeout: DEADLINE, logger: false }))
  app.get('/big', (req, res) => {
    const { signal } = req.scope
    signal.addEventListener('abort', () => reasons.push(signal.reason), { once: true })
    res.end(BODY)
  })
  return hardenServer(app.listen(0, '127.0.0.1'), DELIVERING)
}

async function fastifyApp(reasons: unknown[]): Promise<http.Server> {
  const app = Fastify()
  await app.register(tetherFastify, { timeout: DEADLINE, logger: false, harden: DELIVERING })
  app.get('/big', (request, reply) => {
    const { signal } = request.scope
    signal.addEventListener('abort', () => reasons.push(signal.reason), { once: true })
    reply.send(BODY)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  cleanups.push(() => app.close())
  return app.server
}

describe.each([
  ['express', expressApp],
  ['fastify', fastifyApp],
])('%s: a finished response is not a deadline miss', (_name, start) => {
  it('ends the scope as finished, not as a deadline miss, and leaves inflight while the answer is delivered', async () => {
    const reasons: unknown[] = []
    const server = await start(reasons)
    const url = await listen(server)
    const before = inspect().counters
    // 1 KB every 100 ms: far below the rate, so the write side cuts it in the end.
    const reader = await slowRead(server, url, '/big', 1024, 100)
    await eventually(() => inspect().counters.requests > before.requests, 2_000, 'the request to arrive')
    await sleep(DEADLINE * 2)
    // The deadline has passed while the answer was still on its way.
    expect(inspect().counters.deadlineExceeded).toBe(before.deadlineExceeded)
    expect(inspect().inflight).toEqual([])
    expect(reasons).toHaveLength(1)
    expect(isCanceled(reasons[0])).toBe(true)
    expect((reasons[0] as Error).message).toBe('response finished')
    await reader.serverClosed
    expect(await reader.stop()).toBeLessThan(BODY.length)
    await eventually(() => inspect().counters.slowReaders > before.slowReaders, 2_000, 'the cut to be counted')
    const after = inspect().counters
    expect(after.slowReaders).toBe(before.slowReaders + 1)
    expect(after.deadlineExceeded).toBe(before.deadlineExceeded)
    expect(after.clientClosed).toBe(before.clientClosed)
  })
})
