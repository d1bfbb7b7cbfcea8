import type { Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { checkDuration, counters, optional, received } from '../primitives/index.js'
import { setCheck } from './checker.js'
import { connectionPhase, trackServer } from './connections.js'
import type { HttpResponse } from './protocol.js'

/**
 * The write side of a hardened server: Go's `WriteTimeout` and Kestrel's `MinResponseDataRate`.
 *
 * Node has no write deadline. `server.timeout` is an inactivity timer that a client reading a few
 * bytes a second resets forever, and a response written in one go (`res.end(buf)`, `res.json()`,
 * `reply.send(buffer)`) sits in the socket's buffer, whole, until the client has read it. So a
 * slow reader holds its connection and its response in memory for as long as it likes.
 *
 * One unref'd interval per server looks at its connections every `checkInterval`; only those
 * with bytes the kernel has not accepted yet are examined further. Nothing is done per request.
 */

/** Options of the write side, taken by `hardenServer()` and the Fastify plugin's `harden`. */
export interface DeliveryOptions {
  /**
   * Milliseconds a response may take to reach the client once the handler has ended it (Go's
   * `WriteTimeout`, counted from the end of the handler, as the deadline covers the handler): a
   * connection whose finished response is still not handed to the kernel after this is cut and
   * counted as `writeTimeouts`. It only concerns what is left to send once the response is
   * ended, so a streamed response is bounded by the request's deadline and by
   * `minResponseRate` instead. `0` disables it.
   * @default 30000
   */
  readonly writeTimeout?: number
  /**
   * The slowest a client may read a response that is waiting for it, in bytes per second, as an
   * average over the whole time bytes have been waiting for it (Kestrel's `MinResponseDataRate`):
   * once they have waited `minRateGrace`, a connection whose client has taken fewer bytes than
   * this rate allows is cut and counted as `slowReaders`. A connection with nothing left to send
   * is never measured, so a quiet stream (server-sent events) is not affected, and neither is a
   * response small enough for the kernel's socket buffers to take whole.
   * Measured on plain TCP only: over TLS (an `https` server), Node does not show how much the
   * kernel has taken, and on HTTP/2 a stream's progress is its flow-control window, so there only
   * `writeTimeout` applies. `0` disables it.
   * @default 240
   */
  readonly minResponseRate?: number
  /**
   * How long bytes may wait for a client before its rate is first measured, in milliseconds.
   * The kernel hands buffer space back in lumps of up to a third of the socket's send buffer
   * (about 1.4 MB at most on Linux's defaults), so a client is only seen to read once it has read
   * such a lump: one that reads slower than a lump per `minRateGrace` (280 KB/s at the default,
   * in the worst case) can be cut. Raise it for big responses to clients on slow links.
   * @default 5000
   */
  readonly minRateGrace?: number
}

/** The write-side settings in force, filled in. */
export interface DeliverySettings {
  readonly writeTimeout: number
  readonly minResponseRate: number
  readonly minRateGrace: number
}

/**
 * Whether the handler is done with a response: it has called `end()`, so nothing more will be
 * written, though the bytes may still be on their way to the client. This is where a request
 * stops being in flight and its deadline stops applying; from here its delivery is bounded by
 * `writeTimeout` and `minResponseRate`. (`writableFinished`, every byte handed to the kernel,
 * would let a slow reader turn a prompt answer into a deadline miss.)
 *
 * @internal
 */
export function handlerEnded(res: HttpResponse): boolean {
  return res.writableEnded
}

/**
 * Validates the write-side options and fills in the defaults.
 *
 * @throws TypeError/RangeError naming the option and the value received
 * @internal
 */
export function resolveDelivery(options?: DeliveryOptions): DeliverySettings {
  // The options object itself (its keys among them) is hardenServer()'s to check.
  const writeTimeout = checkDuration('writeTimeout', optional(options?.writeTimeout, 30_000))
  const minResponseRate = options?.minResponseRate === undefined ? 240 : options.minResponseRate
  if (typeof minResponseRate !== 'number') {
    throw new TypeError(
      `\`minResponseRate\` must be a number of bytes per second, received ${received(minResponseRate)}`,
    )
  }
  if (!(minResponseRate >= 0 && Number.isFinite(minResponseRate))) {
    throw new RangeError(
      `\`minResponseRate\` must be a finite number ≥ 0 (bytes per second), received ${received(minResponseRate)}`,
    )
  }
  const minRateGrace = checkDuration('minRateGrace', optional(options?.minRateGrace, 5_000))
  if (minResponseRate > 0 && minRateGrace === 0) {
    throw new RangeError(
      `\`minRateGrace\` must be > 0 while \`minResponseRate\` is on (${received(minResponseRate)}), received 0`,
    )
  }
  return { writeTimeout, minResponseRate, minRateGrace }
}

/** What is known about a connection that has bytes waiting for its client. */
interface Watch {
  /** The response being delivered when the watch began: a new one starts a new watch. */
  res: ServerResponse
  /** When the wait began, and how much the kernel had taken then. */
  since: number
  deliveredBefore: number
  /** When the response was first seen ended with bytes still waiting; 0 until then. */
  endedAt: number
}

const kWatch = Symbol('tether.delivery')
// The check's slot in the server's checker, shared like the checker (see checker.ts). The watch
// above is only read by the check that wrote it: a check replaced by another copy starts afresh.
const kWatcher = Symbol.for('tether.deliveryWatcher')
type WatchedSocket = Socket & {
  /** True on a TLS socket. */
  encrypted?: boolean
  _httpMessage?: ServerResponse | null
  _bytesDispatched?: number
  _handle?: { writeQueueSize?: number } | null
  [kWatch]?: Watch | undefined
}

/**
 * How many bytes of a socket's output the kernel has taken. A write's callback, which shrinks
 * `writableLength`, runs only once the kernel has all of it: `res.end(buf)` of 12 MB keeps
 * `writableLength` at 12 MB until the last byte is out, so it says nothing about progress. Node's
 * own `bytesWritten` getter counts from `_bytesDispatched` (bytes handed to libuv, in Node 20 to
 * 24); libuv's `writeQueueSize` is what it has not passed on to the kernel yet.
 */
function accepted(socket: WatchedSocket): number {
  const dispatched = socket._bytesDispatched ?? socket.bytesWritten - socket.writableLength
  return dispatched - (socket._handle?.writeQueueSize ?? 0)
}

/**
 * Cuts a connection with a TCP reset. A plain `destroy()` closes the file descriptor but leaves
 * the kernel sending what it holds (up to the send buffer's size, megabytes) to a client that
 * reads at its own pace; a reset discards it at once, and the client sees ECONNRESET rather than
 * a response that looks merely slow.
 */
function cutConnection(socket: WatchedSocket): void {
  // A TLS socket's handle is not a TCP one, which `resetAndDestroy()` refuses with a throw.
  if (socket.encrypted) socket.destroy()
  else socket.resetAndDestroy()
}

function inspectSocket(socket: WatchedSocket, settings: DeliverySettings, now: number): void {
  // Nothing waiting for the client, the common case: one property read.
  if (socket.writableLength === 0 || socket.destroyed) {
    if (socket[kWatch] !== undefined) socket[kWatch] = undefined
    return
  }
  // Bytes waiting with no response in the connection: it was upgraded (a WebSocket), which is not
  // HTTP's to bound. (A response stays attached until the kernel has taken all of it.)
  if (connectionPhase(socket) !== 'active') {
    if (socket[kWatch] !== undefined) socket[kWatch] = undefined
    return
  }
  const res = socket._httpMessage as ServerResponse
  const delivered = accepted(socket)
  const watch = socket[kWatch]
  if (watch === undefined || watch.res !== res) {
    socket[kWatch] = { res, since: now, deliveredBefore: delivered, endedAt: handlerEnded(res) ? now : 0 }
    return
  }
  if (watch.endedAt === 0 && handlerEnded(res)) watch.endedAt = now
  const { writeTimeout, minResponseRate, minRateGrace } = settings
  if (writeTimeout > 0 && watch.endedAt > 0 && now - watch.endedAt >= writeTimeout) {
    counters.writeTimeouts++
    cutConnection(socket)
    return
  }
  // Over TLS, Node shows how much cleartext is waiting but not how much the kernel has taken
  // (the TLS layer writes to the TCP handle itself, and its queue size drops only once a whole
  // write is done): the rate cannot be measured there, only the write bound applies.
  if (socket.encrypted) return
  // The rate is the average since the wait began, not over a sliding window: the kernel takes
  // bytes back in lumps (a writer is woken only once a third or so of the send buffer is free,
  // up to about 1.4 MB on Linux's defaults), so a steady reader shows no progress for a while,
  // then a lot at once. Averaging over the whole wait lets every lump count.
  const elapsed = now - watch.since
  if (minResponseRate > 0 && elapsed >= minRateGrace) {
    if (((delivered - watch.deliveredBefore) * 1000) / elapsed < minResponseRate) {
      counters.slowReaders++
      cutConnection(socket)
    }
  }
}

/**
 * Bounds how long a server's responses may take to reach their clients (see
 * {@link DeliveryOptions}). Called by `hardenServer()`; calling it again replaces the settings.
 *
 * @param server - an HTTP/1 server
 * @param settings - resolved settings (see {@link resolveDelivery})
 * @param checkInterval - how often the connections are looked at, in ms
 * @internal
 */
export function watchDelivery(server: Server, settings: DeliverySettings, checkInterval: number): void {
  const off = settings.writeTimeout === 0 && settings.minResponseRate === 0
  const sockets = trackServer(server).sockets as Set<WatchedSocket>
  setCheck(
    server,
    kWatcher,
    checkInterval,
    off
      ? undefined
      : () => {
          const now = Date.now()
          for (const socket of sockets) inspectSocket(socket, settings, now)
        },
  )
}
