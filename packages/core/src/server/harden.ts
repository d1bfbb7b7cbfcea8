import type { Server } from 'node:http'
import { checkCount, checkDuration, checkOptionsObject, checkTimeout, optional, received } from '../primitives/index.js'
import { trackServer } from './connections.js'
import { type DeliveryOptions, type DeliverySettings, resolveDelivery, watchDelivery } from './delivery.js'
import { resolveMaxIdle, watchIdle } from './idle.js'
import { checkServer, type HttpServer, isHttp2Server } from './protocol.js'
import { hardenSessions } from './sessions.js'

/**
 * Options of {@link hardenServer}. All optional; each is in milliseconds, but `minResponseRate`
 * (bytes per second). The write side (`writeTimeout`, `minResponseRate`, `minRateGrace`) is
 * described with {@link DeliveryOptions}.
 */
export interface HardenOptions extends DeliveryOptions {
  /**
   * How long a client may take to send the request headers (Node's `server.headersTimeout`): a
   * client that trickles its headers (slowloris) is cut with 408 after this, within one
   * `checkInterval`. Must be > 0 and no longer than `requestTimeout`.
   * @default 10000 (Node: 60000)
   */
  readonly headersTimeout?: number
  /**
   * How long a client may take to send the whole request, body included (Node's
   * `server.requestTimeout`). `0` disables it, for servers that accept long uploads.
   * @default 30000 (Node: 300000; Fastify: 0, disabled)
   */
  readonly requestTimeout?: number
  /**
   * How long an idle keep-alive connection is kept open (Node's `server.keepAliveTimeout`), and
   * the `Keep-Alive: timeout=` Node announces. Node itself waits one second more before it
   * closes the socket (`keepAliveTimeoutBuffer`), so that clients honouring the header close
   * first. Behind a load balancer it must be longer than the balancer's own idle timeout, or
   * requests race the close and get 502: the default outlasts nginx's `keepalive_timeout` and
   * AWS ALB's idle timeout (both 60 s). Must be > 0.
   * @default 65000 (idle sockets close after 66 s; Node: 5000; Fastify: 72000)
   */
  readonly keepAliveTimeout?: number
  /**
   * How many idle keep-alive connections the server may hold; past it, the connections idle
   * longest are closed (counted as `idleEvicted`). With a keep-alive timeout that outlasts the
   * balancers in front, this is what bounds idle connections opened by direct clients. Behind a
   * balancer, keep it above the balancer's own pool (nginx's `keepalive`, ALB's connections per
   * target): closing a connection the balancer still pools races its next request. An integer
   * ≥ 0, or `Infinity` for no bound.
   * @default 10000
   */
  readonly maxIdleConnections?: number
  /**
   * How often Node checks the header and request timeouts (`connectionsCheckingInterval`). Node
   * checks every 30 s by default, so a slow client can hold a socket 30 s past its timeout.
   * @default 1000
   */
  readonly checkInterval?: number
  /**
   * HTTP/2 only: how many streams (requests) one session may have open at once, announced to
   * clients in SETTINGS. Node leaves it unbounded, so one connection could hold any number of
   * requests in flight.
   * @default 100 (Node: 4294967295; Go's http2 server: 250)
   */
  readonly maxConcurrentStreams?: number
}

const HARDEN_OPTIONS = [
  'headersTimeout',
  'requestTimeout',
  'keepAliveTimeout',
  'checkInterval',
  'writeTimeout',
  'minResponseRate',
  'minRateGrace',
  'maxIdleConnections',
  'maxConcurrentStreams',
]

/** The limits {@link hardenServer} applies: timeouts in milliseconds, `minResponseRate` in bytes/s. */
export interface HardenedTimeouts extends DeliverySettings {
  readonly maxIdleConnections: number
  readonly headersTimeout: number
  readonly requestTimeout: number
  readonly keepAliveTimeout: number
  readonly checkInterval: number
  readonly maxConcurrentStreams: number
}

/**
 * Validates hardening options and fills in the defaults.
 *
 * @throws TypeError/RangeError naming the option and the value received, or the inconsistency
 */
