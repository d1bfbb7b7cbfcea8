import { createTether, inspect, type Scope, type TetherOptions } from '@tether/core'
import { exemptFromConcurrency, routeTimeout, scopeOfResponse, type TetherAdapter } from '@tether/core/adapter'
import type { NextFunction, Request, RequestHandler, Response } from 'express'

declare global {
  namespace Express {
    interface Request {
      /**
       * The request's scope, set by the `tether()` middleware: its `signal`, `deadline` and
       * `remaining()`. Everything after the middleware runs inside it, so `currentScope()`,
       * `all()`, `TaskGroup` and pools bind to the request without being passed anything.
       */
      scope: Scope
    }
  }
}

/** Options of {@link tether}: see the core's `TetherOptions`. All optional. */
export interface TetherExpressOptions extends TetherOptions {}

// Express only knows the route pattern once the router has matched one.
const expressAdapter: TetherAdapter<Request> = {
  name: 'tether()',
  options: ['debugRoute'],
  route: (req) => (req.route ? `${req.baseUrl}${req.route.path}` : undefined),
}

/**
 * The tether middleware: gives each request a scope (`req.scope`) whose signal aborts at the
 * deadline, when the client hangs up, or when the response is finished, and runs the rest of the
 * chain inside it. At the deadline, if nothing has been sent, the client gets `status` (504) with
 * a short JSON body, as does a `DeadlineExceededError` that escapes a handler (Express answers it
 * with the error's status, which is `status`); whatever the handler writes afterwards is swallowed
 * and counted.
 *
 * Mount it before the routes whose work it should govern.
 *
 * With `concurrency`, at most that many requests run the rest of the chain at once (`'auto'`: a
 * number tether learns from the latencies it measures); the others wait inside the process, and
 * one that cannot finish before its deadline is answered 503 with `Retry-After` at once. A request
 * holds its place from `next()` until its response is finished or closed.
 *
 * @param options - `timeout`, `status`, `deadlineHeader`, `trustHeaders`, `propagateHeader`,
 *   `leakAfter`, `captureStacks`, `logger`, `debugRoute`, `concurrency`
 * @throws TypeError/RangeError at once, naming the option and the value received
 *
 * @example
 * ```ts
 * app.use(tether({ timeout: 5_000 }))
 * app.get('/profile', async (req, res) => {
 *   const [user, feed] = await all([(signal) => users.get(id, { signal }), (signal) => feed.get(id, { signal })])
 *   res.json({ user, feed })
 * })
 * ```
 */
export function tether(options?: TetherExpressOptions): RequestHandler {
  const binding = createTether(options, expressAdapter)
  const debugRoute = binding.debugRoute
  const limited = binding.concurrency !== undefined
  let supportedApp: unknown
  let inheritsScope = false
  return function tetherMiddleware(req: Request, res: Response, next: NextFunction): void {
    if (req.app !== supportedApp) {
      const problem = unsupportedExpress(req.app)
      if (problem !== undefined) {
        next(problem)
        return
      }
      supportedApp = req.app
      inheritsScope = inheritScope(req)
    }
    if (debugRoute !== undefined && req.method === 'GET' && req.path === debugRoute) {
      res.json(inspect())
      return
    }
    const scope = binding.attach(req, res, req)
    if (!inheritsScope) req.scope = scope
    if (limited) binding.admit(res, next)
    else scope.run(next)
  }
}

/**
 * Makes `req.scope` an accessor on Express's request prototype (`express.request`, which every app's
 * `app.request` inherits, a mounted sub-app's too), defined once per copy of Express, rather than a
 * property set on each request. Express replaces the prototype of every `req`, and on Node 22 adding
 * a property to such an object costs about 1.5 µs (see core's response-record.ts); reading the
 * record the binding keeps for the response costs nothing of the kind. Assigning `req.scope` still
 * works: it sets the request's own property.
 *
 * @returns whether requests of `req`'s app read `req.scope` from the accessor; otherwise (a request
 *   Express did not make) the middleware sets the property itself
 */
function inheritScope(req: Request): boolean {
  const appRequest = (req.app as { request?: unknown } | undefined)?.request
  if (appRequest === null || typeof appRequest !== 'object' || Object.getPrototypeOf(req) !== appRequest) return false
  const shared: object | null = Object.getPrototypeOf(appRequest)
  if (shared === null) return false
  if (!Object.hasOwn(shared, 'scope')) {
    Object.defineProperty(shared, 'scope', {
      configurable: true,
      enumerable: false,
      get(this: Request): Scope | undefined {
        return scopeOfResponse(this.res)
      },
      set(this: Request, scope: Scope) {
        Object.defineProperty(this, 'scope', { value: scope, writable: true, enumerable: true, configurable: true })
      },
    })
  }
  return true
}

/**
 * Express 4 does not catch a rejected promise from an async handler: the first deadline (or any
 * handler that rejects after tether answered) would take the process down. Express 4 apps have
 * `app.lazyrouter()`, which Express 5 removed.
 */
function unsupportedExpress(app: unknown): Error | undefined {
  if (typeof (app as { lazyrouter?: unknown } | undefined)?.lazyrouter !== 'function') return undefined
  return Object.assign(
    new Error(
      '@tether/express needs Express 5: this app runs Express 4, which does not catch rejected async handlers, so the first deadline could crash the process. Upgrade to Express 5, or bind requests yourself with createTether() from @tether/core.',
    ),
    { code: 'TETHER_UNSUPPORTED_EXPRESS', status: 500, expose: false },
  )
}

/**
 * Route-level middleware that tightens the current request's deadline to `ms` after the request
 * arrived (never loosens it). Needs `tether()` earlier in the chain.
 *
 * @param ms - a finite number of milliseconds > 0
 * @throws TypeError/RangeError at once for an invalid `ms`
 *
 * @example
 * ```ts
 * app.get('/search', timeout(300), searchHandler)
 * ```
 */
export function timeout(ms: number): RequestHandler {
  // The message reads: `ms` of `timeout(ms)` must be ...
  const tighten = routeTimeout(ms, 'ms` of `timeout(ms)')
  return function tetherTimeout(req: Request, _res: Response, next: NextFunction): void {
    if (req.scope === undefined) {
      next(new Error('timeout() needs the tether() middleware earlier in the chain'))
      return
    }
    tighten(req.scope)
    next()
  }
}

/**
 * Route-level middleware that exempts the route from `tether({ concurrency })`: the request gives
 * its slot to the next waiting request as soon as the route is matched, and its latency does not
 * move an `'auto'` limit. For routes that stream (server-sent events, downloads) or long-poll,
 * which would otherwise hold a slot for as long as they last. Its deadline still applies.
 *
 * Express matches routes after application-level middleware, so under load such a request may
 * still wait its turn once, before its route is known; it never holds a slot after.
 *
 * @example
 * ```ts
 * app.use(tether({ timeout: 5_000, concurrency: 'auto' }))
 * app.get('/events', unlimited(), sse)
 * ```
 */
export function unlimited(): RequestHandler {
  return function tetherUnlimited(req: Request, res: Response, next: NextFunction): void {
    if (req.scope === undefined) {
      next(new Error('unlimited() needs the tether() middleware earlier in the chain'))
      return
    }
    exemptFromConcurrency(res)
    next()
  }
}
