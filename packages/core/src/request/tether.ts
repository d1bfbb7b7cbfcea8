import {
  addInflight,
  checkBoolean,
  checkDuration,
  checkHeaderName,
  checkOptionsObject,
  checkTimeout,
  counters,
  DEFAULT_DEADLINE_STATUS,
  kOnAbort,
  kRequest,
  kTighten,
  type Logger,
  received,
  Scope,
  type TrackingPolicy,
} from '../primitives/index.js'
import { type Answer, adoptConnection, type HttpRequest, type HttpResponse } from '../server/index.js'
import { type Concurrency, checkConcurrency, RequestLimiter } from './concurrency.js'
import { DEFAULT_DEADLINE_HEADER, parseBudget } from './deadline-header.js'
import { requestStartChannel } from './request-diagnostics.js'
import { keepRecord, recordOf } from './response-record.js'
import { resolveTrustHeaders, TETHER_OPTIONS, type TetherAdapter, type TetherOptions } from './tether-options.js'
import { onResponseClose, TetheredRequest } from './tethered-request.js'

const processWarnings: Logger = {
  warn(_object, message) {
    process.emitWarning(message ?? 'tether: a task outlived its request', {
      type: 'TetherLeakWarning',
      code: 'TETHER_LEAK',
    })
  },
}

/**
 * Binds requests to scopes: the framework-neutral core of both adapters, usable on its own with
 * `node:http`. Create one per server (options are validated once, here), then `attach()` each
 * request.
 */
export class Tether {
  /** The deadline applied to every request, in ms; `undefined` for none. */
  readonly timeout: number | undefined
  /** The status sent when the deadline passes before anything was sent. */
  readonly status: number
  /** @internal What the client gets when the deadline passes before anything was sent. */
  readonly deadlineAnswer: Answer
  /** tether's own budget header, or `undefined` when it is neither read nor sent. */
  readonly deadlineHeader: string | undefined
  /** The incoming headers whose budget is trusted (none: empty). */
  readonly trustHeaders: readonly string[]
  /** The header the remaining budget is sent in downstream, or `undefined` to send none. */
  readonly propagateHeader: string | undefined
  /** The path of the debug route, or `undefined` when there is none. */
  readonly debugRoute: string | undefined
  /** The request-path concurrency limit (`concurrency`), or `undefined` when there is none. */
  readonly concurrency: Concurrency | undefined
  /** @internal */
  readonly limiter: RequestLimiter | undefined
  /** @internal */
  readonly policy: TrackingPolicy
  /** @internal */
  readonly logger: Logger | false
  /** @internal */
  readonly adapter: TetherAdapter

