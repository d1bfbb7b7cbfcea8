import {
  constants,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type ServerHttp2Stream,
} from 'node:http2'
import type { Socket } from 'node:net'
import { counters } from '../primitives/index.js'
import { setCheck } from './checker.js'
import { answerBody, SHUTTING_DOWN } from './response.js'

// The HTTP/2 check's slot in the server's checker (see checker.ts): shared, so that hardening the
// same server again from another copy replaces this check instead of adding a second one.
const kSessionsCheck = Symbol.for('tether.sessionsCheck')

const {
  HTTP2_HEADER_CONTENT_LENGTH,
  HTTP2_HEADER_CONTENT_TYPE,
  HTTP2_HEADER_STATUS,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_NO_ERROR,
} = constants

// Sessions and streams of an HTTP/2 server, as shutdown and hardening need to see them: what
// protocol.ts says about the protocols, for the unit HTTP/2 multiplexes requests on.

// What a session carries from the copy of the package that tracks its server (the sessions are in
// the server's state, which every copy shares: see connections.ts) to the copy that hardens or
// shuts that server down, or binds its requests: shared keys. The copy that tracks the server
// adopts each session and notes each stream it opens; the hardening copy's check reads both
// (without the opened stream, a header block stalled on a later stream looks idle, and waits
// keepAliveTimeout instead of headersTimeout); the shutting-down copy ends the raw socket.
const kActiveAt = Symbol.for('tether.session.activeAt')
const kLastStream = Symbol.for('tether.session.lastStreamId')
const kOpenedStream = Symbol.for('tether.session.openedStreamId')
const kRawSocket = Symbol.for('tether.session.rawSocket')
const kServerOf = Symbol.for('tether.session.server')
const kStreams = Symbol.for('tether.session.streams')
// Marks a session's socket as tracked, as connections.ts marks HTTP/1.1 sockets (the same key).
const kTracked = Symbol.for('tether.tracked')
// Read only by the code that wrote them: the check's own dates for a stream, and the socket's way
// back to its session, read by the 'connection' listener of the copy that adopted the session.
const kBornAt = Symbol('tether.bornAt')
const kEndedAt = Symbol('tether.endedAt')
const kSessionOf = Symbol('tether.sessionOf')

/** The open streams of a session: Node's own map, or tether's set where that is not reachable. */
interface StreamList {
  readonly size: number
  values(): IterableIterator<ServerHttp2Stream>
}

/** @internal */
export type TrackedSession = Http2Session & {
  /** The server that accepted it. */
  [kServerOf]: Http2Server | Http2SecureServer
  /** When the checker last saw the session busy (streams open or new ones since), in ms. */
  [kActiveAt]: number
  /** The last stream id the checker saw processed (0: no stream was ever opened). */
  [kLastStream]: number
  /** The id of the last stream whose headers Node received in full (0: none yet). */
  [kOpenedStream]: number
  /** The session's socket itself (`session.socket` is a proxy that refuses `destroy()`). */
  [kRawSocket]?: Socket
  /** Open streams, kept by tether only where Node's own list is not reachable. */
  [kStreams]?: Set<ServerHttp2Stream>
}
/** @internal */
export type TrackedStream = ServerHttp2Stream & { [kBornAt]?: number; [kEndedAt]?: number }

/** The HTTP/2 side of a tracked server. @internal */
export interface SessionState {
  readonly server: Http2Server | Http2SecureServer
  readonly sessions: Set<TrackedSession>
  /** Called when a session, or a stream shutdown waits for, closes. */
  onChange: (() => void) | undefined
  /** Whether streams are tracked one by one (Node's own list was not reachable). */
  perStream: boolean
}

// Node keeps each session's open streams in a map on an internal `state` record (since Node 8).
// Reading it when shutdown or the hardening checker needs it costs nothing per request, where a
// 'stream' listener with a 'close' listener per stream cost a fifth of a hello-world request's
// CPU. If a Node version ever moves it, tether falls back to tracking streams itself (tested by
// test/http2-stream-list-fallback.test.ts, which hides the map).
let nodeStateKey: symbol | null | undefined

function nodeStreams(session: Http2Session): StreamList | undefined {
  if (nodeStateKey === undefined) {
    nodeStateKey = Object.getOwnPropertySymbols(session).find((key) => key.description === 'state') ?? null
  }
  if (nodeStateKey === null) return undefined
  const streams = (session as unknown as Record<symbol, { streams?: StreamList } | undefined>)[nodeStateKey]?.streams
  return typeof streams?.size === 'number' && typeof streams.values === 'function' ? streams : undefined
}

