import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { checkCount, counters } from '../primitives/index.js'
import { setCheck } from './checker.js'
import { connectionPhase, trackServer } from './connections.js'

/**
 * A bound on the number of idle keep-alive connections a server holds. `keepAliveTimeout` must
 * outlast the balancers in front (60 s), so it no longer bounds how many idle connections a
 * server can be made to hold: direct clients that open connections and leave them idle keep each
 * one for 66 s. Past `maxIdleConnections`, the connections idle longest are closed.
 *
 * One unref'd interval per server, every `checkInterval`: nothing is done per request.
 */

const kIdleSince = Symbol('tether.idleSince')
const kIdleRead = Symbol('tether.idleRead')
// The check's slot in the server's checker, shared like the checker (see checker.ts); the idle
// marks above are only read by the check that wrote them.
const kIdleWatcher = Symbol.for('tether.idleWatcher')

type IdleSocket = Socket & {
  [kIdleSince]?: number | undefined
  [kIdleRead]?: number
}

/**
 * Validates `maxIdleConnections`.
 *
 * @throws TypeError/RangeError naming the option and the value received
 * @internal
 */
export function resolveMaxIdle(value: unknown): number {
  return value === undefined ? 10_000 : checkCount('maxIdleConnections', value, { min: 0 })
}

/**
 * Whether a connection is idle between requests (see {@link connectionPhase}: it has served one,
 * no response is in it and it was not upgraded), nothing waits to be sent, and nothing has been
 * read since it was last seen idle (a request's first bytes may be arriving).
 */
function isIdle(socket: IdleSocket, now: number): boolean {
  const idle = !socket.destroyed && connectionPhase(socket) === 'idle' && socket.writableLength === 0
  if (!idle) {
    if (socket[kIdleSince] !== undefined) socket[kIdleSince] = undefined
    return false
  }
  if (socket[kIdleSince] === undefined) {
    socket[kIdleSince] = now
    socket[kIdleRead] = socket.bytesRead
  } else if (socket[kIdleRead] !== socket.bytesRead) {
    // A request is arriving: idle again only from here, and not to be closed now.
    socket[kIdleSince] = now
    socket[kIdleRead] = socket.bytesRead
    return false
  }
  return true
}

/**
 * Closes a server's longest-idle keep-alive connections while it holds more than `max`. Called by
 * `hardenServer()`; calling it again replaces the bound.
 *
 * @internal
 */
export function watchIdle(server: Server, max: number, checkInterval: number): void {
  const sockets = trackServer(server).sockets as Set<IdleSocket>
  const off = max === Number.POSITIVE_INFINITY
  setCheck(
    server,
    kIdleWatcher,
    checkInterval,
    off
      ? undefined
      : () => {
          const now = Date.now()
          let idle = 0
          for (const socket of sockets) if (isIdle(socket, now)) idle++
          if (idle <= max) return
          // Over the bound, which is rare: only then is the idle list built and sorted.
          const oldest = [...sockets]
            .filter((socket) => socket[kIdleSince] !== undefined && socket[kIdleRead] === socket.bytesRead)
            .sort((a, b) => (a[kIdleSince] as number) - (b[kIdleSince] as number))
          for (const socket of oldest.slice(0, idle - max)) {
            counters.idleEvicted++
            socket.destroy()
          }
        },
  )
}
