import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { inspect, isShutdown } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { tether } from '@tether/fastify'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { connect, eventually } from './support/http.js'

// Fastify's own close contract (its close, close-pipelining and custom-http-server tests) must
// hold with the plugin registered. Fastify itself is the oracle: each scenario runs bare and with
// the plugin, and both must see the same thing. Real sockets on 127.0.0.1: what is under test is
// what happens to connections.

afterEach(() => assertNoLingering())

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close().catch(() => undefined)))
})

async function create(withTether: boolean, options: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify(options)
  apps.push(app)
  if (withTether) await app.register(tether, { logger: false })
  return app
}

function urlOf(server: http.Server): string {
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** Each answer on a connection, in order: its status and its Connection header. */
function answersIn(data: string): string[] {
  return [...data.matchAll(/HTTP\/1\.1 (\d{3})[\s\S]*?connection: ([a-z-]+)/gi)].map(
    ([, status, connection]) => `${status} ${connection?.toLowerCase()}`,
  )
}

/**
 * One kept-alive connection: the first request's handler calls app.close() and answers 100 ms
 * later; the follow-up is written as soon as that answer arrives, so it reaches Fastify while it is
 * closing (Fastify's "Current opened connection should not accept new incoming connections").
 */
async function followUpDuringClose(withTether: boolean, options: FastifyServerOptions): Promise<string[]> {
  const app = await create(withTether, { forceCloseConnections: false, ...options })
  let closing: Promise<undefined> | undefined
  app.get('/close', async () => {
    closing = app.close()
    await sleep(100)
    return { hello: 'world' }
  })
  app.get('/', async () => ({ hello: 'world' }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = await connect(urlOf(app.server))
  let data = ''
  socket.on('data', (chunk) => {
    data += chunk
    if (answersIn(data).length === 1 && data.endsWith('}')) socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  })
  socket.on('error', () => undefined) // a reset is an outcome, seen as a missing answer
  const closed = new Promise((resolve) => socket.on('close', resolve))
  socket.write('GET /close HTTP/1.1\r\nHost: x\r\n\r\n')
  // Bounded: a connection left open would hold app.close() up to the keep-alive timeout.
  await Promise.race([closed, sleep(5_000)])
  socket.destroy()
  await closing
  return answersIn(data)
}

describe('fastify: app.close() with the plugin keeps Fastify’s own close contract', () => {
  it('a kept-alive follow-up during close gets Fastify’s 503 with Connection: close, as without the plugin', async () => {
    const bare = await followUpDuringClose(false, {})
    const tethered = await followUpDuringClose(true, {})
    expect(bare).toEqual(['200 keep-alive', '503 close'])
    expect(tethered).toEqual(bare)
  })

  it('with return503OnClosing: false, the follow-up is served with Connection: close, as without the plugin', async () => {
    const bare = await followUpDuringClose(false, { return503OnClosing: false })
    const tethered = await followUpDuringClose(true, { return503OnClosing: false })
    expect(bare).toEqual(['200 keep-alive', '200 close'])
    expect(tethered).toEqual(bare)
  })

  it('a pipelined request parsed once close has begun gets Fastify’s 503, as without the plugin', async () => {
    // Fastify's close-pipelining test: two requests written at once, a third once the first is
    // answered; the first handler answers, then calls app.close().
    const outcome = async (withTether: boolean) => {
      const app = await create(withTether, { forceCloseConnections: false })
      let closing: Promise<undefined> | undefined
      app.get('/', async (_request, reply) => {
        await sleep(5)
        reply.send({ hello: 'world' })
        closing ??= app.close()
        return reply
      })
      await app.listen({ port: 0, host: '127.0.0.1' })
      const socket = await connect(urlOf(app.server))
      let data = ''
      let third = false
      socket.on('data', (chunk) => {
        data += chunk
        if (!third && answersIn(data).length >= 1) {
          third = true
          socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        }
      })
      socket.on('error', () => undefined)
      const closed = new Promise((resolve) => socket.on('close', resolve))
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n')
      await Promise.race([closed, sleep(5_000)])
      socket.destroy()
      await closing
      return answersIn(data)
    }
    const bare = await outcome(false)
    const tethered = await outcome(true)
    expect(bare).toEqual(['200 keep-alive', '200 keep-alive', '503 close'])
    expect(tethered).toEqual(bare)
  })

  it('still aborts a request that outlives the grace period with a ShutdownError and a 503', async () => {
    const app = Fastify({ forceCloseConnections: false })
    apps.push(app)
    await app.register(tether, { logger: false, grace: 200 })
    const reasons: unknown[] = []
    app.get('/hang', (request) => {
      request.scope.signal.addEventListener('abort', () => reasons.push(request.scope.signal.reason), { once: true })
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const socket = await connect(urlOf(app.server))
    let data = ''
    socket.on('data', (chunk) => {
      data += chunk
    })
    const closed = new Promise((resolve) => socket.on('close', resolve))
    socket.write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\n')
    await eventually(() => inspect().inflight.length >= 1, 2_000, 'a request in flight')
    await app.close()
    await closed
    expect(data).toMatch(/^HTTP\/1.1 503/)
    expect(reasons).toHaveLength(1)
    expect(isShutdown(reasons[0])).toBe(true)
  })

  it('leaves alone a server Fastify did not listen on (serverFactory), as without the plugin', async () => {
    const outcome = async (withTether: boolean) => {
      const server = http.createServer()
      const app = await create(withTether, {
        serverFactory: (handler) => {
          server.on('request', handler)
          return server
        },
      })
      app.get('/', async () => ({ hello: 'world' }))
      await app.ready()
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      // A kept-alive connection open across app.close().
      const agent = new http.Agent({ keepAlive: true })
      const get = () =>
        new Promise<number>((resolve, reject) => {
          http.get(`${urlOf(server)}/`, { agent }, (res) => resolve(res.resume().statusCode ?? 0)).on('error', reject)
        })
      const before = await get()
      await app.close()
      const result = {
        before,
        listening: server.listening,
        listeners: server.listenerCount('request'),
        after: await get(),
      }
      agent.destroy()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      return result
    }
    const bare = await outcome(false)
    const tethered = await outcome(true)
    // Fastify's router answers 503 once it is closing, but the server and its connection are the user's.
    expect(bare).toEqual({ before: 200, listening: true, listeners: 1, after: 503 })
    expect(tethered).toEqual(bare)
  })

  it('calls the server’s closeIdleConnections() exactly as often as Fastify alone, native or from a serverFactory', async () => {
    const calls = async (withTether: boolean, factory: boolean) => {
      let called = 0
      const counting = (server: http.Server) => {
        const original = server.closeIdleConnections.bind(server)
        server.closeIdleConnections = () => {
          called++
          original()
        }
        return server
      }
      const app = await create(withTether, {
        forceCloseConnections: 'idle',
        ...(factory ? { serverFactory: (handler) => counting(http.createServer(handler)) } : {}),
      })
      await app.listen({ port: 0, host: '127.0.0.1' })
      if (!factory) counting(app.server)
      await app.close()
      return called
    }
    for (const factory of [false, true]) {
      const bare = await calls(false, factory)
      expect(bare).toBe(factory ? 2 : 1)
      expect(await calls(true, factory)).toBe(bare)
    }
  })
})
