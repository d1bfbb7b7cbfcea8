import diagnostics from 'node:diagnostics_channel'
import type { Scope } from '../primitives/index.js'
import type { HttpRequest, HttpResponse } from '../server/index.js'

// A request's own lifecycle events on `node:diagnostics_channel`; the channels every layer
// publishes on (deadline, shed, lingering) live in primitives/diagnostics.ts.

/** A request's scope was created (the adapter attached it): {@link RequestStartMessage}. */
export const REQUEST_START_CHANNEL = 'tether:request:start'
/**
 * A request's scope ended, with why: {@link RequestEndMessage}.
 *
 * @example
 * ```ts
 * import diagnostics from 'node:diagnostics_channel'
 * diagnostics.subscribe(REQUEST_END_CHANNEL, (message) => {
 *   const { route, reason, durationMs } = message as RequestEndMessage
 *   if (reason === 'deadline') log.warn({ route, durationMs }, 'deadline missed')
 * })
 * ```
 */
export const REQUEST_END_CHANNEL = 'tether:request:end'
/**
 * Why a request's scope ended:
 * - `finished`: the handler ended the response (normal completion; a deadline passing while the
 *   answer is still being delivered is a finished request too);
 * - `deadline`: its deadline passed first (`DeadlineExceededError`);
 * - `hang-up`: the client closed the connection, or reset the HTTP/2 stream, before the response
 *   was finished (`CanceledError`): a cancellation, not a server error;
 * - `shutdown`: the shutdown grace period ran out (`ShutdownError`);
 * - `canceled`: the application cancelled the scope itself (`scope.cancel()`).
 */
export type RequestEndReason = 'finished' | 'deadline' | 'hang-up' | 'shutdown' | 'canceled'

/** Published on {@link REQUEST_START_CHANNEL}, synchronously, in the request's async context. */
export interface RequestStartMessage {
  /** The request's scope: the key to correlate this request's other events with. */
  readonly scope: Scope
  readonly method: string
  /** The request's deadline, epoch ms, or `undefined` without one. */
  readonly deadline: number | undefined
  /** Node's request object (`http.IncomingMessage` or `http2.Http2ServerRequest`). */
  readonly request: HttpRequest
  /** Node's response object. */
  readonly response: HttpResponse
}

/** Published on {@link REQUEST_END_CHANNEL} once per request, when its scope ends. */
export interface RequestEndMessage {
  /** The request's scope, the one {@link RequestStartMessage} carried. */
  readonly scope: Scope
  readonly method: string
  /** The route pattern (`/users/:id`), or `null` when the framework matched none. */
  readonly route: string | null
  readonly reason: RequestEndReason
  /** The scope's abort reason (`DeadlineExceededError`, `CanceledError`, ...); `undefined` when `finished`. */
  readonly error: unknown
  /** Milliseconds from the request's arrival to the end of its scope. */
  readonly durationMs: number
}

/** @internal */
export const requestStartChannel = diagnostics.channel(REQUEST_START_CHANNEL)
/** @internal */
export const requestEndChannel = diagnostics.channel(REQUEST_END_CHANNEL)
