import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import {
  adoptStream,
  type HttpRequest,
  type HttpResponse,
  type HttpServer,
  isHttp2Server,
  linkSessionSocket,
  type SessionState,
  serverOfStream,
  streamOf,
  trackSessions,
} from './transport.js'
import { checkServer } from './validate.js'

/**
 * The connections of a server, as shutdown needs to see them. Node keeps its own list but shows it
 * only through `closeIdleConnections()` and `closeAllConnections()`; shutdown needs to look at each
 * connection (is a response in progress? has anything been read?), so tether keeps its own set.
 *
 * Tracking starts when a server goes through `hardenServer()`, the Fastify plugin, or
 * `shutdown()`, or when the first request reaches a tether adapter; sockets that carry a request
 * are adopted then, so nothing that ever served a request is missed. On an HTTP/2 server the unit
 * is the session and its streams (see transport.ts); `sockets` then holds only the connections of
 * HTTP/1.1 clients (`allowHTTP1`).
 */

/** @internal */
export interface ServerState {
  readonly server: HttpServer
  readonly sockets: Set<Socket>
  /** Sessions and streams, for an HTTP/2 server. */
  readonly h2: SessionState | undefined
  /** The running shutdown, once one has started. */
  shutdown: Promise<unknown> | undefined
}

const kTracked = Symbol.for('tether.tracked')
const kState = Symbol.for('tether.serverStates')
type TrackedSocket = Socket & { [kTracked]?: true }

// Shared across copies of the package, like the registry: a shutdown must see every connection.
const globals = globalThis as { [kState]?: WeakMap<HttpServer, ServerState> }
if (globals[kState] === undefined) globals[kState] = new WeakMap()
const states = globals[kState]

function remember(state: ServerState, socket: TrackedSocket): void {
  socket[kTracked] = true
  state.sockets.add(socket)
  socket.once('close', () => state.sockets.delete(socket))
}

/**
 * Starts tracking a server's connections (once; later calls return the same state).
 *
 * @internal
 */
export function trackServer(server: HttpServer): ServerState {
  let state = states.get(server)
  if (state !== undefined) return state
  const h2 = isHttp2Server(server) ? trackSessions(server) : undefined
  const created: ServerState = { server, sockets: new Set(), h2, shutdown: undefined }
  state = created
  states.set(server, created)
  // An HTTPS server's requests arrive on the TLS socket, announced by 'secureConnection'.
  const event =
    typeof (server as { setSecureContext?: unknown }).setSecureContext === 'function'
      ? 'secureConnection'
      : 'connection'
  // A socket that carries an HTTP/2 session is marked already (its session is tracked instead).
  ;(server as Server).on(event, (socket: TrackedSocket) => {
    if (socket[kTracked] !== true) remember(created, socket)
    else linkSessionSocket(socket)
  })
  return created
}

/**
 * Makes sure a request's connection (HTTP/1.1 socket, or HTTP/2 session) is tracked, and returns
 * its server. Called for every request, so the common case is two property reads: connections
 * accepted after tracking started are marked already.
 *
 * @internal
 */
export function adoptConnection(req: HttpRequest, res: HttpResponse): HttpServer | undefined {
  const stream = streamOf(res)
  if (stream !== undefined) {
    const server = serverOfStream(stream)
    if (server !== undefined) return server
  }
  // HTTP/2 only gets here for a session accepted before tracking began: `req.socket` is then the
  // session's socket proxy, which knows the server.
  const socket = req.socket as (Socket & { server?: HttpServer }) | null | undefined
  const server = socket?.server
  if (server === undefined || (socket as TrackedSocket)[kTracked] === true) return server
  const state = trackServer(server)
  if (stream !== undefined && state.h2 !== undefined) adoptStream(state.h2, stream)
  else remember(state, socket as TrackedSocket)
  return server
}

/** The tracking state of a server, if it is tracked. @internal */
export function serverState(server: HttpServer): ServerState | undefined {
  return states.get(server)
}

/**
 * Starts tracking a server's connections, so that `shutdown()` also sees connections accepted
 * before their first request reached tether (and treats them as in flight, not idle).
 * `hardenServer()` and the Fastify plugin do it; call it yourself for an Express server you do not
 * harden, right after `listen()`. On an HTTP/2 server (`node:http2`) it tracks sessions and
 * their streams.
 *
 * @returns the same server
 */
export function trackConnections<S extends HttpServer>(server: S): S {
  checkServer('trackConnections()', server)
  trackServer(server)
  return server
}

type CheckedServer = Server & Record<symbol, NodeJS.Timeout | undefined>

/**
 * Runs `check` every `ms` while `server` is open, in the slot `slot`: a later call for the same
 * slot replaces the earlier check (`hardenServer()` called again), and `check` undefined stops it.
 * The timer is unref'd and cleared when the server closes.
 *
 * @internal
 */
export function everyCheckInterval(server: Server, slot: symbol, ms: number, check: (() => void) | undefined): void {
  const checked = server as CheckedServer
  if (checked[slot] !== undefined) clearInterval(checked[slot])
  checked[slot] = undefined
  if (check === undefined) return
  const timer = setInterval(check, ms)
  timer.unref()
  checked[slot] = timer
  server.once('close', () => {
    if (checked[slot] === timer) {
      clearInterval(timer)
      checked[slot] = undefined
    }
  })
}
