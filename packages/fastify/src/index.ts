import {
  createTether,
  type HardenOptions,
  hardenServer,
  inspect,
  type Scope,
  shutdown,
  type TetherOptions,
  trackConnections,
} from '@tether/core'
import {
  resolveHardening,
  resolveShutdown,
  routeConcurrency,
  routeTimeout,
  shutdownBeforeFrameworkClose,
  swallowLateWrites,
  type TetherAdapter,
} from '@tether/core/adapter'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The request's scope, set in `onRequest`: its `signal`, `deadline` and `remaining()`. Hooks
     * and the handler run inside it, so `currentScope()`, `all()`, `TaskGroup` and pools bind to
     * the request without being passed anything.
     */
    scope: Scope
  }
  interface FastifyContextConfig {
    /** Per-route tether settings. */
    tether?: {
      /** Tightens this route's deadline to `timeout` ms after the request arrived. */
      timeout?: number
      /**
       * `false` exempts the route from the plugin's `concurrency` limit: its requests never wait
       * for a slot nor hold one, and their latency does not move an `'auto'` limit. For routes
       * that stream or long-poll. Its deadline still applies.
       * @default true
       */
      concurrency?: boolean
    }
  }
}

/**
 * Options of the plugin: the core's `TetherOptions`, plus the server's lifecycle. All optional.
 * Leak reports go to the request's logger unless `logger` is given.
 */
export interface TetherFastifyOptions extends TetherOptions {
  /**
   * Applies `hardenServer()` to `app.server` when the plugin is registered: `true` for tether's
   * defaults, or its options. It sets the server's header, request and keep-alive timeouts,
   * overriding Fastify's `requestTimeout` and `keepAliveTimeout`.
   * @default false
   */
  readonly harden?: boolean | HardenOptions
  /**
   * Milliseconds `app.close()` gives in-flight requests to finish before their scopes are aborted
   * and they are answered 503 with `Retry-After` (see the core's `shutdown()`).
   * @default 10000 (0 with Fastify's `forceCloseConnections: true`)
   */
  readonly grace?: number
  /**
   * Milliseconds `app.close()` keeps the connections idle when it begins open before closing them
   * (see the core's `shutdown()`). Requests arriving on them meanwhile get Fastify's own answer
   * while closing: its 503, or served under `return503OnClosing: false`, with `Connection: close`.
   * Behind a proxy that pools connections, set it together with `return503OnClosing: false`.
   * @default 0
   */
  readonly drain?: number
}

// Fastify never reads a body for these, so their handler runs in the onRequest hook's context.
const BODYLESS = new Set(['GET', 'HEAD', 'TRACE'])

function reenterScope(request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  // Fastify calls the hooks after body parsing from the request stream's events, outside the
  // context entered in onRequest; re-enter it, as @fastify/request-context does.
  request.scope.run(done)
}

// Set on a reply when its route handler is about to start (see sealReply).
const kHandlerStarted = Symbol('tether.handlerStarted')
type MarkedReply = FastifyReply & { [kHandlerStarted]: boolean }

// The route's last preHandler hook, so the user's handler itself is left as it was declared
// (onRoute hooks registered after the plugin see it, not a wrapper).
function markHandlerStart(_request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  ;(reply as MarkedReply)[kHandlerStarted] = true
  done()
}

// `reply.sent` is true while the raw response is still open only after `reply.hijack()`.
function hijacked(reply: FastifyReply): boolean {
  return reply.sent && !reply.raw.writableEnded
}

function notSent(): boolean {
  return false
}

function ignoreSet(): void {}

/**
 * tether has answered this request (deadline, shutdown): Fastify's own ways of writing must land
 * nowhere. `reply.send` becomes a counted no-op. Once the handler has started, the reply also stops
 * reporting `sent`: Fastify settles a handler's late return value or late rejection through
 * `reply.send` only when `sent` is false (otherwise it logs FST_ERR_REP_ALREADY_SENT, or "Promise
 * errored, but reply.sent = true was set"). Before the handler starts `sent` stays true, because
 * that is what makes Fastify skip a handler whose request has already been answered.
 */