  /**
   * @param options - see {@link TetherOptions}
   * @param adapter - how the framework describes its requests (adapters only)
   * @throws TypeError/RangeError naming the option and the value received
   */
  constructor(options?: TetherOptions, adapter: TetherAdapter = {}) {
    const where = adapter.name ?? 'createTether()'
    checkOptionsObject(where, options, adapter.options ? [...TETHER_OPTIONS, ...adapter.options] : TETHER_OPTIONS)
    const { timeout, status = DEFAULT_DEADLINE_STATUS, leakAfter = 10_000 } = options ?? {}
    if (timeout !== undefined) checkTimeout('timeout', timeout)
    if (typeof status !== 'number') throw new TypeError(`\`status\` must be a number, received ${received(status)}`)
    if (!Number.isInteger(status) || status < 500 || status > 599) {
      throw new RangeError(`\`status\` must be an HTTP status from 500 to 599, received ${received(status)}`)
    }
    const deadlineHeader =
      options?.deadlineHeader === undefined
        ? DEFAULT_DEADLINE_HEADER
        : checkHeaderName('deadlineHeader', options.deadlineHeader, true)
    const trustHeaders = resolveTrustHeaders(options?.trustHeaders, deadlineHeader)
    const propagateHeader =
      options?.propagateHeader === undefined
        ? deadlineHeader
        : checkHeaderName('propagateHeader', options.propagateHeader, true)
    const captureStacks =
      options?.captureStacks === undefined ? false : checkBoolean('captureStacks', options.captureStacks)
    const logger = options?.logger
    if (logger !== undefined && logger !== false && typeof (logger as Logger | null)?.warn !== 'function') {
      throw new TypeError(`\`logger\` must have a warn() method, or be false, received ${received(logger)}`)
    }
    const debugRoute = options?.debugRoute
    if (debugRoute !== undefined && (typeof debugRoute !== 'string' || !/^\/[^?#\s]*$/.test(debugRoute))) {
      throw new TypeError(`\`debugRoute\` must be a path starting with /, received ${received(debugRoute)}`)
    }
    this.debugRoute = debugRoute
    this.concurrency = options?.concurrency === undefined ? undefined : checkConcurrency(options.concurrency)
    this.timeout = timeout
    this.status = status
    this.deadlineAnswer = Object.freeze({
      statusCode: status,
      code: 'TETHER_DEADLINE_EXCEEDED',
      message: 'deadline exceeded',
      close: false,
    })
    this.deadlineHeader = deadlineHeader === false ? undefined : deadlineHeader
    this.trustHeaders = trustHeaders
    this.propagateHeader = propagateHeader === false ? undefined : propagateHeader
    this.policy = Object.freeze({ leakAfter: checkDuration('leakAfter', leakAfter), captureStacks })
    this.logger = logger ?? processWarnings
    this.adapter = adapter
    // Made last: a limit registers itself for inspect(), so only a binding that was created does.
    this.limiter = this.concurrency === undefined ? undefined : new RequestLimiter(this.concurrency)
  }

  /**
   * Gives a request its scope. The deadline is the earliest of `timeout` and the budgets in the
   * trusted headers; the scope's signal aborts at the deadline (and the client is answered with `status`
   * if nothing was sent), when the client hangs up before the response is finished
   * (`CanceledError`), and when the response is finished (`CanceledError`), so that work still
   * running learns it should stop. Nothing is left behind once the response closes.
   *
   * @param req - the incoming request (the trusted budget headers are read from it): `node:http`'s, or
   *   `node:http2`'s compatibility request
   * @param res - its response (its `close` event ends the scope); on HTTP/2, a reset of the
   *   request's stream is the client hanging up
   * @param source - the adapter's own request object, handed back to the adapter's hooks
   * @returns the request's scope; run the handler inside it with `scope.run()`
   *
   * @example
   * ```ts
   * const tether = createTether({ timeout: 5_000 })
   * http.createServer((req, res) => tether.attach(req, res).run(() => handler(req, res)))
   * ```
   */
  attach(req: HttpRequest, res: HttpResponse, source?: unknown): Scope {
    // Attached already (a sub-app with its own tether(), tether mounted twice, or another copy of
    // the package): the first binding owns the request; this one can only tighten its deadline.
    const existing = recordOf(res)
    if (existing !== undefined) {
      // A binding of an older copy read only its one header, which it also sent.
      const readAlready =
        existing.trustHeaders ?? (existing.deadlineHeader === undefined ? [] : [existing.deadlineHeader])
      const deadline = this.#deadline(req, existing.startedAt, readAlready)
      if (deadline !== undefined) existing.scope[kTighten](deadline)
      return existing.scope
    }
    counters.requests++
    const startedAt = Date.now()
    const deadline = this.#deadline(req, startedAt)
    const server = adoptConnection(req, res)
    const record = new TetheredRequest(this, req.method ?? 'GET', startedAt, server, res, source)
    const scope = Scope.create(undefined, deadline, undefined, record, startedAt)
    record.scope = scope
    addInflight(record)
    keepRecord(res, record)
    res.on('close', onResponseClose)
    if (requestStartChannel.hasSubscribers) {
      requestStartChannel.publish({
        scope,
        method: record.method,
        deadline: scope.deadline,
        request: req,
        response: res,
      })
    }
    // Set last: a budget of 0 aborts the scope at once, and the answer needs all of the above.
    scope[kOnAbort] = record
    return scope
  }

  /**
   * Starts a request's handler under `concurrency`, in the request's scope: `start` runs now, once
   * a slot is free, or never. A request that cannot finish before its deadline is answered 503 with
   * `Retry-After` (a shed: the `shed` counter, and the limit's in `inspect().concurrency`); one
   * whose scope ends while it waits was answered by that end. Its slot is held until its response
   * is finished or closed. Without `concurrency`, `start` runs at once. Call it after
   * {@link attach}, where the handler begins: the chain after Express's middleware, the hooks after
   * Fastify's `onRequest`.
   *
   * @param res - the response `attach()` was given
   * @param start - what runs the handler (Express's `next`, a Fastify hook's `done`)
   *
   * @example
   * ```ts
   * const tether = createTether({ timeout: 5_000, concurrency: 'auto' })
   * http.createServer((req, res) => {
   *   tether.attach(req, res)
   *   tether.admit(res, () => handler(req, res))
   * })
   * ```
   */
  admit(res: HttpResponse, start: () => void): void {
    const record = recordOf(res)
    if (record === undefined) {
      start()
      return
    }
    const limiter = this.limiter
    if (limiter === undefined) record.scope.run(start)
    else limiter.admit(record.scope, res, start, record)
  }

  /**
   * The deadline of a request that arrived at `startedAt`: the earliest of `timeout` and the
   * budgets in the trusted headers. A header another binding has read already is not read (or
   * counted) again.
   */
  #deadline(req: HttpRequest, startedAt: number, readAlready?: readonly string[]): number | undefined {
    let deadline = this.timeout === undefined ? undefined : startedAt + this.timeout
    const headers = req.headers
    const trusted = this.trustHeaders
    // Indexed: this runs for every request, and most carry none of these headers.
    for (let i = 0; i < trusted.length; i++) {
      const header = trusted[i] as string
      const value = headers[header]
      if (value === undefined || readAlready?.includes(header)) continue
      const budget = parseBudget(value, header)
      if (budget === undefined) counters.ignoredDeadlineHeaders++
      else if (deadline === undefined || startedAt + budget < deadline) deadline = startedAt + budget
    }
    return deadline
  }
}

/**
 * Creates the request binding both adapters are built on; use it directly to bring tether to
 * `node:http` or another framework.
 *
 * @param options - see {@link TetherOptions}
 * @param adapter - how the framework describes its requests (for adapter authors)
 * @throws TypeError/RangeError naming the option and the value received
 */
export function createTether<Source = unknown>(options?: TetherOptions, adapter?: TetherAdapter<Source>): Tether {
  return new Tether(options, adapter as TetherAdapter)
}

/**
 * Moves a request's deadline to `ms` after the request arrived, if that is earlier than the
 * deadline it has (a route-level timeout can only tighten). For a scope that is not a request's,
 * the deadline becomes `ms` from now, again only if earlier.
 *
 * @throws TypeError/RangeError for an `ms` that is not a finite number ≥ 0
 */
export function tightenDeadline(scope: Scope, ms: number): void {
  checkDuration('timeout', ms)
  scope[kTighten](arrivalOf(scope) + ms)
}

/**
 * A route-level timeout for adapters (Express's `timeout(ms)`, Fastify's `config.tether.timeout`):
 * validates `ms` once, where the route is declared, and returns what tightens each request's
 * deadline to `ms` after its arrival, as {@link tightenDeadline} does, without checking it again.
 *
 * @param ms - a finite number of milliseconds > 0
 * @param name - how an error message names the setting
 * @throws TypeError/RangeError naming the setting and the value received
 */
export function routeTimeout(ms: unknown, name: string): (scope: Scope) => void {
  const timeout = checkTimeout(name, ms)
  return (scope) => scope[kTighten](arrivalOf(scope) + timeout)
}

/** When the request a scope stands for arrived; now, for a scope that is not a request's. */
function arrivalOf(scope: Scope): number {
  const request = scope[kRequest]
  // Duck-typed: the request may have been attached by another copy of the package.
  return request !== undefined && (request as { scope?: unknown }).scope === scope ? request.startedAt : Date.now()
}
