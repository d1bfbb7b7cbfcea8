import {
  checkDuration,
  checkFunction,
  checkHeaderName,
  checkOptionsObject,
  currentScope,
  deadlineExceeded,
  kIsAborted,
  kReason,
  kRequest,
  optional,
  reasonValue,
  received,
  renamedOption,
  type Scope,
} from '../primitives/index.js'
import { DEFAULT_DEADLINE_HEADER, formatBudget } from '../request/index.js'
import { createOutbound, loadUndici } from './dispatcher.js'
import { type OutboundDispatcher, type OutboundOptions, resolveOutbound } from './outbound.js'

/**
 * Options of {@link createScopedFetch}. All optional. The transport options (`connections`,
 * `keepAliveTimeout`, `maxQueue`, `retryAfter`, `headersTimeout`, `bodyTimeout`) configure tether's
 * own connection pool, and cannot be combined with `fetch`.
 */
export interface ScopedFetchOptions extends OutboundOptions {
  /**
   * A `fetch` to wrap instead of tether's own transport (undici's `fetch` over a tuned pool).
   * The calls then go wherever that `fetch` sends them (the global one: undici's global
   * dispatcher, unbounded).
   * @default undici's fetch over a pool configured by the transport options
   */
  readonly fetch?: typeof fetch
  /**
   * The header the remaining budget is sent in (integer milliseconds; gRPC's format for
   * `grpc-timeout`), or `false` to send none.
   * @default the current request's `deadlineHeader`, else 'x-request-timeout-ms'
   */
  readonly propagateHeader?: string | false
  /**
   * The former name of {@link ScopedFetchOptions.propagateHeader}: the same option, named as
   * `tether()`'s option for the header the budget is sent in downstream.
   * @deprecated Use `propagateHeader`; `header` keeps working.
   */
  readonly header?: string | false
  /**
   * Milliseconds kept back from the budget sent downstream, for the time the call itself takes to
   * travel: the callee's deadline then falls before the caller's.
   * @default 10
   */
  readonly margin?: number
}

/** A scoped `fetch`, with a handle on the transport under it. */
export type ScopedFetch = typeof fetch & {
  /**
   * The dispatcher the calls go through (for undici's `request()` as well:
   * `request(url, { dispatcher })`), or `undefined` when a `fetch` option was given.
   */
  readonly dispatcher: OutboundDispatcher | undefined
  /**
   * Closes the transport: calls waiting for a socket are refused, idle sockets closed; resolves
   * once the calls in progress have finished. Later calls fail.
   */
  close(): Promise<void>
}

const TRANSPORT_OPTIONS = [
  'concurrency',
  'connections',
  'idleTimeout',
  'keepAliveTimeout',
  'maxQueue',
  'retryAfter',
  'headersTimeout',
  'bodyTimeout',
] as const
const SCOPED_FETCH_OPTIONS = ['fetch', 'propagateHeader', 'header', 'margin', ...TRANSPORT_OPTIONS]

// The ways a Response's body is read to its end; scopedFetch lets go of the call once one is done.
const BODY_READERS = ['arrayBuffer', 'blob', 'bytes', 'formData', 'json', 'text'] as const

/**
 * Releases the call's scope once the body has been read through one of the Response's own
 * methods. A body read some other way (its stream), or never read, is released when the request's
 * scope ends, which aborts the call: undici then drops the connection instead of leaving it
 * pinned by an unread body (Go's forgotten `resp.Body.Close()`).
 */
function releaseWhenRead(response: Response, call: Scope): Response {
  if (response.body === null) {
    call.cancel()
    return response
  }
  const release = () => call.cancel()
  for (const name of BODY_READERS) {
    const read = (response as unknown as Record<string, unknown>)[name]
    if (typeof read !== 'function') continue
    Object.defineProperty(response, name, {
      configurable: true,
      writable: true,
      value(this: Response) {
        return (read as () => Promise<unknown>).call(this).finally(release)
      },
    })
  }
  return response
}

/**
 * undici's fetch reports whatever its dispatcher fails with as `TypeError('fetch failed')` with
 * the failure as `cause` (an `AbortError` nested once more). When the cause is tether's own
 * decision (queue full, deadline passed) or the reason the caller's scope was aborted with, that
 * is the error: `isPoolOverloaded(e)`, `isDeadlineExceeded(e)`, `isCanceled(e)` then work on what
 * the caller catches, and a reason of the caller's own comes back intact.
 */