function sealReply(reply: FastifyReply): void {
  swallowLateWrites(reply, 'send')
  if ((reply as MarkedReply)[kHandlerStarted]) {
    Object.defineProperty(reply, 'sent', { configurable: true, get: notSent, set: ignoreSet })
  }
}

function appendHook<T>(existing: T | T[] | undefined, hook: T): T[] {
  if (existing === undefined) return [hook]
  return Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}

function prependHook<T>(existing: T | T[] | undefined, hook: T): T[] {
  if (existing === undefined) return [hook]
  return Array.isArray(existing) ? [hook, ...existing] : [hook, existing]
}

// An async plugin: an invalid option rejects the registration (`register()`/`ready()`), where a
// synchronous throw from a callback-style plugin would escape avvio and crash the process.
const plugin: FastifyPluginAsync<TetherFastifyOptions> = async (app, options) => {
  // Every option is checked before anything is wired, so a bad one fails the registration. The
  // core checks the options object itself and its own options, as for the Express middleware;
  // options are read by property, so inherited ones count there too.
  const adapter: TetherAdapter<FastifyReply> = {
    name: '@tether/fastify',
    // The plugin's own lifecycle options, and the ones Fastify's register() reserves for itself.
    options: ['debugRoute', 'harden', 'grace', 'drain', 'prefix', 'logLevel', 'logSerializers'],
    route: (reply) => reply.request.routeOptions.url,
    logger: options?.logger === undefined ? (reply) => reply.log : undefined,
    owned: hijacked,
    seal: sealReply,
  }
  const binding = createTether(options, adapter)
  const limited = binding.concurrency !== undefined
  // Fastify's own `forceCloseConnections: true` asks for every connection to go at close: no
  // grace, unless it is given.
  const forceClose = (app.initialConfig as { forceCloseConnections?: unknown }).forceCloseConnections === true
  const shutdownOptions = resolveShutdown({
    grace: options.grace ?? (forceClose ? 0 : undefined),
    drain: options.drain,
  })
  const harden: unknown = options.harden
  if (harden !== undefined && typeof harden !== 'boolean' && (typeof harden !== 'object' || harden === null)) {
    throw new TypeError(`\`harden\` must be true, false or hardenServer() options, received ${String(harden)}`)
  }
  const hardening =
    harden === undefined || harden === false ? undefined : resolveHardening(harden === true ? undefined : harden)

  if (hardening !== undefined) hardenServer(app.server, hardening)
  else trackConnections(app.server)
  // Fastify stops and closes only a server it listened on itself (fastify.js's close: a
  // serverFactory server the user listens on is left alone), so the plugin does the same.
  let listenedByFastify = false
  app.addHook('onListen', function tetherOnListen(done) {
    listenedByFastify = true
    done()
  })
  // app.close() gives in-flight requests `grace`, then aborts them (Fastify alone would wait for
  // them without telling them to stop). Fastify keeps its own part: its answer to requests during
  // close (return503OnClosing), and closing the server and its idle connections after preClose.
  let shuttingDown = false
  app.addHook('preClose', async () => {
    if (!listenedByFastify || !app.server.listening) return
    shuttingDown = true
    await shutdownBeforeFrameworkClose(app.server, shutdownOptions)
  })
  // app.close() resolves once the shutdown is over: every connection closed, scopes aborted.
  app.addHook('onClose', async () => {
    if (shuttingDown) await shutdown(app.server)
  })

  app.decorateRequest('scope', null as unknown as Scope)
  // Declared, so Fastify's reply constructor gives every reply the field: setting it per request is
  // then a plain store, where adding it changed the reply's shape and grew its property storage
  // (33 bytes a request, by bench/in-process.mjs --bytes).
  app.decorateReply(kHandlerStarted, false)

  if (binding.debugRoute !== undefined) app.get(binding.debugRoute, async () => inspect())

  app.addHook('onRequest', function tetherOnRequest(request, reply, hookDone) {
    const scope = binding.attach(request.raw, reply.raw, reply)
    request.scope = scope
    scope.run(hookDone)
  })

  // Fastify answers its own handlerTimeout with 503; a missed deadline is answered with `status`
  // whoever notices it, so the error Fastify is about to send carries tether's status instead. It
  // is Fastify's own error, made for this request, before Fastify's error handler reads it.
  const deadlineStatus = binding.status
  function answerTimeoutWithStatus(this: AbortSignal): void {
    const reason = this.reason as { code?: unknown; statusCode?: number } | null | undefined
    if (reason?.code === 'FST_ERR_HANDLER_TIMEOUT') reason.statusCode = deadlineStatus
  }

  app.addHook('onRoute', (route) => {
    // handlerTimeout is in Fastify ≥ 5.8's config, not yet in its initialConfig type.
    const serverHandlerTimeout = (app.initialConfig as { handlerTimeout?: number }).handlerTimeout ?? 0
    const config = route.config as { tether?: { timeout?: unknown; concurrency?: unknown } } | undefined
    // The message reads: `config.tether.timeout` of route `GET /x` must be ...
    const name = `config.tether.timeout\` of route \`${route.method} ${route.url}`
    const configured = config?.tether?.timeout
    let tighten = configured === undefined ? undefined : routeTimeout(configured, name)
    // Fastify's own handlerTimeout answers at its deadline; the scope aborts then too.
    const handlerTimeout = route.handlerTimeout ?? serverHandlerTimeout
    if (handlerTimeout > 0 && (configured === undefined || handlerTimeout < (configured as number))) {
      tighten = routeTimeout(handlerTimeout, 'handlerTimeout')
    }
    // With a handlerTimeout, `tighten` is set: one hook does both.
    const restatus = handlerTimeout > 0 && deadlineStatus !== 503
    if (tighten !== undefined) {
      const tightenRequest = tighten
      route.onRequest = appendHook(route.onRequest, function tetherRouteTimeout(request, _reply, hookDone) {
        tightenRequest(request.scope)
        if (restatus) request.signal.addEventListener('abort', answerTimeoutWithStatus, { once: true })
        hookDone()
      })
    }
    // The message reads: `config.tether.concurrency` of route `GET /x` must be ...
    const counted = routeConcurrency(
      config?.tether?.concurrency,
      `config.tether.concurrency\` of route \`${route.method} ${route.url}`,
    )
    if (limited && counted) {
      const tightenFirst = tighten
      // The route's first onRequest hook: the handler runs from here on (the same place as after
      // Express's middleware), before the body is read, so a request that waits holds nothing but
      // its place. The route's deadline is set first: the wait is judged by it.
      route.onRequest = prependHook(route.onRequest, function tetherAdmit(request, reply, hookDone) {
        tightenFirst?.(request.scope)
        binding.admit(reply.raw, hookDone)
      })
    }
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    if (methods.some((method) => !BODYLESS.has(method))) {
      route.preValidation = appendHook(route.preValidation, reenterScope)
    }
    route.preHandler = appendHook(route.preHandler, markHandlerStart)
  })
}

