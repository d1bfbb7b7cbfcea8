import { once } from 'node:events'
import http from 'node:http'
import https from 'node:https'
import net, { type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { onShutdown, shutdown, trackConnections } from '@tether/core'
import { tether } from '@tether/express'
import express from 'express'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket, { WebSocketServer } from 'ws'
import { cert, key } from './support/tls.js'

// What shutdown() must treat as in flight, measured with real clients: a response still being
// delivered, an upgraded connection (a WebSocket, with the ws package), a connection whose drain
// promised it keep-alive, and a TLS connection still in its handshake.

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function listen<S extends http.Server>(server: S): Promise<S> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  return server
}

const portOf = (server: net.Server) => (server.address() as AddressInfo).port

describe('a response still being delivered', () => {
  const BODY = 12 * 1024 * 1024

  it('is in flight until its last byte is out: a slow reader receives the whole body', async () => {
    const app = express()
    app.use(tether({ logger: false }))
    const body = Buffer.alloc(BODY, 'x')
    app.get('/download', (_req, res) => {
      res.setHeader('content-type', 'application/octet-stream')
      res.end(body) // the handler is done; the response is not
    })
    const server = await listen(http.createServer(app))
    trackConnections(server)

    // A client reading about 3 MB/s: the body takes seconds, far longer than the kernel's buffers.
    const socket = net.connect(portOf(server), '127.0.0.1')
    cleanups.push(() => socket.destroy())
    await once(socket, 'connect')
    socket.write('GET /download HTTP/1.1\r\nhost: x\r\n\r\n')
    let received = 0
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length
      socket.pause()
      setTimeout(() => socket.resume(), 20).unref()
    })
    await sleep(400)

    const report = await shutdown(server) // the defaults: grace 10 s, drain 0
    await closed
    // Headers of a few hundred bytes, then the whole body.
    expect(received).toBeGreaterThan(BODY)
    expect(received).toBeLessThan(BODY + 1_000)
    expect(report).toMatchObject({ finished: 1, aborted: 0 })
  })
})

describe('an upgraded connection (a WebSocket)', () => {
  async function start(): Promise<{ server: http.Server; wss: WebSocketServer; url: string }> {
    const app = express()
    app.use(tether({ logger: false }))
    const server = http.createServer(app)
    const wss = new WebSocketServer({ server })
    wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data)))
    await listen(server)
    cleanups.push(() => new Promise((resolve) => wss.close(resolve)))
    return { server, wss, url: `ws://127.0.0.1:${portOf(server)}` }
  }

  async function open(url: string): Promise<{ ws: WebSocket; closed: Promise<{ code: number; at: number }> }> {
    const ws = new WebSocket(url)
    cleanups.push(() => ws.terminate())
    const closed = new Promise<{ code: number; at: number }>((resolve) =>
      ws.once('close', (code) => resolve({ code, at: Date.now() })),
    )
    await once(ws, 'open')
    ws.send('ping')
    await once(ws, 'message')
    return { ws, closed }
  }

  it('is told through onShutdown() and closed by the app within grace: shutdown ends then', async () => {
    const { server, wss, url } = await start()
    const notices: unknown[] = []
    onShutdown(server, (notice) => {
      notices.push(notice)
      for (const client of wss.clients) client.close(1001, 'server shutting down')
    })
    const client = await open(url)

    const started = Date.now()
    const report = await shutdown(server, { grace: 5_000 })
    expect(notices).toEqual([{ grace: 5_000 }])
    expect((await client.closed).code).toBe(1001)
    expect(Date.now() - started).toBeLessThan(4_000)
    expect(report).toMatchObject({ upgraded: 1, upgradedClosed: 0 })
  })

  it('is neither idle nor forgotten: kept open through the grace period, then closed, and counted', async () => {
    const GRACE = 1_500
    const { server, url } = await start()
    onShutdown(server, () => undefined) // the app does nothing about its WebSockets
    const client = await open(url)

    const started = Date.now()
    const done = shutdown(server, { grace: GRACE })
    await sleep(GRACE / 2)
    // Not an idle keep-alive connection: still open and still served.
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
    client.ws.send('still there?')
    const [echo] = await once(client.ws, 'message')
    expect(String(echo)).toBe('still there?')

    const report = await done
    const { at } = await client.closed
    expect(at - started).toBeGreaterThanOrEqual(GRACE - 10)
    // "No longer than grace plus one second", with room for a busy machine.
    expect(at - started).toBeLessThan(GRACE + 1_000 + 1_000)
    expect(report).toMatchObject({ upgraded: 1, upgradedClosed: 1 })
  })

  it('calls every listener once even when one throws, and the shutdown goes on', async () => {
    const { server } = await start()
    const calls: string[] = []
    const warnings: string[] = []
    const onWarning = (warning: Error) => warnings.push(warning.message)
    process.on('warning', onWarning)
    cleanups.push(() => process.off('warning', onWarning))
    onShutdown(server, () => {
      calls.push('first')
      throw new Error('listener failed')
    })
    const stop = onShutdown(server, () => calls.push('unregistered'))
    onShutdown(server, () => calls.push('third'))
    stop()
    await shutdown(server, { grace: 100 })
    await shutdown(server, { grace: 100 })
    expect(calls).toEqual(['first', 'third'])
    await expect.poll(() => warnings).toContain('listener failed')
  })

  it('refuses what is not a server or a function', () => {
    expect(() => onShutdown(express() as never, () => undefined)).toThrow(TypeError)
    expect(() => onShutdown(http.createServer(), 'nope' as never)).toThrow(/`listener`/)
  })
})

