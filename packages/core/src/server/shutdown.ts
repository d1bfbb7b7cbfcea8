import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { Server as NetServer, type Socket } from 'node:net'
import {
  checkDuration,
  checkOptionsObject,
  counters,
  inflightRequests,
  kAbort,
  ShutdownError,
  withoutStack,
} from '../primitives/index.js'
import { connectionPhase, notifyShutdown, type ServerState, trackServer } from './connections.js'
import { checkServer, type HttpRequest, type HttpResponse, type HttpServer, streamOf } from './protocol.js'
import { abandon, answer, isSealed, SHUTTING_DOWN } from './response.js'
import { abandonStreams, destroySessions, drainSessions, type SessionDrain } from './sessions.js'

/** Options of {@link shutdown}. */
export interface ShutdownOptions {
  /**
   * Milliseconds in-flight requests get to finish normally. After it, their scopes are aborted
   * with a `ShutdownError` and any that has not answered gets 503.
   * @default 10000
   */
  readonly grace?: number
  /**
   * Milliseconds during which requests that arrive on connections already open (a proxy's
   * pooled keep-alive connections) are still served, each answered with `Connection: close` so
   * the client or proxy opens its next connection elsewhere. Idle connections are closed at its
   * end rather than at once: closing a pooled connection while a proxy is writing a request on
   * it is what fails requests during rolling restarts (nginx retries only idempotent requests;
   * haproxy's `http-reuse safe` resets the client's connection). Capped at `grace`. `0` closes
   * idle connections at once and answers every request arriving on an open connection with 503.
   * Behind a proxy that pools connections, set it (1000 is enough on a LAN: measured, no failed
   * request through nginx or haproxy).
   * @default 0
   */
  readonly drain?: number
}

const SHUTDOWN_OPTIONS = ['grace', 'drain']

/** What {@link shutdown} did. */
export interface ShutdownReport {
  /**
   * Requests in flight when shutdown began that finished within the grace period. On HTTP/2 each
   * stream is a request.
   */
  readonly finished: number
  /** Requests still unfinished when the grace period ran out: aborted, answered 503 or cut. */
  readonly aborted: number
  /** Requests that arrived on open connections during shutdown and were answered 503. */
  readonly refused: number
  /** Requests that arrived on open connections during the drain and were served. */
  readonly drained: number
  /**
   * Idle keep-alive connections (on HTTP/2: sessions with no open stream) closed: at once without
   * a drain, else when the drain ends.
   */
  readonly idleClosed: number
  /**
   * Upgraded connections (WebSockets) open when shutdown began. They get `grace` to close (the
   * app learns of the shutdown through `onShutdown()`), like in-flight requests.
   */
  readonly upgraded: number
  /** Upgraded connections still open when the grace period ran out, closed by shutdown. */
  readonly upgradedClosed: number
  /** How long shutdown took, in milliseconds. */
  readonly durationMs: number
}

// After the grace period, answers (503s and cuts) get this long to reach the clients before every
// connection left is destroyed: a handler that ignores its signal cannot hold shutdown longer.
const FLUSH_MS = 1_000

// With a framework that keeps the keep-alive it promised (see shutdownBeforeFrameworkClose), how
// long a connection whose response has just ended stays open for the client's next request, which
// then gets the framework's own answer. A client that reuses the connection sends it within a round
// trip of the response (undici and Node's agent at once); half a second covers a loaded machine.
// Past it the connection is idle like any other and is closed, so close() does not wait for the
// keep-alive timeout (Fastify alone would: 72 s by default).
const LINGER_MS = 500

type ServerSocket = Socket & { _httpMessage?: ServerResponse | null }

function refuse(_req: IncomingMessage, res: ServerResponse): void {
  counters.refusedDuringShutdown++
  answer(res, SHUTTING_DOWN)
}

const kHandlers = Symbol('tether.requestHandlers')
type Handler = (req: HttpRequest, res: HttpResponse) => void

/**
 * The 'request' listener during shutdown. HTTP/1.1: 503 and `Connection: close`. HTTP/2: a stream
 * that reaches it was accepted before its session's GOAWAY (later ones are refused by the session
 * itself, which tells the client to retry), so the server's own handlers serve it, in flight.
 */
