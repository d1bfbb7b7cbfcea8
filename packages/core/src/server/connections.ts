import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { checkFunction, shared } from '../primitives/index.js'
import {
  checkServer,
  type HttpRequest,
  type HttpResponse,
  type HttpServer,
  isHttp2Server,
  streamOf,
} from './protocol.js'
import { adoptStream, linkSessionSocket, type SessionState, serverOfStream, trackSessions } from './sessions.js'

/**
 * The connections of a server, as shutdown needs to see them. Node keeps its own list but shows it
 * only through `closeIdleConnections()` and `closeAllConnections()`; shutdown needs to look at each
 * connection (is a response in progress? has anything been read?), so tether keeps its own set.
 *
 * Tracking starts when a server goes through `hardenServer()`, the Fastify plugin, or
 * `shutdown()`, or when the first request reaches a tether adapter; sockets that carry a request
 * are adopted then, so nothing that ever served a request is missed. On an HTTP/2 server the unit
 * is the session and its streams (see protocol.ts); `sockets` then holds only the connections of
 * HTTP/1.1 clients (`allowHTTP1`).
 */

/** What {@link onShutdown} listeners are told. */
export interface ShutdownNotice {
  /** Milliseconds the server's in-flight work (and its upgraded connections) has before it is cut. */
  readonly grace: number
}

/** @internal */
export interface ServerState {
  readonly server: HttpServer
  /**
   * The HTTP/1.1 connections, and on a TLS server the TCP connections still in their handshake
   * (replaced by their TLS socket once it is established).
   */
  readonly sockets: Set<Socket>
  /** Sessions and streams, for an HTTP/2 server. */
  readonly h2: SessionState | undefined
  /** The running shutdown, once one has started. */
  shutdown: Promise<unknown> | undefined
  /** Called when a connection in `sockets` closes (shutdown waits on it). */
  onClose: (() => void) | undefined
  /** Told when shutdown begins (see {@link onShutdown}). */
  readonly shutdownListeners: Set<(notice: ShutdownNotice) => void>
}

// Marks on the sockets of the servers' shared state (below), read by every copy: a socket marked
// tracked by one copy is not adopted again by another (which would add a second 'close' listener
// to a keep-alive socket per request), and a connection still in its TLS handshake is one to the
// shutdown, idle and delivery checks of whichever copy runs them.
const kTracked = Symbol.for('tether.tracked')
const kHandshaking = Symbol.for('tether.handshaking')
type TrackedSocket = Socket & {
  [kTracked]?: true
  [kHandshaking]?: true
  /** On a TLS socket: the TCP socket under it. */
  _parent?: TrackedSocket | null
}

/**
 * What a connection of an HTTP/1.1 server is doing. Shutdown, the idle bound and the write side
 * all ask this one question, so that none of them has a narrower idea of "idle" than the others:
 *
 * - `handshake`: a TCP connection to a TLS server whose handshake has not completed;
 * - `unread`: accepted, nothing read yet (a request may be on its way);
 * - `active`: a response is in it, from its request's headers until the response's `'finish'`
 *   (a handler that has ended the response is not done: the body may still be being delivered);
 * - `upgraded`: handed over to another protocol (a WebSocket): no longer HTTP's, yet not idle;
 * - `idle`: between requests of a kept-alive connection.
 *
 * @internal
 */
export type ConnectionPhase = 'handshake' | 'unread' | 'active' | 'upgraded' | 'idle'

/** @internal See {@link ConnectionPhase}. */
export function connectionPhase(socket: Socket): ConnectionPhase {
  const tracked = socket as TrackedSocket & { _httpMessage?: object | null; parser?: unknown }
  if (tracked[kHandshaking] === true) return 'handshake'
  // Node attaches a response to its socket for as long as it is being written, detaching it at
  // 'finish', and frees the parser of a connection only when it closes or is upgraded.
  if (tracked._httpMessage != null) return 'active'
  if (tracked.parser == null && !tracked.destroyed) return 'upgraded'
  return tracked.bytesRead === 0 ? 'unread' : 'idle'
}

// Shared across copies of the package, like the registry: a shutdown must see every connection
// the adapter's copy adopted (the app calls shutdown() from its own copy), and hardening one
// server from two copies must find one state.
const states = shared('tether.serverStates', () => new WeakMap<HttpServer, ServerState>())

