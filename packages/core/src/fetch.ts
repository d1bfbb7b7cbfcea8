import { DEFAULT_DEADLINE_HEADER, formatBudget } from './deadline-header.js'
import { DeadlineExceededError, withoutStack } from './errors.js'
import { currentScope, kIsAborted, kReason, kRequest, reasonValue, type Scope } from './scope.js'
import { checkDuration, checkFunction, checkOptionsObject, optional, received } from './validate.js'

/** Options of {@link createScopedFetch}. All optional. */
export interface ScopedFetchOptions {
  /**
   * The `fetch` to wrap.
   * @default globalThis.fetch
   */
  readonly fetch?: typeof fetch
  /**
   * The header the remaining budget is sent in (integer milliseconds; gRPC's format for
   * `grpc-timeout`), or `false` to send none.
   * @default the current request's `deadlineHeader`, else 'x-request-timeout-ms'
   */
  readonly header?: string | false
  /**
   * Milliseconds kept back from the budget sent downstream, for the time the call itself takes to
   * travel: the callee's deadline then falls before the caller's.
   * @default 10
   */
  readonly margin?: number
}

const SCOPED_FETCH_OPTIONS = ['fetch', 'header', 'margin']

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

function noBudgetLeft(): DeadlineExceededError {
  return withoutStack(() => new DeadlineExceededError('deadline exceeded: no budget left for the call'))
}

/** The header to send: the option, else the current request's own, else the default. */
function budgetHeader(option: string | false | undefined, scope: Scope): string | undefined {
  if (option !== undefined) return option === false ? undefined : option
  const request = scope[kRequest]
  return request === undefined ? DEFAULT_DEADLINE_HEADER : request.deadlineHeader
}

/**
 * Creates a `fetch` bound to the current scope ({@link currentScope}); see {@link scopedFetch}.
 *
 * @throws TypeError/RangeError naming the option and the value received
 */
export function createScopedFetch(options?: ScopedFetchOptions): typeof fetch {
  checkOptionsObject('createScopedFetch()', options, SCOPED_FETCH_OPTIONS)
  // Looked up at each call by default, so a fetch installed later (a mock, a polyfill) is used.
  const fetchImpl = optional<typeof fetch>(options?.fetch, (input, init) => globalThis.fetch(input, init))
  checkFunction('fetch', fetchImpl)
  const margin = checkDuration('margin', optional(options?.margin, 10))
  const header = options?.header
  if (header !== undefined && header !== false && (typeof header !== 'string' || header === '')) {
    throw new TypeError(`\`header\` must be a header name or false, received ${received(header)}`)
  }

  return async function scopedFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    const scope = currentScope()
    if (scope === undefined) return fetchImpl(input, init)
    if (scope[kIsAborted]) throw reasonValue(scope[kReason])
    if (scope.remaining() - margin <= 0) throw noBudgetLeft()
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined))
    // The budget is read last, once nothing is left between it and the call: the first Headers of
    // a process loads undici, which can take longer than the margin, and a budget read before
    // that would overstate what is left by that much.
    const remaining = scope.remaining()
    const budget = remaining - margin
    if (budget <= 0) throw noBudgetLeft()
    const name = budgetHeader(header, scope)
    if (name !== undefined && Number.isFinite(remaining)) headers.set(name, formatBudget(budget, name))
    // A short-lived child per call: undici never removes the abort listener it adds to the signal
    // it is given, so a request's own signal would collect one per call (nodejs/undici#5285).
    const call = scope.child(init?.signal ? { signal: init.signal } : undefined)
    let response: Response
    try {
      response = await fetchImpl(input, { ...init, headers, signal: call.signal })
    } catch (error) {
      call.cancel()
      throw error
    }
    return releaseWhenRead(response, call)
  } as typeof fetch
}

/**
 * `fetch` bound to the current scope:
 *
 * - the call is aborted with the scope (deadline, client gone, response finished), combined with
 *   `init.signal` if given, without `AbortSignal.any`;
 * - the remaining budget, minus a small margin, is sent in the deadline header, so the service
 *   called inherits the deadline (budgets are relative: no clocks are compared);
 * - with no budget left it rejects at once with `DeadlineExceededError`, without a network call;
 * - a response body nobody read is cancelled when the scope ends, so its connection is released.
 *
 * Outside any scope it is plain `fetch`.
 *
 * @example
 * ```ts
 * app.get('/checkout', async (req, res) => {
 *   const quote = await scopedFetch(`${PRICING}/quote?cart=${id}`).then((r) => r.json())
 *   res.json(quote)
 * })
 * ```
 */
export const scopedFetch: typeof fetch = createScopedFetch()