function ownError(error: unknown, scope?: Scope): unknown {
  if (!(error instanceof TypeError)) return error
  const reason = scope?.[kIsAborted] ? reasonValue(scope[kReason]) : undefined
  let cause = error.cause as { code?: unknown; cause?: unknown } | null | undefined
  for (let depth = 0; depth < 2 && typeof cause === 'object' && cause !== null; depth++) {
    if (cause === reason) return cause
    if (typeof cause.code === 'string' && cause.code.startsWith('TETHER_')) return cause
    cause = cause.cause as typeof cause
  }
  return error
}

function rethrowOwn(error: unknown): never {
  throw ownError(error)
}

/**
 * What the call may be given: the scope's remaining budget less the margin, read as late as
 * possible (right before the call), since every millisecond spent before the call is one the
 * callee would otherwise be told it has. `undefined` without a deadline.
 *
 * @throws DeadlineExceededError when no budget is left
 */
function budgetLeft(scope: Scope, margin: number): number | undefined {
  const remaining = scope.remaining()
  if (!Number.isFinite(remaining)) return undefined
  const budget = remaining - margin
  if (budget <= 0) {
    throw deadlineExceeded(scope, 'deadline exceeded: no budget left for the call')
  }
  return budget
}

/** The header to send: the option, else the current request's own, else the default. */
function budgetHeader(option: string | false | undefined, scope: Scope): string | undefined {
  if (option !== undefined) return option === false ? undefined : option
  const request = scope[kRequest]
  return request === undefined ? DEFAULT_DEADLINE_HEADER : request.deadlineHeader
}

/** What a scoped fetch sends its calls through: undici's fetch over tether's dispatcher. @internal */
interface FetchBackend {
  /** Sends a call with undici's fetch over the dispatcher; `init` is the caller's own copy. */
  send(input: string | URL | Request, init: RequestInit): Promise<Response>
  dispatcher(): OutboundDispatcher
  close(): Promise<void>
}

/**
 * undici's fetch over a dispatcher tether configures. The dispatcher is made on the first call, so
 * a process that never calls out loads no undici and opens nothing.
 */
function tunedBackend(options: ScopedFetchOptions | undefined): FetchBackend {
  const resolved = resolveOutbound(options)
  let dispatcher: OutboundDispatcher | undefined
  const get = () => {
    dispatcher ??= createOutbound(resolved)
    return dispatcher
  }
  return {
    send(input, init) {
      const undici = loadUndici()
      let target = input
      if (input instanceof Request && !(input instanceof (undici.Request as unknown as typeof Function))) {
        // undici's fetch reads a Request of another undici copy (Node's global fetch's) as the
        // string "[object Request]": pass its parts instead.
        target = input.url
        init = {
          method: input.method,
          headers: input.headers,
          body: input.body,
          redirect: input.redirect,
          signal: input.signal,
          ...init,
          // A streamed body must say so (fetch spec); harmless without one.
          duplex: 'half',
        } as RequestInit
      }
      ;(init as { dispatcher?: unknown }).dispatcher = get()
      return undici.fetch(target as never, init as never) as unknown as Promise<Response>
    },
    dispatcher: get,
    async close() {
      if (dispatcher !== undefined) await dispatcher.close()
    },
  }
}

/**
 * Creates a `fetch` bound to the current scope ({@link currentScope}), over a connection pool
 * tether configures; see {@link scopedFetch}.
 *
 * - at most `connections` sockets per origin; further calls wait in a queue of at most `maxQueue`
 *   per origin, and beyond it are refused at once with `PoolOverloadedError`;
 * - a waiting call whose caller gives up (its scope ends, its signal aborts) leaves the queue at
 *   once and never opens a socket; one whose deadline passes while waiting fails with
 *   `DeadlineExceededError`;
 * - idle sockets are closed after `keepAliveTimeout`;
 * - inside a scope, the headers and body timeouts are never longer than the remaining budget;
 * - the pool's sockets are listed per origin in `inspect().outbound` and the metrics.
 *
 * @throws TypeError/RangeError naming the option and the value received; TypeError when
 *   transport options are given with `fetch`
 *
 * @example
 * ```ts
 * const callPricing = createScopedFetch({ connections: 16, maxQueue: 200, keepAliveTimeout: 2_000 })
 * app.get('/quote', async (req, res) => res.json(await (await callPricing(`${PRICING}/quote`)).json()))
 * ```
 */