describe('drain', () => {
  it('keeps a connection whose in-flight response promised keep-alive open after that response, for the request already on its way', async () => {
    const app = express()
    app.use(tether({ logger: false }))
    app.get('/slow', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' }) // keep-alive promised now
      res.write('part ')
      setTimeout(() => res.end('end'), 300)
    })
    app.get('/next', (_req, res) => {
      res.send('served')
    })
    const server = await listen(http.createServer(app))
    trackConnections(server)
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    cleanups.push(() => agent.destroy())
    const port = portOf(server)

    const first = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get({ port, host: '127.0.0.1', path: '/slow', agent }, resolve).on('error', reject),
    )
    expect(first.headers.connection).toBe('keep-alive')
    const done = shutdown(server, { drain: 2_000, grace: 5_000 })
    // The moment the first response ends, a follow-up goes out on the same connection, as a
    // pooling proxy sends its next request.
    first.resume()
    await once(first, 'end')
    const second = await new Promise<{ status: number; connection: string | undefined; body: string }>(
      (resolve, reject) => {
        const req = http.get({ port, host: '127.0.0.1', path: '/next', agent }, (res) => {
          let body = ''
          res.on('data', (chunk) => {
            body += chunk
          })
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }))
        })
        // A new connection would be refused: the server stopped accepting when shutdown began.
        req.on('error', reject)
      },
    )
    expect(second).toEqual({ status: 200, connection: 'close', body: 'served' })
    const report = await done
    expect(report).toMatchObject({ finished: 1, drained: 1, refused: 0 })
  })
})

describe('a TLS connection still in its handshake', () => {
  it('is closed by shutdown: the server closes without waiting for the handshake timeout', async () => {
    const server = https.createServer({ key, cert }, (_req, res) => res.end('ok'))
    await listen(server)
    trackConnections(server)
    // A client that opens TCP and never starts its TLS handshake.
    const stalled = net.connect(portOf(server), '127.0.0.1')
    cleanups.push(() => stalled.destroy())
    await once(stalled, 'connect')
    const clientSawClose = once(stalled, 'close')
    await sleep(50)

    const started = Date.now()
    const serverClosed = once(server, 'close', { signal: AbortSignal.timeout(10_000) })
    const report = await shutdown(server, { grace: 300 })
    await serverClosed
    await clientSawClose
    // grace + the flush bound + a busy machine; the handshake timeout would be 120 s.
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(report.finished).toBe(0)
  })
})