function duringShutdown(this: HttpServer & { [kHandlers]?: Handler[] }, req: HttpRequest, res: HttpResponse): void {
  if (streamOf(res) === undefined) refuse(req as IncomingMessage, res as ServerResponse)
  else for (const handler of this[kHandlers] ?? []) handler.call(this, req, res)
}

function delay(ms: number): { promise: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined
  const promise = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms)
  })
  return { promise, cancel: () => clearTimeout(timer) }
}

/**
 * Shuts an HTTP server down gracefully, the way Go's `http.Server.Shutdown` does plus what it
 * lacks (telling handlers to stop), without failing requests behind a proxy:
 *
 * 1. stops accepting connections (a proxy's new connection is refused, and retried elsewhere);
 * 2. for `drain` ms, serves requests that arrive on connections already open (a proxy's pooled
 *    keep-alive connections), each with `Connection: close`, then closes the connections still
 *    idle; a connection accepted but not yet read counts as in flight, not idle;
 * 3. after the drain, answers requests that arrive on open connections with 503,
 *    `Connection: close` and `Retry-After`;
 * 4. gives in-flight requests `grace` ms to finish, and closes each connection as its response ends;
 * 5. then aborts their scopes with a `ShutdownError` (so handlers stop), answers 503 to any that
 *    has not answered and cuts any half-sent response;
 * 6. and closes every connection left, at most a second later.
 *
 * With `drain: 0` (the default), idle connections are closed at once and step 3 starts at once.
 *
 * On HTTP/2 (`node:http2`, or Fastify with `http2: true`) the unit is the stream: every session
 * gets GOAWAY at once (no new streams; one opened regardless is refused, which tells the client
 * it is safe to retry), in-flight streams get `grace`, then tether's own are answered 503 (or
 * reset if a part was sent) with their scopes aborted by a `ShutdownError`, and the sessions left
 * are destroyed with their sockets. The report counts streams.
 *
 * It never hangs: a handler that ignores its signal holds it at most `grace` plus one second.
 * Calling it again returns the same promise. The Fastify plugin runs it from `app.close()`.
 *
 * @param server - the server (`app.listen()`'s return value, or Fastify's `app.server`), HTTP/1.1
 *   or HTTP/2
 * @param options - `grace` (ms, default 10000), `drain` (ms, default 0)
 * @returns what happened: how many requests finished, were aborted, were refused, were drained
 * @throws TypeError/RangeError (at once) for an invalid `grace` or `drain`, TypeError for anything
 *   that is not a Node server (an Express app, a Fastify instance)
 *
 * @example
 * ```ts
 * process.once('SIGTERM', async () => {
 *   const report = await shutdown(server, { grace: 20_000 })
 *   console.log('shut down', report)
 * })
 * ```
 */
export function shutdown(server: HttpServer, options?: ShutdownOptions): Promise<ShutdownReport> {
  checkServer('shutdown()', server)
  const { grace, drain } = resolveShutdown(options)
  const state = trackServer(server)
  state.shutdown ??= run(state, grace, Math.min(drain, grace))
  return state.shutdown as Promise<ShutdownReport>
}

/**
 * Starts {@link shutdown} for an adapter whose framework has its own close contract (Fastify's
 * `app.close()`), before the framework closes the server. It stops accepting, gives in-flight
 * requests `grace`, then aborts their scopes with a `ShutdownError`, answers 503 and closes every
 * connection left, like {@link shutdown}; what the framework promises is left to it:
 *
 * - requests arriving on open connections reach the framework's own listeners, which answer them
 *   (Fastify: 503 with `Connection: close`, or served with `Connection: close` under
 *   `return503OnClosing: false`);
 * - an in-flight response keeps the keep-alive it was promised, so a kept-alive or pipelined
 *   follow-up gets the framework's answer rather than a refused connection;
 * - a connection whose in-flight response ends stays open half a second for that follow-up, then
 *   is closed if still idle (so close does not wait for the keep-alive timeout); connections idle
 *   when it begins are closed at once, or when the `drain` ends, as by {@link shutdown};
 * - the framework closes the server itself, after this returns (Fastify's `forceCloseConnections`
 *   and its `closeIdleConnections()` calls stay its own).
 *
 * The shutdown then goes on by itself; {@link shutdown} on the same server returns it, and its
 * report (where `refused` counts only tether's own answers, none here).
 *
 * @param server - the framework's server
 * @param options - `grace` and `drain`, as resolved by {@link resolveShutdown}
 * @returns a promise that resolves when the framework may close the server: once the drain is over,
 *   at once without one
 * @throws TypeError for anything that is not a Node server
 */