const noStreams: StreamList = new Set()

/** The open streams of a tracked session. @internal */
export function streamsOf(session: TrackedSession): StreamList {
  return session[kStreams] ?? nodeStreams(session) ?? noStreams
}

/**
 * Starts tracking the sessions of an HTTP/2 server. Each session's socket is marked tracked, so
 * the connection bookkeeping of HTTP/1.1 (used for `allowHTTP1` clients) leaves it to the
 * session: Node emits 'session' before the 'connection' listeners tether adds.
 *
 * @internal
 */
export function trackSessions(server: Http2Server | Http2SecureServer): SessionState {
  const state: SessionState = { server, sessions: new Set(), onChange: undefined, perStream: false }
  server.on('session', (session: Http2Session) => adoptSession(state, session))
  return state
}

/**
 * The server of a request's stream, tracking its session if it was accepted before tracking
 * began. One property read for a tracked session: no `req.socket`, which on HTTP/2 builds a proxy
 * per request.
 *
 * @internal
 */
export function serverOfStream(stream: ServerHttp2Stream): Http2Server | Http2SecureServer | undefined {
  const session = stream.session as TrackedSession | undefined
  return session?.[kServerOf]
}

/** Tracks the session of a stream accepted before its server was tracked. @internal */
export function adoptStream(state: SessionState, stream: ServerHttp2Stream): void {
  const session = stream.session as TrackedSession | undefined
  if (session === undefined || session[kServerOf] !== undefined) return
  adoptSession(state, session)
  if (stream.id !== undefined) session[kOpenedStream] = stream.id
  session[kStreams]?.add(stream)
}

function adoptSession(state: SessionState, session: Http2Session): void {
  const tracked = session as TrackedSession
  tracked[kServerOf] = state.server
  tracked[kActiveAt] = Date.now()
  tracked[kLastStream] = 0
  tracked[kOpenedStream] = 0
  // nghttp2 counts a stream as processed from its first HEADERS frame, Node announces it once the
  // header block is complete: the gap between the two is a header block still arriving. One
  // listener per session, not per stream.
  session.on('stream', noteOpened)
  if (nodeStreams(session) === undefined) {
    tracked[kStreams] = new Set()
    if (!state.perStream) {
      state.perStream = true
      state.server.on('stream', trackStream)
    }
  }
  // Through the session's socket proxy, this marks the socket itself (the proxy forwards sets).
  const socket = session.socket as unknown as Record<symbol, unknown>
  socket[kTracked] = true
  socket[kSessionOf] = session
  state.sessions.add(tracked)
  session.once('close', () => {
    state.sessions.delete(tracked)
    state.onChange?.()
  })
}

function noteOpened(this: TrackedSession, stream: ServerHttp2Stream): void {
  if (stream.id !== undefined && stream.id > this[kOpenedStream]) this[kOpenedStream] = stream.id
}

function trackStream(stream: ServerHttp2Stream): void {
  const streams = (stream.session as TrackedSession | undefined)?.[kStreams]
  if (streams === undefined) return
  streams.add(stream)
  stream.once('close', () => streams.delete(stream))
}

/**
 * Called with each socket the server accepts that carries a tracked session: keeps the socket
 * itself on its session, so that closing the session can end the socket too.
 *
 * @internal
 */
export function linkSessionSocket(socket: Socket): void {
  const session = (socket as Socket & { [kSessionOf]?: TrackedSession })[kSessionOf]
  if (session !== undefined) session[kRawSocket] = socket
}

/** What shutdown saw of the HTTP/2 side when it began. @internal */
export interface SessionDrain {
  /** Streams in flight when shutdown began (responses not finished). */
  readonly pending: Set<ServerHttp2Stream>
  /** Sessions with no open stream, closed at once. */
  idleClosed: number
  /** In-flight streams that finished normally since. */
  finished: number
}

/**
 * Begins a graceful close of every session: GOAWAY to each at once (Node's `session.close()`,
 * a GOAWAY naming the last stream processed), so clients open no new stream, and a stream opened
 * regardless is ignored by nghttp2 and seen by its client as refused (`REFUSED_STREAM`: nothing
 * was processed, safe to retry). Open streams go on. Node destroys each session once its open
 * streams end. Streams in flight are counted as they finish, until `passed()` says the grace is
 * over.
 *
 * RFC 9113 §6.8 also describes a first GOAWAY with the largest stream id, then the real one a
 * round trip later, so that streams already on the wire are served rather than refused. tether
 * does not: Node's own client stops answering PINGs once it has seen a GOAWAY, and holds a
 * request it had not yet sent until the second one, so the first step only delays the refusal,
 * and a refused request is safe to retry anyway.
 *
 * @internal
 */
