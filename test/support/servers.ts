import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { all, type ShutdownReport, shutdown } from '@tether/core'
import { type TetherExpressOptions, tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'

/** What the routes of a test server record, in order. */
export type Events = string[]

/** A running test server on 127.0.0.1. */
export interface TestServer {
  readonly url: string
  readonly events: Events
  readonly server: import('node:http').Server
  /**
   * Shuts down gracefully: the core's shutdown() for Express, app.close() for Fastify (which runs
   * it from its preClose hook; the report is then the core's, read from the same promise).
   */
  shutdown(): Promise<ShutdownReport>
  close(): Promise<void>
}

export type ServerOptions = TetherExpressOptions & {
  grace?: number
  drain?: number
  /** Fastify's own option (ignored for Express): false routes requests as usual while closing. */
  return503OnClosing?: boolean
}

/** One framework: starts a server with the shared routes below. */
export interface Framework {
  readonly name: 'express' | 'fastify'
  start(options?: ServerOptions): Promise<TestServer>
}

/**
 * The same routes in both frameworks, so that one test file can prove both adapters behave alike:
 *
 * - `GET /fast`: answers at once.
 * - `GET /work?ms=N`: fans out to two signal-aware tasks of N ms, then answers.
 * - `GET /late-write`, `/late-throw`, `/late-timer`: ignore the signal and write, throw, or write
 *   from a timer callback 150 ms later.
 * - `GET /stream`: sends headers and a first chunk, then nothing until its signal aborts.
 * - `POST /echo`: reads a JSON body, waits 30 ms, answers with the body and whether it was aborted.
 * - `GET /hang`: waits until its signal aborts and records the reason; never answers.
 * - `GET /finish?ms=N`: ignores its signal and answers after N ms.
 */
const LATE_MS = 150

function recordAbort(events: Events, label: string, signal: AbortSignal): void {
  signal.addEventListener('abort', () => events.push(`${label}: ${(signal.reason as Error).message}`), { once: true })
}

async function fanOut(ms: number, events: Events): Promise<void> {
  try {
    await all([(signal) => sleep(ms, undefined, { signal }), (signal) => sleep(ms, undefined, { signal })])
  } catch (error) {
    events.push(`work stopped: ${(error as Error).name}`)
    throw error
  }
}

async function listening(server: import('node:http').Server): Promise<string> {
  if (!server.listening) await new Promise((resolve) => server.once('listening', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

export const expressFramework: Framework = {
  name: 'express',
  async start(options) {
    const events: Events = []
    const app = express()
    const { grace: _grace, drain: _drain, return503OnClosing: _fastifyOnly, ...expressOptions } = options ?? {}
    app.use(tetherExpress({ logger: false, ...expressOptions }))
    app.get('/fast', (_req, res) => {
      res.json({ ok: true })
    })
    app.get('/work', async (req, res) => {
      await fanOut(Number(req.query.ms ?? 0), events)
      res.json({ done: true })
    })
    app.get('/late-write', async (_req, res) => {
      await sleep(LATE_MS)
      res.json({ late: true })
    })
    app.get('/late-throw', async () => {
      await sleep(LATE_MS)
      throw new Error('too late to fail')
    })
    app.get('/late-timer', (_req, res) => {
      setTimeout(() => res.json({ late: true }), LATE_MS)
    })
    app.get('/stream', (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('partial ')
      recordAbort(events, 'stream', req.scope.signal)
    })
    app.post('/echo', express.json(), async (req, res) => {
      await sleep(30)
      res.json({ body: req.body, aborted: req.scope.signal.aborted })
    })
    app.get('/hang', (req) => {
      recordAbort(events, 'hang', req.scope.signal)
    })
    app.get('/finish', async (req, res) => {
      await sleep(Number(req.query.ms ?? 0))
      res.json({ finished: true })
    })
    const { grace, drain } = options ?? {}
    const server = app.listen(0, '127.0.0.1')
    const url = await listening(server)
    return {
      url,
      events,
      server,
      shutdown: () => shutdown(server, { grace, drain }),
      close: () => {
        server.closeAllConnections()
        return new Promise<void>((resolve) => server.close(() => resolve()))
      },
    }
  },
}

export const fastifyFramework: Framework = {
  name: 'fastify',
  async start(options) {
    const events: Events = []
    const { return503OnClosing, ...pluginOptions } = options ?? {}
    const app = Fastify(return503OnClosing === undefined ? {} : { return503OnClosing })
    await app.register(tetherFastify, { logger: false, ...pluginOptions })
    app.get('/fast', async () => ({ ok: true }))
    app.get<{ Querystring: { ms?: string } }>('/work', async (request) => {
      await fanOut(Number(request.query.ms ?? 0), events)
      return { done: true }
    })
    app.get('/late-write', async (_request, reply) => {
      await sleep(LATE_MS)
      return reply.send({ late: true })
    })
    app.get('/late-throw', async () => {
      await sleep(LATE_MS)
      throw new Error('too late to fail')
    })
    app.get('/late-timer', (_request, reply) => {
      setTimeout(() => reply.send({ late: true }), LATE_MS)
    })
    app.get('/stream', async (request, reply) => {
      const body = new Readable({ read() {} })
      body.push('partial ')
      recordAbort(events, 'stream', request.scope.signal)
      return reply.type('text/plain').send(body)
    })
    app.post('/echo', async (request) => {
      await sleep(30)
      return { body: request.body, aborted: request.scope.signal.aborted }
    })
    app.get('/hang', (request) => {
      recordAbort(events, 'hang', request.scope.signal)
    })
    app.get<{ Querystring: { ms?: string } }>('/finish', async (request) => {
      await sleep(Number(request.query.ms ?? 0))
      return { finished: true }
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    return {
      url: await listening(app.server),
      events,
      server: app.server,
      async shutdown() {
        await app.close()
        // The plugin's preClose ran the core's shutdown; calling it again returns the same promise.
        return shutdown(app.server)
      },
      close: () => app.close(),
    }
  },
}

export const frameworks: Framework[] = [expressFramework, fastifyFramework]
