import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { createTether, type Scope, type ShutdownReport, shutdown } from '@tether/core'
import { tether as tetherFastify } from '@tether/fastify'
import Fastify, { type FastifyInstance } from 'fastify'
import { cert, key } from './tls.js'

/** A self-signed key and certificate for 127.0.0.1, committed for the tests only. */
export const tls = { key, cert }

/** A response as Node's HTTP/2 client saw it. */
export interface H2Response {
  status: number
  headers: http2.IncomingHttpHeaders
  body: string
  /** The RST_STREAM code the stream ended with (0, NO_ERROR, for a clean end). */
  rstCode: number
  /** The stream's error, if it ended with one. */
  error: (Error & { code?: string }) | undefined
}

export interface H2Request {
  method?: string
  /** Body to send; with `keepOpen` the stream's side stays open after it (an upload in progress). */
  body?: string
  keepOpen?: boolean
  headers?: http2.OutgoingHttpHeaders
}

/** Sends one request on a session and collects the whole response, however the stream ends. */
export function request(
  session: http2.ClientHttp2Session,
  path: string,
  options: H2Request = {},
): Promise<H2Response> & { stream: http2.ClientHttp2Stream } {
  const method = options.method ?? 'GET'
  const bodyless = method === 'GET' && options.body === undefined && !options.keepOpen
  const stream = session.request({ ':method': method, ':path': path, ...options.headers }, { endStream: bodyless })
  const promise = new Promise<H2Response>((resolve) => {
    let status = 0
    let headers: http2.IncomingHttpHeaders = {}
    let error: H2Response['error']
    const chunks: Buffer[] = []
    stream.on('response', (received) => {
      headers = received
      status = Number(received[':status'])
    })
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.on('error', (cause: Error) => {
      error = cause
    })
    stream.on('close', () =>
      resolve({ status, headers, body: Buffer.concat(chunks).toString(), rstCode: stream.rstCode ?? 0, error }),
    )
  })
  if (!bodyless) {
    if (options.body !== undefined) stream.write(options.body)
    if (!options.keepOpen) stream.end()
  }
  return Object.assign(promise, { stream })
}

/** What the routes of an HTTP/2 test server record, in order. */
export type Events = string[]

/** A running HTTP/2 test server on 127.0.0.1 (h2c or TLS). */
export interface H2TestServer {
  readonly name: string
  readonly url: string
  readonly server: http2.Http2Server | http2.Http2SecureServer
  readonly events: Events
  /** Opens a client session (closed after the test). */
  connect(): http2.ClientHttp2Session
  /** Graceful shutdown: the core's shutdown() on node:http2, app.close() for Fastify. */
  shutdown(): Promise<ShutdownReport>
  close(): Promise<void>
}

export interface H2ServerOptions {
  secure: boolean
  timeout?: number
  grace?: number
}

/**
 * The routes, the same on the core over `node:http2` and on Fastify with `http2: true`:
 *
 * - `GET /fast`: answers at once.
 * - `GET /finish?ms=N`: ignores its signal and answers after N ms.
 * - `GET /hang`: waits until its signal aborts and records the reason; never answers.
 * - `GET /stream`: sends headers and a first chunk, then nothing; records the abort.
 * - `POST /upload`: never reads its body; records the abort.
 */
type Route = (scope: Scope, query: URLSearchParams, reply: Reply) => void | Promise<void>
interface Reply {
  json(value: unknown): void
  /** Sends the headers and a first chunk, and leaves the body open. */
  partial(chunk: string): void
}

function recordAbort(events: Events, label: string, signal: AbortSignal): void {
  signal.addEventListener('abort', () => events.push(`${label}: ${(signal.reason as Error).message}`), { once: true })
}

