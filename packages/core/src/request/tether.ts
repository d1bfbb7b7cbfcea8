import {
  type AbortOwner,
  addInflight,
  CanceledError,
  checkBoolean,
  checkDuration,
  checkHeaderName,
  checkOptionsObject,
  checkTimeout,
  counters,
  DEFAULT_DEADLINE_STATUS,
  type InflightEntry,
  isDeadlineReason,
  isShutdown,
  kAbort,
  kIsAborted,
  kOnAbort,
  kRequest,
  kScopeAborted,
  kTighten,
  type Logger,
  lazyReason,
  reasonValue,
  received,
  removeInflight,
  Scope,
  type TrackingPolicy,
} from '../primitives/index.js'
import {
  type Answer,
  abandon,
  adoptConnection,
  type HttpRequest,
  type HttpResponse,
  type HttpServer,
  handlerEnded,
  SHUTTING_DOWN,
  streamOf,
} from '../server/index.js'
import { type Concurrency, checkConcurrency, RequestLimiter } from './concurrency.js'
import { DEFAULT_DEADLINE_HEADER, MESH_DEADLINE_HEADERS, parseBudget } from './deadline-header.js'
import { type RequestEndReason, requestEndChannel, requestStartChannel } from './request-diagnostics.js'

/** Options shared by {@link createTether} and both adapters. All optional. */
export interface TetherOptions {
  /**
   * The request's deadline, in milliseconds from its arrival: a finite number > 0. At the
   * deadline the scope's signal aborts with `DeadlineExceededError` and, if nothing has been sent
   * yet, the client is answered with `status`. Route-level timeouts can only make it shorter.
   * @default undefined (no deadline: the scope still ends when the client hangs up or the
   *   response is finished)
   */
  readonly timeout?: number
  /**
   * The HTTP status a missed deadline is answered with, if nothing was sent yet: 500–599. The
   * same status answers a `DeadlineExceededError` that escapes a handler (from `scopedFetch`, a
   * pool, the outbound queue), whichever timer noticed first. 504, without `Retry-After`, means
   * "ran out of time": proxies neither retry it nor count it against the server. 503 (with
   * `Retry-After`) stays for work refused before it started: a shed pool caller, a request
   * during shutdown.
   * @default 504
   */
  readonly status?: number
  /**
   * tether's own budget header: the caller's remaining budget in integer milliseconds
   * (`grpc-timeout` is read and written in gRPC's own format). It is trusted inbound (unless
   * `trustHeaders` says otherwise) and is the header `scopedFetch` sends the remaining budget in
   * (unless `propagateHeader` says otherwise). `false`: it is neither read nor sent, and, unless
   * `trustHeaders` or `propagateHeader` is given, no incoming budget is trusted and none is sent.
   * @default 'x-request-timeout-ms'
   */
  readonly deadlineHeader?: string | false
  /**
   * The incoming headers whose budget is trusted (inbound): the smallest budget among them
   * counts, and the server's own `timeout` always caps it, so a header can only shorten a
   * request's deadline. Absent and malformed values are ignored (malformed ones are counted as
   * `ignoredDeadlineHeaders`). `grpc-timeout` is read in gRPC's format, every other header as
   * integer milliseconds. `false` or `[]`: no incoming budget is trusted.
   * @default [deadlineHeader, 'x-envoy-expected-rq-timeout-ms', 'grpc-timeout', 'connect-timeout-ms']
   *   (none when `deadlineHeader` is `false`)
   */
  readonly trustHeaders?: readonly string[] | false
  /**
   * The header `scopedFetch` and `createScopedFetch()` send the remaining budget in (outbound),
   * for calls made inside this binding's requests; `false` sends none. A scoped fetch's own
   * `header` option overrides it.
   * @default deadlineHeader
   */
  readonly propagateHeader?: string | false
  /**
   * Milliseconds after its request ended that a still-pending task is reported as leaked.
   * @default 10000
   */
  readonly leakAfter?: number
  /**
   * Record where each tracked task was started, for lingering and leak reports. Costs a stack
   * trace per task: for debugging, not for production traffic.
   * @default false
   */
  readonly captureStacks?: boolean
  /**
   * Where leak reports go: anything with a pino- or console-style `warn(object, message)`.
   * `false` reports only through `onLeak()` and the diagnostics channel.
   * @default process warnings (`process.emitWarning`, type `TetherLeakWarning`); the Fastify
   *   plugin uses the request's logger
   */
  readonly logger?: Logger | false
  /**
   * A path at which the adapter serves `inspect()` as JSON (GET), for debugging. Off unless set.
   * It lists in-flight requests and lingering tasks with their routes and, with `captureStacks`,
   * source locations: never expose it publicly.
   * @default undefined (no debug route)
   */
  readonly debugRoute?: string
  /**
   * How many requests may run their handlers at once: an integer ≥ 1, or `'auto'` to let tether
   * find the number from the latencies it measures (a gradient limit, as Envoy's adaptive
   * concurrency computes it). The others wait inside the process under the pool's overload policy:
   * a request that cannot finish before its deadline is answered 503 with `Retry-After` at once,
   * and while a queue stands the newest are served first. A handler holds its slot until its
   * response is finished or closed. Routes that stream or long-poll can opt out (Express's
   * `unlimited()`, Fastify's route `config: { tether: { concurrency: false } }`).
   * @default undefined (no limit)
   */
  readonly concurrency?: number | 'auto'
}