export function createScopedFetch(options?: ScopedFetchOptions): ScopedFetch {
  checkOptionsObject('createScopedFetch()', options, SCOPED_FETCH_OPTIONS)
  let fetchImpl: typeof fetch | undefined
  let transport: FetchBackend | undefined
  if (options?.fetch !== undefined) {
    checkFunction('fetch', options.fetch)
    const conflict = TRANSPORT_OPTIONS.find((name) => options[name] !== undefined)
    if (conflict !== undefined) {
      throw new TypeError(
        `\`${conflict}\` configures tether's own transport and cannot be combined with \`fetch\`, received ${received(options[conflict])}`,
      )
    }
    fetchImpl = options.fetch
  } else {
    transport = tunedBackend(options)
  }
  const margin = checkDuration('margin', optional(options?.margin, 10))
  const headerOption = renamedOption<string | false>(options, 'propagateHeader', 'header')
  const header =
    headerOption === undefined
      ? undefined
      : checkHeaderName(options?.propagateHeader === undefined ? 'header' : 'propagateHeader', headerOption, true)

  const scopedFetch = async function scopedFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    const scope = currentScope()
    if (scope === undefined) {
      return transport === undefined
        ? (fetchImpl as typeof fetch)(input, init)
        : transport.send(input, { ...init }).catch(rethrowOwn)
    }
    if (scope[kIsAborted]) throw reasonValue(scope[kReason])
    budgetLeft(scope, margin) // no budget: no call at all
    const name = budgetHeader(header, scope)
    const initial = init?.headers ?? (input instanceof Request ? input.headers : undefined)
    if (transport === undefined) {
      const headers = new Headers(initial)
      const budget = budgetLeft(scope, margin)
      if (name !== undefined && budget !== undefined) headers.set(name, formatBudget(budget, name))
      // A short-lived child per call: undici never removes the abort listener it adds to the
      // signal it is given, so a request's own signal would collect one per call (nodejs/undici#5285).
      const call = scope.child(init?.signal ? { signal: init.signal } : undefined)
      let response: Response
      try {
        response = await (fetchImpl as typeof fetch)(input, { ...init, headers, signal: call.signal })
      } catch (error) {
        call.cancel()
        throw error
      }
      return releaseWhenRead(response, call)
    }

    // tether's own transport binds each call to the current scope itself (it subscribes the call
    // to the scope: no AbortSignal, no listener, nothing to release per call), and gives the
    // socket back the moment undici has the whole body.
    let headers: RequestInit['headers'] = initial
    const undici = loadUndici() // before the budget is read: the first load takes a while
    const budget = budgetLeft(scope, margin)
    if (name !== undefined && budget !== undefined) {
      const value = formatBudget(budget, name)
      if (initial === undefined) {
        // The common call has no headers of its own: a plain record is the cheapest for undici.
        headers = { [name]: value }
      } else {
        const merged = new (undici.Headers as unknown as typeof Headers)(initial)
        merged.set(name, value)
        headers = merged
      }
    }
    const signal = init?.signal
    if (signal === undefined || signal === null) {
      try {
        return await transport.send(input, { ...init, headers })
      } catch (error) {
        throw ownError(error, scope)
      }
    }
    // A signal of the caller's own: a child scope follows it and the call runs in that child, so
    // undici never sees the signal and leaves no listener on it (nodejs/undici#5285).
    const call = scope.child({ signal })
    let response: Response
    try {
      response = await call.run(() => transport.send(input, { ...init, headers, signal: undefined }))
    } catch (error) {
      call.cancel()
      throw ownError(error, call)
    }
    return releaseWhenRead(response, call)
  }
  return Object.defineProperties(scopedFetch, {
    dispatcher: { enumerable: true, get: () => transport?.dispatcher() },
    close: { enumerable: true, value: () => transport?.close() ?? Promise.resolve() },
  }) as unknown as ScopedFetch
}

/**
 * `fetch` bound to the current scope, over tether's default outbound pool (64 sockets per origin,
 * 1024 waiting calls per origin, idle sockets closed after 4 s; see {@link createScopedFetch}):
 *
 * - the call is aborted with the scope (deadline, client gone, response finished), combined with
 *   `init.signal` if given, without `AbortSignal.any`;
 * - the remaining budget, minus a small margin, is sent in the deadline header, so the service
 *   called inherits the deadline (budgets are relative: no clocks are compared);
 * - with no budget left it rejects at once with `DeadlineExceededError`, without a network call;
 * - a response body nobody read is cancelled when the scope ends, so its connection is released.
 *
 * Outside any scope it is `fetch` over the same pool, with no budget.
 *
 * @example
 * ```ts
 * app.get('/checkout', async (req, res) => {
 *   const quote = await scopedFetch(`${PRICING}/quote?cart=${id}`).then((r) => r.json())
 *   res.json(quote)
 * })
 * ```
 */
export const scopedFetch: ScopedFetch = createScopedFetch()