export function resolveHardening(options?: HardenOptions): HardenedTimeouts {
  checkOptionsObject('hardenServer()', options, HARDEN_OPTIONS)
  const headersTimeout = checkTimeout('headersTimeout', optional(options?.headersTimeout, 10_000))
  const requestTimeout = checkDuration('requestTimeout', optional(options?.requestTimeout, 30_000))
  const keepAliveTimeout = checkTimeout('keepAliveTimeout', optional(options?.keepAliveTimeout, 65_000))
  const checkInterval = checkTimeout('checkInterval', optional(options?.checkInterval, 1_000))
  // HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS is a 32-bit value.
  const maxConcurrentStreams = checkCount('maxConcurrentStreams', optional(options?.maxConcurrentStreams, 100), {
    allowInfinity: false,
  })
  if (maxConcurrentStreams > 2 ** 32 - 1) {
    throw new RangeError(
      `\`maxConcurrentStreams\` must be at most 4294967295 (an HTTP/2 SETTINGS value), received ${received(maxConcurrentStreams)}`,
    )
  }
  if (requestTimeout !== 0 && headersTimeout > requestTimeout) {
    throw new RangeError(
      `\`headersTimeout\` (${received(headersTimeout)}) must not be longer than \`requestTimeout\` (${received(requestTimeout)}): the headers are part of the request`,
    )
  }
  const maxIdleConnections = resolveMaxIdle(options?.maxIdleConnections)
  return {
    headersTimeout,
    requestTimeout,
    keepAliveTimeout,
    checkInterval,
    maxIdleConnections,
    maxConcurrentStreams,
    ...resolveDelivery(options),
  }
}

type CheckingServer = Server & { connectionsCheckingInterval?: number }

/**
 * Node sets up its timeout checker when the server starts listening, from
 * `server.connectionsCheckingInterval`. Before that, setting the property is enough; after, the
 * checker is set up again through Node's own 'listening' handler (`setupConnectionsTracking`, in
 * Node 18 to 24), which clears the old interval first.
 */
function setCheckInterval(server: CheckingServer, ms: number): void {
  server.connectionsCheckingInterval = ms
  if (!server.listening) return
  const setup = server.listeners('listening').find((listener) => listener.name === 'setupConnectionsTracking')
  if (setup !== undefined) setup.call(server)
}

/**
 * Applies safe timeouts to a Node `http.Server` (the one `app.listen()` returns, or Fastify's
 * `app.server`): header and whole-request timeouts, the keep-alive idle timeout, and a checking
 * interval short enough that they are enforced promptly. It also starts tracking the server's
 * connections for {@link shutdown}. Call it right after creating or listening.
 *
 * On an HTTP/2 server (`node:http2`, or Fastify with `http2: true`), where Node reads none of
 * those settings, the same options bound sessions and streams: a session that opens no stream
 * within `headersTimeout` (it sends nothing, or never completes its headers) is closed; one with
 * no open stream for `keepAliveTimeout` gets GOAWAY and is closed; a stream whose request is not
 * complete within `requestTimeout` is answered 408 and reset; a stream whose ended response the
 * client does not take within `writeTimeout` is reset; past `maxIdleConnections` idle sessions,
 * those idle longest are closed; and each session may have at most `maxConcurrentStreams` streams
 * open. `minResponseRate` is HTTP/1.1's only: an HTTP/2 stream's progress is its flow-control
 * window, which `writeTimeout` bounds. HTTP/1.1 clients of an `allowHTTP1` server get the HTTP/1.1
 * timeouts.
 *
 * @param server - the server to harden: `node:http`, `node:https` or `node:http2`
 * @param options - `headersTimeout`, `requestTimeout`, `keepAliveTimeout`, `checkInterval` (ms),
 *   `maxConcurrentStreams` (HTTP/2)
 * @returns the same server
 * @throws TypeError/RangeError naming the option and the value received, or the inconsistency;
 *   TypeError for anything that is not a Node server (an Express app, a Fastify instance)
 *
 * @example
 * ```ts
 * const server = hardenServer(app.listen(3000), { keepAliveTimeout: 65_000 }) // behind a 60 s balancer
 * ```
 */
export function hardenServer<S extends HttpServer>(server: S, options?: HardenOptions): S {
  checkServer('hardenServer()', server)
  const timeouts = resolveHardening(options)
  // On an HTTP/2 server these serve its HTTP/1.1 clients (allowHTTP1) only.
  const http1 = server as Server
  http1.headersTimeout = timeouts.headersTimeout
  http1.requestTimeout = timeouts.requestTimeout
  http1.keepAliveTimeout = timeouts.keepAliveTimeout
  setCheckInterval(http1, timeouts.checkInterval)
  const state = trackServer(server)
  if (state.h2 !== undefined && isHttp2Server(server)) hardenSessions(server, state.h2, timeouts)
  watchDelivery(http1, timeouts, timeouts.checkInterval)
  watchIdle(http1, timeouts.maxIdleConnections, timeouts.checkInterval)
  return server
}