export function shutdownBeforeFrameworkClose(server: HttpServer, options: Required<ShutdownOptions>): Promise<void> {
  checkServer('shutdown()', server)
  const state = trackServer(server)
  if (state.shutdown !== undefined) return Promise.resolve()
  return new Promise<void>((ready) => {
    state.shutdown = run(state, options.grace, Math.min(options.drain, options.grace), ready)
  })
}

/**
 * Validates shutdown options and fills in the defaults (for adapters that validate up front).
 *
 * @throws TypeError/RangeError naming the option and the value received
 */
export function resolveShutdown(options?: ShutdownOptions): Required<ShutdownOptions> {
  checkOptionsObject('shutdown()', options, SHUTDOWN_OPTIONS)
  return {
    grace: options?.grace === undefined ? 10_000 : checkDuration('grace', options.grace),
    drain: options?.drain === undefined ? 0 : checkDuration('drain', options.drain),
  }
}

// With `frameworkMayClose`, the framework answers requests during close and closes the server
// itself (see shutdownBeforeFrameworkClose); it is called once the framework may: when the drain
// is over, or once in-flight scopes are aborted (a grace of 0: Fastify's forceCloseConnections
// destroys every connection right after, and the scopes must see a ShutdownError, not a hang-up).
async function run(
  state: ServerState,
  grace: number,
  drain: number,
  frameworkMayClose?: () => void,
): Promise<ShutdownReport> {
  const framework = frameworkMayClose !== undefined
  // An HTTP/2 server with allowHTTP1 is both: its HTTP/1.1 connections are the sockets below.
  const server = state.server as Server
  const sockets = state.sockets as Set<ServerSocket>
  const h2 = state.h2
  const started = Date.now()
  notifyShutdown(state, { grace })
  let finished = 0
  let aborted = 0
  let idleClosed = 0
  const refusedBefore = counters.refusedDuringShutdown
  let servedInDrain = 0
  // Serves a request that arrived on an open connection during the drain, then closes it: Node
  // answers with `Connection: close` and ends the connection after this response.
  const closeAfterResponse = (_req: IncomingMessage, res: ServerResponse) => {
    servedInDrain++
    res.shouldKeepAlive = false
  }

  // Stop accepting. net's close, not http's: http's would also close the connections Node's own
  // parser bookkeeping calls idle. tether decides that below, by the rules documented here
  // (a connection not read yet is in flight), so that they hold whatever Node version runs it.
  // A proxy's new connection is refused, which every proxy retries elsewhere: nothing was sent.
  if (server.listening) NetServer.prototype.close.call(server)
  const refuseFromNowOn = () => {
    ;(server as Server & { [kHandlers]?: Handler[] })[kHandlers] = server.listeners('request') as Handler[]
    server.removeAllListeners('request')
    server.on('request', duringShutdown)
  }
  let drainTimer: NodeJS.Timeout | undefined
  const closeIdle = () => {
    for (const socket of sockets) {
      if (connectionPhase(socket) === 'idle') {
        socket.destroy()
        idleClosed++
      }
    }
  }
  let gracePassed = false
  const pending = new Set<ServerResponse>()
  let settle: () => void = () => undefined
  const drained = new Promise<void>((resolve) => {
    settle = resolve
  })
  const checkDrained = () => {
    if (sockets.size === 0 && (h2 === undefined || h2.sessions.size === 0)) settle()
  }
  const lingerThenClose = (socket: ServerSocket) => {
    const timer = setTimeout(() => {
      if (connectionPhase(socket) !== 'idle' || socket.destroyed) return // carrying the next request
      socket.destroy()
      idleClosed++
    }, LINGER_MS).unref()
    socket.once('close', () => clearTimeout(timer))
  }
  // The socket is taken when the response is: Node detaches it from the response once it ends.
  const onResponseClose = (res: ServerResponse, socket: ServerSocket) => {
    pending.delete(res)
    if (!gracePassed && res.writableFinished) finished++
    // A framework keeps the keep-alive it promised, and answers the follow-up itself.
    if (framework) lingerThenClose(socket)
    // Keep-alive was promised before shutdown began. During the drain the connection stays open
    // for the request a client or proxy may be sending on it already (served, with Connection:
    // close), and is closed at the drain's end if idle; after it, it is closed now that it is idle.
    else if (drainTimer === undefined && connectionPhase(socket) === 'idle') socket.destroy()
  }

  if (drain > 0) {
    // The framework's own listeners keep serving (Fastify's answer while closing included).
    server.prependListener('request', closeAfterResponse)
    drainTimer = setTimeout(() => {
      drainTimer = undefined
      server.removeListener('request', closeAfterResponse)
      if (!framework) refuseFromNowOn()
      closeIdle()
      frameworkMayClose?.()
    }, drain)
  } else if (!framework) {
    refuseFromNowOn()
  }

  state.onClose = checkDrained
  let upgraded = 0
  for (const socket of sockets) {
    const phase = connectionPhase(socket)
    if (phase === 'active') {
      // In flight until its response's 'finish': a handler that has ended its response is not
      // done while the body is still being delivered to a slow reader.
      const res = socket._httpMessage as ServerResponse
      pending.add(res)
      // Node then answers with Connection: close. A framework keeps the keep-alive it promised:
      // Fastify answers the follow-up itself (its close tests expect a 503, not a refusal).
      if (!res.headersSent && !framework) res.shouldKeepAlive = false
      res.once('close', () => onResponseClose(res, socket))
    } else if (phase === 'upgraded') {
      upgraded++ // gets grace, like a request in flight; the app was told through onShutdown()
    } else if (phase === 'idle' && drain === 0) {
      socket.destroy()
      idleClosed++
    }
  }
  if (drain === 0 && grace > 0) frameworkMayClose?.()
  let sessions: SessionDrain | undefined
  if (h2 !== undefined) {
    h2.onChange = checkDrained
    sessions = drainSessions(h2, () => gracePassed)
    idleClosed += sessions.idleClosed
  }
  checkDrained()

  const graceTimer = delay(grace)
  await Promise.race([drained, graceTimer.promise])
  graceTimer.cancel()
  gracePassed = true
  if (drainTimer !== undefined) {
    clearTimeout(drainTimer)
    drainTimer = undefined
    server.removeListener('request', closeAfterResponse)
    if (!framework) refuseFromNowOn()
    if (grace > 0) frameworkMayClose?.()
  }

  let upgradedClosed = 0
  if (sockets.size > 0 || (h2 !== undefined && h2.sessions.size > 0)) {
    for (const socket of sockets) if (connectionPhase(socket) === 'upgraded') upgradedClosed++
    const reason = withoutStack(() => new ShutdownError())
    // Tether's own requests: abort their scopes, which answers 503 or cuts them and seals them.
    for (const request of inflightRequests()) {
      if (request.server === server && request.scope !== undefined) request.scope[kAbort](reason)
    }
    // Any other response still open on this server gets the same treatment.
    for (const res of pending) {
      aborted++
      if (isSealed(res) || res.writableEnded) continue
      abandon(res, SHUTTING_DOWN)
    }
    if (sessions !== undefined) aborted += abandonStreams(sessions)
    frameworkMayClose?.()
    if (pending.size > 0 || (sessions !== undefined && sessions.pending.size > 0)) {
      const flush = delay(FLUSH_MS)
      await Promise.race([drained, flush.promise])
      flush.cancel()
    }
    for (const socket of sockets) socket.destroy()
    if (h2 !== undefined) destroySessions(h2)
  }
  frameworkMayClose?.() // all done before the drain ended, or nothing to abort
  state.onClose = undefined
  if (h2 !== undefined) h2.onChange = undefined
  // Connections tether never saw (accepted before tracking began) are Node's to list: close them
  // too (an HTTP/2 server has no such list). Then http's own close clears its timeout checker;
  // the server itself is closed already.
  if (typeof server.closeAllConnections === 'function') server.closeAllConnections()
  // The framework closes its server itself, after its own hooks (Fastify counts on it).
  if (!framework) server.close(() => undefined)
  return {
    finished: finished + (sessions?.finished ?? 0),
    aborted,
    refused: counters.refusedDuringShutdown - refusedBefore,
    drained: servedInDrain,
    idleClosed,
    upgraded,
    upgradedClosed,
    durationMs: Date.now() - started,
  }
}