/**
 * What an adapter tells the core about its requests. Every method is optional; `source` is
 * whatever the adapter passed to {@link Tether.attach} (Express's `req`, Fastify's `reply`).
 */
export interface TetherAdapter<Source = unknown> {
  /** How option errors name the entry point, e.g. `tether()`. */
  readonly name?: string
  /** Option keys the adapter reads itself, accepted beside the core's {@link TETHER_OPTIONS}. */
  readonly options?: readonly string[]
  /** The route pattern of a request (`/users/:id`), for snapshots and reports. */
  route?(source: Source): string | undefined
  /** The logger for leak reports of this request's tasks. */
  logger?(source: Source): Logger | undefined
  /**
   * Whether the framework has handed the response to the user (Fastify's `reply.hijack()`): tether
   * then never answers, cuts or seals it. Its scope still aborts at the deadline, so work is told.
   */
  owned?(source: Source): boolean
  /**
   * Called once tether has answered or cut the response (and sealed the raw response): neutralise
   * the framework's own ways of writing, typically with {@link swallowLateWrites}.
   */
  seal?(source: Source): void
}

/**
 * The option keys the core reads: any other key is refused unless the adapter reads it. The
 * debug route is validated here but only an adapter can serve it, so only adapters accept it.
 */
export const TETHER_OPTIONS: readonly string[] = [
  'timeout',
  'status',
  'deadlineHeader',
  'trustHeaders',
  'propagateHeader',
  'leakAfter',
  'captureStacks',
  'logger',
  'concurrency',
]

const processWarnings: Logger = {
  warn(_object, message) {
    process.emitWarning(message ?? 'tether: a task outlived its request', {
      type: 'TetherLeakWarning',
      code: 'TETHER_LEAK',
    })
  },
}

const kRecord = Symbol.for('tether.request')
type TetheredResponse = HttpResponse & { [kRecord]?: TetheredRequest | undefined }

const responseFinished = () => new CanceledError('response finished')
const clientClosed = () => new CanceledError('client closed the connection')
// HTTP/2: one request of many on the connection was reset (RST_STREAM); its siblings go on.
const clientReset = () => new CanceledError('client reset the stream')

/** One request in flight: what the registry lists and what reacts when its scope aborts. */
class TetheredRequest implements InflightEntry, AbortOwner {
  scope!: Scope
  inflightPrev: InflightEntry | undefined = undefined
  inflightNext: InflightEntry | undefined = undefined
  /** The response, until it closes. */
  res: TetheredResponse | undefined
  /** The adapter's handle on the request, until the response closes. */
  source: unknown
  #route: string | undefined = undefined
  #logger: Logger | undefined = undefined
  #described = false
  /**
   * How the request ended, when that is decided before its scope aborts (the response closed, or
   * the deadline passed after the handler ended it): abort listeners run first and may end the
   * response, so the response's state at the end event no longer tells.
   */
  #endedAs: RequestEndReason | undefined = undefined

  constructor(
    readonly tether: Tether,
    readonly method: string,
    readonly startedAt: number,
    readonly server: HttpServer | undefined,
    res: TetheredResponse,
    source: unknown,
  ) {
    this.res = res
    this.source = source
  }

  get policy(): TrackingPolicy {
    return this.tether.policy
  }

  /** The header calls made for this request send its remaining budget in (see `RequestInfo`). */
  get deadlineHeader(): string | undefined {
    return this.tether.propagateHeader
  }

  /** The status a missed deadline of this request is answered with (see `RequestInfo`). */
  get deadlineStatus(): number {
    return this.tether.status
  }

  /** The headers whose budget this request's binding read. */
  get trustHeaders(): readonly string[] {
    return this.tether.trustHeaders
  }