function routes(events: Events): Record<string, Route> {
  return {
    '/fast': (_scope, _query, reply) => reply.json({ ok: true }),
    '/finish': async (_scope, query, reply) => {
      await sleep(Number(query.get('ms') ?? 0))
      reply.json({ finished: true })
    },
    '/hang': (scope) => recordAbort(events, 'hang', scope.signal),
    '/stream': (scope, _query, reply) => {
      reply.partial('partial ')
      recordAbort(events, 'stream', scope.signal)
    },
    '/upload': (scope) => recordAbort(events, 'upload', scope.signal),
  }
}

const clients = new Set<http2.ClientHttp2Session>()

/** Opens a client session to `url` (https: trusting the test certificate), destroyed after the test. */
export function openSession(url: string): http2.ClientHttp2Session {
  const session = http2.connect(url, url.startsWith('https:') ? { ca: tls.cert } : {})
  session.on('error', () => undefined) // a session cut by the server is what some tests want
  clients.add(session)
  session.once('close', () => clients.delete(session))
  return session
}

function connector(url: string): () => http2.ClientHttp2Session {
  return () => openSession(url)
}

/** Destroys every client session the tests opened. */
export function destroyClients(): void {
  for (const session of clients) session.destroy()
  clients.clear()
}

async function listening(server: http2.Http2Server | http2.Http2SecureServer, secure: boolean): Promise<string> {
  if (!server.listening) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `${secure ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** The core alone on `node:http2`: `createTether().attach()` in the request handler. */
export async function startCore(options: H2ServerOptions): Promise<H2TestServer> {
  const events: Events = []
  const table = routes(events)
  const binding = createTether({ logger: false, timeout: options.timeout })
  const handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    const scope = binding.attach(req, res)
    const url = new URL(req.url, 'http://x')
    const route = table[url.pathname]
    const reply: Reply = {
      json(value) {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify(value))
      },
      partial(chunk) {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write(chunk)
      },
    }
    scope.run(() => route?.(scope, url.searchParams, reply))
  }
  const server = options.secure ? http2.createSecureServer(tls, handler) : http2.createServer(handler)
  const url = await listening(server, options.secure)
  return {
    name: `core on node:http2 (${options.secure ? 'TLS' : 'h2c'})`,
    url,
    server,
    events,
    connect: connector(url),
    shutdown: () => shutdown(server, { grace: options.grace }),
    async close() {
      destroyClients()
      await shutdown(server, { grace: 0 })
    },
  }
}

/** Fastify with `http2: true` and the plugin. */
export async function startFastify(options: H2ServerOptions & { harden?: object | boolean }): Promise<H2TestServer> {
  const events: Events = []
  const table = routes(events)
  // The two factories return different instance types; the routes below work on either.
  const app = (options.secure ? Fastify({ http2: true, https: tls }) : Fastify({ http2: true })) as FastifyInstance<
    http2.Http2Server,
    http2.Http2ServerRequest,
    http2.Http2ServerResponse
  >
  await app.register(tetherFastify, {
    logger: false,
    timeout: options.timeout,
    grace: options.grace,
    harden: options.harden,
  })
  for (const [path, route] of Object.entries(table)) {
    app.route({
      method: path === '/upload' ? 'POST' : 'GET',
      url: path,
      // Never reads the body: the upload stays in progress.
      ...(path === '/upload' ? { bodyLimit: 1 << 20 } : {}),
      handler(request, reply) {
        const query = new URLSearchParams(request.url.split('?')[1] ?? '')
        return route(request.scope, query, {
          json: (value) => void reply.send(value),
          partial(chunk) {
            // Through Fastify, not the raw response: a hijacked reply is the user's, never cut by tether.
            const body = new Readable({ read() {} })
            body.push(chunk)
            void reply.type('text/plain').send(body)
          },
        }) as never
      },
    })
  }
  // A POST whose body is never read: Fastify's parser would wait for all of it.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => done(null))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = await listening(app.server, options.secure)
  return {
    name: `Fastify with http2: true (${options.secure ? 'TLS' : 'h2c'})`,
    url,
    server: app.server,
    events,
    connect: connector(url),
    async shutdown() {
      await app.close()
      return shutdown(app.server)
    },
    async close() {
      destroyClients()
      await app.close()
    },
  }
}
