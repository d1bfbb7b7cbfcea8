/**
 * The errors tether decides on by itself. Everything else (a caller's own abort reason, a task's
 * failure) is passed through unchanged.
 *
 * Each class has a literal `name` and a stable `code`; the `isX()` guards test the code, so they
 * work across duplicated installs where `instanceof` does not. The HTTP fields (`statusCode`,
 * `status`, `expose`, `headers`) are the ones Express's finalhandler and Fastify's error handler
 * already understand, so an error that escapes a handler is answered sensibly by either framework.
 */

/** Fields shared by every tether error. */
export interface TetherErrorOptions {
  /** The underlying cause, as with the standard `Error` option. */
  readonly cause?: unknown
}

/** Base class of every error tether raises. */
export class TetherError extends Error {
  /** Stable, machine-readable code. */
  readonly code: string
  /** HTTP status a framework should answer with if this error escapes a handler. */
  readonly statusCode: number
  /** Alias of `statusCode`, read by Express (http-errors convention). */
  readonly status: number
  /** The message is safe to show to a client. */
  readonly expose = true

  /**
   * @param message - human-readable description
   * @param code - stable code, e.g. `TETHER_DEADLINE_EXCEEDED`
   * @param statusCode - HTTP status an adapter answers with
   * @param options - standard error options (`cause`)
   */
  constructor(message: string, code: string, statusCode: number, options?: TetherErrorOptions) {
    super(message, options)
    this.code = code
    this.statusCode = statusCode
    this.status = statusCode
  }
}

/**
 * What a missed deadline is answered with unless `status` says otherwise: 504, without
 * `Retry-After`. 503 with `Retry-After` is kept for work refused before it started (shed, shutdown).
 */
export const DEFAULT_DEADLINE_STATUS = 504

/**
 * The scope's deadline passed before the work finished. Its `statusCode` is 504 (the work ran
 * out of time: not safe to retry elsewhere, and no sign of an unhealthy server), or the `status`
 * of the request whose scope it comes from, so an error that escapes a handler is answered the
 * way tether's own deadline answer is.
 */
export class DeadlineExceededError extends TetherError {
  override readonly name = 'DeadlineExceededError' as const
  declare readonly code: 'TETHER_DEADLINE_EXCEEDED'

  /**
   * @param message - defaults to `deadline exceeded`
   * @param options - `cause`, and `statusCode` (default 504) for a framework to answer with
   */
  constructor(message = 'deadline exceeded', options?: TetherErrorOptions & { readonly statusCode?: number }) {
    super(message, 'TETHER_DEADLINE_EXCEEDED', options?.statusCode ?? DEFAULT_DEADLINE_STATUS, options)
  }
}

/**
 * The work is no longer wanted: the client went away, the response was finished, or someone
 * called `cancel()` without a reason of their own.
 */
export class CanceledError extends TetherError {
  override readonly name: 'CanceledError' | 'ShutdownError' = 'CanceledError'
  declare readonly code: 'TETHER_CANCELED' | 'TETHER_SHUTDOWN'

  /**
   * @param message - defaults to `canceled`
   */
  constructor(message = 'canceled', options?: TetherErrorOptions) {
    // 499 is the de facto "client closed request" status: nobody is usually there to read it.
    super(message, 'TETHER_CANCELED', 499, options)
  }
}

/** The server is shutting down and the grace period for in-flight work is over. */
export class ShutdownError extends CanceledError {
  override readonly name = 'ShutdownError' as const
  declare readonly code: 'TETHER_SHUTDOWN'

  /**
   * @param message - defaults to `server is shutting down`
   */
  constructor(message = 'server is shutting down', options?: TetherErrorOptions) {
    super(message, options)
    const self = this as { code: string; statusCode: number; status: number }
    self.code = 'TETHER_SHUTDOWN'
    self.statusCode = self.status = 503
  }
}

/** A pool's queue is full: the task was shed instead of queued. */
export class PoolOverloadedError extends TetherError {
  override readonly name = 'PoolOverloadedError' as const
  declare readonly code: 'TETHER_POOL_OVERLOADED'
  /** Response headers for a framework to send: `Retry-After`, in seconds. */
  readonly headers: { readonly 'retry-after': string }

  /**
   * @param retryAfter - seconds a client should wait before retrying
   * @param options - `cause`, and `message` to say which queue was full
   */
  constructor(retryAfter = 1, options?: TetherErrorOptions & { readonly message?: string }) {
    super(options?.message ?? 'pool overloaded: queue is full', 'TETHER_POOL_OVERLOADED', 503, options)
    this.headers = { 'retry-after': String(retryAfter) }
  }
}

function hasCode(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code
}

/** True for a {@link DeadlineExceededError}, from any copy of this package. */
export function isDeadlineExceeded(error: unknown): error is DeadlineExceededError {
  return hasCode(error, 'TETHER_DEADLINE_EXCEEDED')
}

/** True for a {@link CanceledError} or a {@link ShutdownError}, from any copy of this package. */
export function isCanceled(error: unknown): error is CanceledError {
  return hasCode(error, 'TETHER_CANCELED') || hasCode(error, 'TETHER_SHUTDOWN')
}

/** True for a {@link ShutdownError}, from any copy of this package. */
export function isShutdown(error: unknown): error is ShutdownError {
  return hasCode(error, 'TETHER_SHUTDOWN')
}

/** True for a {@link PoolOverloadedError}, from any copy of this package. */
export function isPoolOverloaded(error: unknown): error is PoolOverloadedError {
  return hasCode(error, 'TETHER_POOL_OVERLOADED')
}

/**
 * A maker of `CanceledError`s for the endings that happen by the million and are almost never
 * read: a response finished, a fan-out finished. V8 spends about 0.3 µs making any `Error`, stack
 * or not; a finished fan-out must abort its signal (work left holding it is told to stop), so that
 * cost was paid by every `all()`. These are made as plain objects on a prototype (itself on
 * `CanceledError.prototype`) that carries the message and the stack line a stack-less
 * `new CanceledError(message)` has (`CanceledError: <message>`, no frames), with the same own
 * enumerable fields in the same order: `instanceof`, `isCanceled()`, `util.inspect`, JSON and
 * assigning `stack` or `message` behave the same. Only `util.types.isNativeError()`,
 * `Error.isError()` and `structuredClone()` (which keeps own fields only) tell them apart.
 *
 * Never shared or frozen: each call makes a new one, and consumers decorate the reason they
 * receive.
 *
 * @internal
 */
export function routineCancel(message: string): () => CanceledError {
  const writable = { writable: true, configurable: true, enumerable: false }
  const prototype = Object.create(CanceledError.prototype, {
    stack: { value: `CanceledError: ${message}`, ...writable },
    message: { value: message, ...writable },
  }) as object
  return () => {
    const error = Object.create(prototype) as Record<string, unknown>
    // The class fields in declaration order, as the constructor defines them.
    error.code = 'TETHER_CANCELED'
    error.statusCode = 499
    error.status = 499
    error.expose = true
    error.name = 'CanceledError'
    return error as unknown as CanceledError
  }
}

/**
 * Builds an error without capturing a stack trace. Abort reasons are made on hot paths (every
 * timed-out or hung-up request) and their stack would only point into tether's own timers;
 * capturing it costs microseconds and can retain request objects (fastify#7033).
 *
 * @internal
 */
export function withoutStack<T>(make: () => T): T {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return make()
  } finally {
    Error.stackTraceLimit = limit
  }
}