/**
 * The tether plugin: gives each request a scope (`request.scope`) whose signal aborts at the
 * deadline, when the client hangs up, or when the response is finished, and runs hooks and the
 * handler inside it. At the deadline, if nothing has been sent, the client gets `status` (504)
 * with a short JSON body, as does a `DeadlineExceededError` the handler throws, and Fastify's own
 * `handlerTimeout`; whatever the handler sends, returns or throws afterwards is swallowed
 * and counted. A route tightens its deadline with `config: { tether: { timeout } }`.
 *
 * With `concurrency`, at most that many requests run their hooks and handler at once (`'auto'`: a
 * number tether learns from the latencies it measures), from the route's first `onRequest` hook
 * until the response is finished or closed; the others wait inside the process, and one that
 * cannot finish before its deadline is answered 503 with `Retry-After` at once. A route that
 * streams or long-polls opts out with `config: { tether: { concurrency: false } }`.
 *
 * Register it before the routes whose work it should govern.
 *
 * @example
 * ```ts
 * await app.register(tether, { timeout: 5_000, concurrency: 'auto' })
 * app.get('/search', { config: { tether: { timeout: 300 } } }, async (request) => search(request.query))
 * app.get('/events', { config: { tether: { concurrency: false } } }, sse)
 * ```
 */
export const tether = fp(plugin, { fastify: '5.x', name: '@tether/fastify' })
export default tether