function remember(state: ServerState, socket: TrackedSocket): void {
  socket[kTracked] = true
  state.sockets.add(socket)
  socket.once('close', () => {
    if (state.sockets.delete(socket)) state.onClose?.()
  })
}

/** A TLS connection is established: its TLS socket stands for the TCP one from now on. */
function secured(state: ServerState, socket: TrackedSocket): void {
  const raw = socket._parent
  if (raw != null && raw[kHandshaking] === true) {
    raw[kHandshaking] = undefined
    state.sockets.delete(raw)
  }
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
  const created: ServerState = {
    server,
    sockets: new Set(),
    h2,
    shutdown: undefined,
    onClose: undefined,
    shutdownListeners: new Set(),
  }
  state = created
  states.set(server, created)
  // A socket that carries an HTTP/2 session is marked already (its session is tracked instead).
  const established = (socket: TrackedSocket) => {
    if (socket[kTracked] !== true) remember(created, socket)
    else linkSessionSocket(socket)
  }
  if (typeof (server as { setSecureContext?: unknown }).setSecureContext === 'function') {
    // An HTTPS server's requests arrive on the TLS socket, announced by 'secureConnection'. Until
    // then its TCP connection is tracked too: a client that stalls its handshake would otherwise
    // hold a closing server until the handshake timeout (two minutes by default).
    ;(server as Server).on('connection', (socket: TrackedSocket) => {
      socket[kHandshaking] = true
      remember(created, socket)
    })
    ;(server as Server).on('secureConnection', (socket: TrackedSocket) => {
      secured(created, socket)
      established(socket)
    })
  } else {
    ;(server as Server).on('connection', established)
  }
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
  const socket = req.socket as (Socket & { server?: HttpServer | null }) | null | undefined
  // No server: a socket a test or an in-memory transport made (its `server` unset, or null).
  const server = socket?.server ?? undefined
  if (server === undefined || (socket as TrackedSocket)[kTracked] === true) return server
  const state = trackServer(server)
  if (stream !== undefined && state.h2 !== undefined) adoptStream(state.h2, stream)
  else remember(state, socket as TrackedSocket)
  return server
}

/**
 * Registers a function to call when {@link shutdown} of `server` begins (Go's
 * `Server.RegisterOnShutdown`): the place to tell what tether cannot close gracefully itself that
 * the server is going away. An upgraded connection (a WebSocket) is not HTTP's any more: shutdown
 * gives it `grace` like an in-flight request, then closes it, so send your close frames here.
 * Listeners are called once, in the order registered; one that throws stops neither the others
 * nor the shutdown: its error is emitted as a process warning.
 *
 * Registering starts tracking the server's connections (see {@link trackConnections}).
 *
 * @param server - the server `shutdown()` (or the Fastify plugin's `app.close()`) will be given
 * @param listener - called with `{ grace }` when shutdown begins
 * @returns a function that unregisters the listener
 * @throws TypeError for anything that is not a Node server, or a listener that is not a function
 *
 * @example
 * ```ts
 * const wss = new WebSocketServer({ server })
 * onShutdown(server, () => {
 *   for (const client of wss.clients) client.close(1001, 'server shutting down')
 * })
 * ```
 */
export function onShutdown(server: HttpServer, listener: (notice: ShutdownNotice) => void): () => void {
  checkServer('onShutdown()', server)
  checkFunction('listener', listener)
  const { shutdownListeners } = trackServer(server)
  // A wrapper per registration, so that the same function registered twice is called twice.
  const entry = (notice: ShutdownNotice) => listener(notice)
  shutdownListeners.add(entry)
  return () => {
    shutdownListeners.delete(entry)
  }
}

/**
 * Tells the listeners registered with {@link onShutdown} that shutdown began.
 *
 * @internal
 */
export function notifyShutdown(state: ServerState, notice: ShutdownNotice): void {
  for (const listener of state.shutdownListeners) {
    try {
      listener(notice)
    } catch (error) {
      // Crashing here would drop the very requests shutdown is there to finish.
      process.emitWarning(error instanceof Error ? error : String(error), { type: 'TetherShutdownListenerError' })
    }
  }
  state.shutdownListeners.clear()
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