export function drainSessions(state: SessionState, passed: () => boolean): SessionDrain {
  const drain: SessionDrain = { pending: new Set(), idleClosed: 0, finished: 0 }
  for (const session of state.sessions) {
    const streams = streamsOf(session)
    if (streams.size === 0) drain.idleClosed++
    for (const stream of streams.values()) {
      if (stream.writableFinished) continue // a response still being delivered is in flight
      drain.pending.add(stream)
      stream.once('close', () => {
        drain.pending.delete(stream)
        if (!passed() && stream.writableEnded && stream.rstCode === NGHTTP2_NO_ERROR) drain.finished++
        // The session may be closed and now empty: see closeSession.
        setImmediate(destroyIfClosed, session)
        state.onChange?.()
      })
    }
    closeSession(session)
  }
  return drain
}

// The answer shutdown gives HTTP/1.1 requests, in its HTTP/2 form (no Retry-After there, as before).
const SHUTDOWN_BODY = answerBody(SHUTTING_DOWN)

/**
 * After the grace: streams tether does not own (requests that never reached a tether adapter)
 * are answered 503 if nothing was sent, or reset with `INTERNAL_ERROR` if a part was. tether's
 * own requests have been answered through their scopes already.
 *
 * @internal
 */
export function abandonStreams(drain: SessionDrain): number {
  let aborted = 0
  for (const stream of drain.pending) {
    aborted++
    if (stream.closed || stream.destroyed || stream.writableEnded) continue
    if (stream.headersSent) stream.close(NGHTTP2_INTERNAL_ERROR)
    else {
      stream.respond({
        [HTTP2_HEADER_STATUS]: SHUTTING_DOWN.statusCode,
        [HTTP2_HEADER_CONTENT_TYPE]: 'application/json; charset=utf-8',
        [HTTP2_HEADER_CONTENT_LENGTH]: Buffer.byteLength(SHUTDOWN_BODY),
      })
      stream.end(SHUTDOWN_BODY)
    }
  }
  return aborted
}

/** Destroys every session left, and its socket (after the flush bound). @internal */
export function destroySessions(state: SessionState): void {
  for (const session of state.sessions) {
    session.destroy()
    session[kRawSocket]?.destroy()
  }
}

/** The parts of hardening HTTP/2 sessions and streams read. @internal */
export interface SessionLimits {
  readonly headersTimeout: number
  readonly requestTimeout: number
  readonly keepAliveTimeout: number
  readonly checkInterval: number
  readonly maxConcurrentStreams: number
  readonly maxIdleConnections: number
  readonly writeTimeout: number
}

/**
 * Bounds HTTP/2 sessions and streams the way hardening bounds HTTP/1.1 connections. Node's own
 * HTTP/1.1 timeouts (`headersTimeout`, `requestTimeout`, `keepAliveTimeout`) are never read for
 * HTTP/2 sessions, so one checker per server, every `checkInterval`, walks them:
 *
 * - a session that has opened no stream within `headersTimeout` of being accepted (it sends
 *   nothing, or never completes a HEADERS block: HTTP/2's slowloris), or whose header block for a
 *   later stream is not complete within `headersTimeout` of its first frame, is closed;
 * - a session with no open stream for `keepAliveTimeout` gets GOAWAY and is closed;
 * - a stream whose request (headers and body) is not complete within `requestTimeout` is
 *   answered 408 and reset, as Node answers an HTTP/1.1 request that takes too long;
 * - a stream whose response the handler has ended but which the client has not taken within
 *   `writeTimeout` (a slow reader shows as a flow-control window that stays shut) is reset with
 *   `INTERNAL_ERROR` and counted as `writeTimeouts`;
 * - past `maxIdleConnections` idle sessions, those idle longest get GOAWAY and are closed
 *   (counted as `idleEvicted`);
 * - each session allows at most `maxConcurrentStreams` streams at once (the SETTINGS value Node
 *   otherwise leaves unbounded).
 *
 * A client that opens and resets streams in a flood (CVE-2023-44487) is bounded by Node's own
 * nghttp2 limits, which close the session with ENHANCE_YOUR_CALM; tether leaves them on.
 *
 * @internal
 */
