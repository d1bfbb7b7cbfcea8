import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { checkServer } from './validate.js'

/**
 * The connections of a server, as shutdown needs to see them. Node keeps its own list but shows it
 * only through `closeIdleConnections()` and `closeAllConnections()`; shutdown needs to look at each
 * connection (is a response in progress? has anything been read?), so tether keeps its own set.
 *
 * Tracking starts when a server goes through `hardenServer()`, the Fastify plugin, or
 * `shutdown()`, or when the first request reaches a tether adapter; sockets that carry a request
 * are adopted then, so nothing that ever served a request is missed.
 */

/** @internal */
export interface ServerState {
  readonly server: Server
  readonly sockets: Set<Socket>
  /** The running shutdown, once one has started. */
  shutdown: Promise<unknown> | undefined
}

const kTracked = Symbol.for('tether.tracked')
const kState = Symbol.for('tether.serverStates')
type TrackedSocket = Socket & { [kTracked]?: true }

// Shared across copies of the package, like the registry: a shutdown must see every connection.
const globals = globalThis as { [kState]?: WeakMap<Server, ServerState> }
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
export function trackServer(server: Server): ServerState {
  let state = states.get(server)
  if (state !== undefined) return state
  const created: ServerState = { server, sockets: new Set(), shutdown: undefined }
  state = created
  states.set(server, created)
  // An HTTPS server's requests arrive on the TLS socket, announced by 'secureConnection'.
  const event =
    typeof (server as { setSecureContext?: unknown }).setSecureContext === 'function'
      ? 'secureConnection'
      : 'connection'
  server.on(event, (socket: TrackedSocket) => remember(created, socket))
  return created
}

/**
 * Makes sure a request's socket is tracked. Called for every request, so the common case is one
 * property read: sockets accepted after tracking started are marked already.
 *
 * @internal
 */
export function adoptSocket(socket: Socket | null | undefined): Server | undefined {
  const server = (socket as (Socket & { server?: Server }) | null | undefined)?.server
  if (server === undefined || (socket as TrackedSocket)[kTracked] === true) return server
  remember(trackServer(server), socket as TrackedSocket)
  return server
}

/** The tracking state of a server, if it is tracked. @internal */
export function serverState(server: Server): ServerState | undefined {
  return states.get(server)
}

/**
 * Starts tracking a server's connections, so that `shutdown()` also sees connections accepted
 * before their first request reached tether (and treats them as in flight, not idle).
 * `hardenServer()` and the Fastify plugin do it; call it yourself for an Express server you do not
 * harden, right after `listen()`.
 *
 * @returns the same server
 */
export function trackConnections<S extends Server>(server: S): S {
  checkServer('trackConnections()', server)
  trackServer(server)
  return server
}