  route(): string | undefined {
    if (!this.#described && this.source !== undefined) return this.tether.adapter.route?.(this.source)
    return this.#route
  }

  logger(): Logger | undefined {
    if (!this.#described && this.source !== undefined) this.noteLingering()
    return this.#logger
  }

  remaining(): number {
    return this.scope.remaining()
  }

  /** Whether the handler has ended the response (it may still be on its way to the client). */
  ended(): boolean {
    const res = this.res
    return res !== undefined && handlerEnded(res)
  }

  /**
   * What the request's scope ends with when its deadline passes after the handler ended the
   * response: a finished response, not a deadline miss (delivery is the write side's concern).
   */
  finishedReason(scope: Scope): unknown {
    if (scope !== this.scope || !this.ended()) return undefined
    this.#endedAs = 'finished'
    return lazyReason(responseFinished)
  }

  /**
   * tether refused to start the handler (shed under `concurrency`): answer the client with
   * `answerWith`, unless the framework has handed the response to the user, and seal it.
   */
  refuse(answerWith: Answer): void {
    const res = this.res
    if (res === undefined) return
    const { adapter } = this.tether
    if (this.source !== undefined && adapter.owned?.(this.source) === true) return
    abandon(res, answerWith)
    if (this.source !== undefined) adapter.seal?.(this.source)
  }

  /** A task of this request outlived it: keep what a report needs before the request is dropped. */
  noteLingering(): void {
    if (this.#described || this.source === undefined) return
    this.#described = true
    const { adapter, logger } = this.tether
    this.#route = adapter.route?.(this.source)
    this.#logger = logger === false ? undefined : (adapter.logger?.(this.source) ?? logger)
  }

  /** The scope aborted: answer the client if the reason calls for it, then seal the response. */
  [kScopeAborted](reason: unknown): void {
    const res = this.res
    if (res === undefined) return
    if (requestEndChannel.hasSubscribers) this.#publishEnd(reason)
    let answerWith: Answer
    if (isDeadlineReason(reason)) {
      counters.deadlineExceeded++
      answerWith = this.tether.deadlineAnswer
    } else if (isShutdown(reason)) {
      counters.abortedByShutdown++
      answerWith = SHUTTING_DOWN
    } else {
      // The response was answered and is still being delivered when the deadline came: the
      // request is over for its handler, and no longer in flight.
      if (handlerEnded(res)) removeInflight(this)
      return // cancelled: the client is gone or the response is done; nothing to answer
    }
    const { adapter } = this.tether
    if (this.source !== undefined && adapter.owned?.(this.source) === true) return
    abandon(res, answerWith)
    if (this.source !== undefined) this.tether.adapter.seal?.(this.source)
  }

  #publishEnd(reason: unknown): void {
    let ended: RequestEndReason
    if (isDeadlineReason(reason)) ended = 'deadline'
    else if (isShutdown(reason)) ended = 'shutdown'
    else ended = this.#endedAs ?? 'canceled'
    requestEndChannel.publish({
      scope: this.scope,
      method: this.method,
      route: this.route() ?? null,
      reason: ended,
      error: ended === 'finished' ? undefined : reasonValue(reason),
      durationMs: Date.now() - this.startedAt,
    })
  }

  /** The response closed: the request is over, and its scope ends. */
  close(res: TetheredResponse): void {
    removeInflight(this)
    const scope = this.scope
    if (!scope[kIsAborted]) {
      if (handlerEnded(res)) {
        this.#endedAs = 'finished'
        scope[kAbort](lazyReason(responseFinished))
      } else {
        counters.clientClosed++
        this.#endedAs = 'hang-up'
        scope[kAbort](lazyReason(streamOf(res) === undefined ? clientClosed : clientReset))
      }
    }
    this.res = undefined
    this.source = undefined
  }
}

function onResponseClose(this: TetheredResponse): void {
  const record = this[kRecord]
  if (record === undefined) return
  this[kRecord] = undefined
  record.close(this)
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
    const response = res as TetheredResponse
    // Attached already (a sub-app with its own tether(), tether mounted twice, or another copy of
    // the package): the first binding owns the request; this one can only tighten its deadline.
    const existing = response[kRecord]
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
    const record = new TetheredRequest(this, req.method ?? 'GET', startedAt, server, response, source)
    const scope = Scope.create(undefined, deadline, undefined, record, startedAt)
    record.scope = scope
    addInflight(record)
    response[kRecord] = record
    response.on('close', onResponseClose)
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
    const record = (res as TetheredResponse)[kRecord]
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
 * The inbound headers to trust: the option, validated, or tether's own header and the mesh's.
 * `false` for `deadlineHeader` keeps what it meant before the two directions had options of their
 * own: no incoming budget at all, unless `trustHeaders` names some.
 */
function resolveTrustHeaders(option: unknown, deadlineHeader: string | false): readonly string[] {
  if (option === undefined) {
    if (deadlineHeader === false) return Object.freeze([])
    return Object.freeze([deadlineHeader, ...MESH_DEADLINE_HEADERS.filter((name) => name !== deadlineHeader)])
  }
  if (option === false) return Object.freeze([])
  if (!Array.isArray(option)) {
    throw new TypeError(`\`trustHeaders\` must be an array of header names, or false, received ${received(option)}`)
  }
  // Array.from visits holes too: `[, 'x']` is refused, not read as one name.
  const names = Array.from(option as unknown[], (name, index) => checkHeaderName(`trustHeaders[${index}]`, name))
  // A header named twice is read once: its malformed value is counted once.
  return Object.freeze([...new Set(names)])
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