export function hardenSessions(
  server: Http2Server | Http2SecureServer,
  state: SessionState,
  limits: SessionLimits,
): void {
  server.updateSettings({ maxConcurrentStreams: limits.maxConcurrentStreams })
  setCheck(server, kSessionsCheck, limits.checkInterval, () => checkSessions(state, limits))
}

/**
 * `session.close()`, made to finish. Node destroys a closed session when its last stream ends,
 * but only if nothing is waiting to be written at that moment, and the GOAWAY that close() just
 * queued always is: a closed session with no stream would then wait for the client to hang up.
 * So tether destroys it itself on the next turn of the event loop, once the GOAWAY is out.
 */
function closeSession(session: TrackedSession): void {
  if (!session.closed && !session.destroyed) session.close()
  if (streamsOf(session).size === 0) setImmediate(destroyIfClosed, session)
}

function destroyIfClosed(session: TrackedSession): void {
  if (!(session.closed || session.destroyed) || streamsOf(session).size !== 0) return
  if (!session.destroyed) session.destroy()
  // A session closed gracefully leaves its socket half-open until the peer closes its side
  // (Node's finishSessionClose), which a peer that never does would hold forever: end it here,
  // once what was written is flushed.
  session[kRawSocket]?.destroySoon()
}

function checkSessions(state: SessionState, limits: SessionLimits): void {
  const now = Date.now()
  let idle = 0
  for (const session of state.sessions) {
    if (session.destroyed) continue
    const streams = streamsOf(session)
    if (session.closed) {
      // Closed by someone else (Fastify's http2SessionTimeout, the client's GOAWAY): see closeSession.
      if (streams.size === 0) destroyIfClosed(session)
      continue
    }
    // A header block begun and not finished: the stream is half-open in nghttp2, and not yet one
    // of Node's. Only headersTimeout bounds it, whatever else the session does (slowloris).
    const last = session.state.lastProcStreamID ?? 0
    const headersPending = last > session[kOpenedStream]
    // Busy since the last check: a stream began (its headers may still be arriving), or streams
    // are open with no header block pending.
    if (last !== session[kLastStream] || (streams.size > 0 && !headersPending)) {
      session[kLastStream] = last
      session[kActiveAt] = now
    } else {
      const quiet = now - session[kActiveAt]
      const bound = last === 0 || headersPending ? limits.headersTimeout : limits.keepAliveTimeout
      if (quiet >= bound) closeSession(session)
      else if (last > 0 && !headersPending) idle++
    }
    for (const stream of streams.values() as IterableIterator<TrackedStream>) checkStream(stream, limits, now)
  }
  if (idle > limits.maxIdleConnections) evictIdle(state, idle - limits.maxIdleConnections)
}

/** Bounds one stream: its request by `requestTimeout`, its delivery by `writeTimeout`. */
function checkStream(stream: TrackedStream, limits: SessionLimits, now: number): void {
  if (stream.closed || stream.destroyed) return
  if (limits.writeTimeout > 0 && stream.writableEnded && !stream.writableFinished) {
    // Ended by the handler, not yet taken by the client: dated when first seen so.
    const ended = stream[kEndedAt]
    if (ended === undefined) stream[kEndedAt] = now
    else if (now - ended >= limits.writeTimeout) {
      counters.writeTimeouts++
      stream.close(NGHTTP2_INTERNAL_ERROR)
      return
    }
  }
  if (limits.requestTimeout === 0) return
  // Dated when first seen: a request is cut within requestTimeout plus one interval.
  const born = stream[kBornAt]
  if (born === undefined) {
    stream[kBornAt] = now
    return
  }
  if (now - born < limits.requestTimeout) return
  // The request has arrived in full once the client has ended its side of the stream.
  if (stream.endAfterHeaders || stream.state.remoteClose === 1) return
  if (stream.headersSent) stream.close(NGHTTP2_INTERNAL_ERROR)
  else {
    stream.respond({ [HTTP2_HEADER_STATUS]: 408 }, { endStream: true })
    stream.close(NGHTTP2_NO_ERROR)
  }
}

/** Closes the `count` sessions idle longest (rare: only past `maxIdleConnections`). */
function evictIdle(state: SessionState, count: number): void {
  const idle = [...state.sessions]
    .filter((session) => !session.closed && !session.destroyed && streamsOf(session).size === 0)
    .filter((session) => session[kLastStream] > 0 && session[kLastStream] <= session[kOpenedStream])
    .sort((a, b) => a[kActiveAt] - b[kActiveAt])
  for (const session of idle.slice(0, count)) {
    counters.idleEvicted++
    closeSession(session)
  }
}
