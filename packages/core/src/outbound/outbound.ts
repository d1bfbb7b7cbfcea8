import type { Agent, Dispatcher } from 'undici'
import {
  type AbortSubscriber,
  CanceledError,
  checkCount,
  checkRetryAfter,
  checkTimeout,
  counters,
  currentScope,
  deadlineExceeded,
  kIsAborted,
  kReason,
  kScopeAborted,
  kSiblingNext,
  kSiblingPrev,
  kSubscribe,
  kUnsubscribe,
  optional,
  PoolOverloadedError,
  reasonValue,
  renamedOption,
  requestScopeOf,
  type Scope,
  shedChannel,
  withoutStack,
} from '../primitives/index.js'
import { live } from './live.js'

/**
 * The outbound side: a connection pool per origin that tether configures (undici's `Agent`), with
 * a bounded wait queue in front of it. Go's lesson (`http.DefaultClient` with no
 * `MaxIdleConnsPerHost` nor `IdleConnTimeout`): never call downstreams through an untuned
 * transport. Node's global `fetch` runs on undici's global dispatcher: no cap on connections per
 * origin, and headers and body timeouts of 300 s whatever the caller's deadline.
 */

/** The transport options of {@link createScopedFetch}. All optional. */
export interface OutboundOptions {
  /**
   * The most sockets open to one origin (Go's `MaxConnsPerHost`). Calls beyond it wait in a
   * queue for a socket instead of opening more.
   * @default 64
   */
  readonly concurrency?: number
  /**
   * The former name of {@link OutboundOptions.concurrency}: the same option.
   * @deprecated Use `concurrency`; `connections` keeps working.
   * @default 64
   */
  readonly connections?: number
  /**
   * Milliseconds an idle socket is kept open for reuse (Go's `IdleConnTimeout`). Shorter than
   * Node's own server keep-alive (5 s), so the client, not the server, closes an idle socket and a
   * call never races the server's close. A shorter keep-alive hint from the server wins.
   * @default 4000
   */
  readonly idleTimeout?: number
  /**
   * The former name of {@link OutboundOptions.idleTimeout}: the same option. Renamed because a
   * server's `keepAliveTimeout` (`hardenServer()`, Node's) is the other side's setting, 65 s
   * behind a balancer, where this one is a client's, a few seconds.
   * @deprecated Use `idleTimeout`; `keepAliveTimeout` keeps working.
   * @default 4000
   */
  readonly keepAliveTimeout?: number
  /**
   * The most calls waiting for a socket, per origin. Beyond it a call is refused at once with
   * `PoolOverloadedError` (503, `Retry-After`) instead of queueing without bound.
   * @default 1024
   */
  readonly maxQueue?: number
  /**
   * Seconds a call refused because its origin's queue is full is told to wait: the
   * `PoolOverloadedError`'s `Retry-After`, which both adapters send if it escapes a handler. The
   * same option, with the same rule, as `createPool()`'s.
   * @default 1
   */
  readonly retryAfter?: number
  /**
   * Milliseconds to wait for a response's headers. Inside a scope, a call never waits longer than
   * the scope's remaining budget, whatever this says.
   * @default 30000
   */
  readonly headersTimeout?: number
  /**
   * Milliseconds a response body may stay silent between two chunks. Inside a scope, never longer
   * than the scope's remaining budget, whatever this says.
   * @default 30000
   */
  readonly bodyTimeout?: number
}

/** One origin's connections, as listed in `inspect().outbound`. */
export interface OutboundOrigin {
  /** `scheme://host:port`. */
  readonly origin: string
  /** Sockets open to the origin. */
  readonly open: number
  /** Open sockets with no call on them, kept for reuse until `keepAliveTimeout`. */
  readonly idle: number
  /** Open sockets carrying a call. */
  readonly busy: number
  /** Calls waiting for a socket in tether's queue. */
  readonly queued: number
}

/** A dispatcher for undici's `fetch`/`request` (`{ dispatcher }`), with its counts. */
export interface OutboundDispatcher extends Dispatcher {
  /** The origins this dispatcher holds sockets or queued calls for. */
  origins(): OutboundOrigin[]
}

/** @internal */
export const OUTBOUND_DEFAULTS = {
  connections: 64,
  keepAliveTimeout: 4_000,
  maxQueue: 1_024,
  headersTimeout: 30_000,
  bodyTimeout: 30_000,
} as const

/** @internal */
export type ResolvedOptions = {
  -readonly [K in Exclude<keyof OutboundOptions, 'concurrency' | 'idleTimeout'>]-?: number
}

/**
 * Validates the transport options. Called when a scoped fetch is created, never per call.
 *
 * @internal
 */
export function resolveOutbound(options: OutboundOptions | undefined): ResolvedOptions {
  return {
    connections: checkCount(
      options?.concurrency === undefined ? 'connections' : 'concurrency',
      optional(renamedOption<number>(options, 'concurrency', 'connections'), OUTBOUND_DEFAULTS.connections),
      {
        allowInfinity: false,
      },
    ),
    keepAliveTimeout: checkTimeout(
      options?.idleTimeout === undefined ? 'keepAliveTimeout' : 'idleTimeout',
      optional(renamedOption<number>(options, 'idleTimeout', 'keepAliveTimeout'), OUTBOUND_DEFAULTS.keepAliveTimeout),
    ),
    maxQueue: checkCount('maxQueue', optional(options?.maxQueue, OUTBOUND_DEFAULTS.maxQueue), { min: 0 }),
    retryAfter: checkRetryAfter(options?.retryAfter),
    headersTimeout: checkTimeout('headersTimeout', optional(options?.headersTimeout, OUTBOUND_DEFAULTS.headersTimeout)),
    bodyTimeout: checkTimeout('bodyTimeout', optional(options?.bodyTimeout, OUTBOUND_DEFAULTS.bodyTimeout)),
  }
}

// undici's legacy handler shape: what its own fetch() and request() pass to a dispatcher (7.x).
/** @internal */
export interface Handler {
  onConnect?(abort: (reason?: unknown) => void, context?: unknown): void
  onResponseStarted?(): void
  onHeaders?(status: number, headers: unknown, resume: () => void, statusText: string): boolean
  onData?(chunk: Buffer): boolean
  onComplete?(trailers: unknown): void
  onError?(error: unknown): void
  onUpgrade?(status: number, headers: unknown, socket: unknown): void
  onRequestStart?: unknown
}

/** One origin's calls in flight and calls waiting (a FIFO list through the waiting calls). */
interface Gate {
  readonly origin: string
  active: number
  head: Call | undefined
  tail: Call | undefined
  size: number
}

/** @internal */
export type Opts = Dispatcher.DispatchOptions

const QUEUED = 0
const RUNNING = 1
const DONE = 2

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/**
 * One call through the transport: the handler undici sees (the caller's, plus giving the slot
 * back when the call ends), a place in its origin's wait queue, and a subscriber of the caller's
 * scope. The scope tells it when to stop through the scope's own intrusive list: no signal, no
 * listener and no closure per call. One object per call; the methods live on the prototype.
 */
class Call implements AbortSubscriber {
  [kSiblingPrev]: AbortSubscriber | undefined = undefined;
  [kSiblingNext]: AbortSubscriber | undefined = undefined
  /** Links in the origin's wait queue. */
  prev: Call | undefined = undefined
  next: Call | undefined = undefined
  state = RUNNING
  /** undici's abort for the call, once it has been handed to a socket. */
  inner: ((reason?: unknown) => void) | undefined = undefined
  /** The caller has been given the abort function already (the call waited in the queue). */
  early = false
  /** The caller has been told the call failed: whatever undici reports later is not forwarded. */
  reported = false
  /** Why the call was stopped before undici gave it an abort function. */
  pending: unknown = undefined
  /** The timeouts were cut to the caller's budget. */
  budgeted = false

  constructor(
    readonly transport: OutboundPool,
    readonly gate: Gate,
    readonly opts: Opts,
    readonly handler: Handler,
    readonly scope: Scope | undefined,
  ) {}

  [kScopeAborted](reason: unknown): void {
    this.stop(reasonValue(reason))
  }

  /** Stops the call: its caller has gone, or the transport is closing. */
  stop(reason: unknown): void {
    if (this.state === QUEUED) {
      // The pool's rule: a waiting call whose caller has gone leaves the queue at once, and never
      // reaches a socket.
      this.transport.unqueue(this)
      this.state = DONE
      this.reported = true
      // Gone by its own signal: leave the scope's list now (a no-op when the scope is what ended).
      this.scope?.[kUnsubscribe](this)
      this.handler.onError?.(reason)
    } else if (this.state === RUNNING) {
      if (this.inner !== undefined) this.inner(reason)
      else if (this.pending === undefined) {
        // undici has not written the call yet (still connecting): tell the caller now, and stop
        // the call as soon as undici hands over its abort.
        this.pending = reason ?? withoutStack(() => new CanceledError())
        this.reported = true
        this.handler.onError?.(reason)
      }
    }
  }

  onConnect(abort: (reason?: unknown) => void, context?: unknown): void {
    this.inner = abort
    if (this.pending !== undefined) abort(this.pending)
    else if (!this.early) this.handler.onConnect?.(abort, context)
  }

  onResponseStarted(): void {
    this.handler.onResponseStarted?.()
  }

  onHeaders(status: number, headers: unknown, resume: () => void, statusText: string): boolean {
    return this.handler.onHeaders?.(status, headers, resume, statusText) ?? true
  }

  onData(chunk: Buffer): boolean {
    return this.handler.onData?.(chunk) ?? true
  }

  onComplete(trailers: unknown): void {
    this.#end()
    this.handler.onComplete?.(trailers)
  }

  onError(error: unknown): void {
    this.#end()
    if (this.reported) return
    // A timeout cut to the caller's budget is the caller's deadline, and says so.
    const code = (error as { code?: unknown } | null)?.code
    if (this.budgeted && typeof code === 'string' && TIMEOUT_CODES.has(code)) {
      error = deadlineExceeded(this.scope, 'deadline exceeded: the downstream was too slow', error)
    }
    this.handler.onError?.(error)
  }

  onUpgrade(status: number, headers: unknown, socket: unknown): void {
    // The socket now belongs to the caller (a WebSocket): the pool no longer counts it.
    this.#end()
    this.handler.onUpgrade?.(status, headers, socket)
  }

  #end(): void {
    if (this.state === DONE) return
    this.state = DONE
    this.scope?.[kUnsubscribe](this)
    this.transport.release(this.gate)
  }
}

/** The origin key undici's Agent uses: `scheme://host:port`, no path. */
function originOf(origin: unknown): string | undefined {
  if (typeof origin === 'string') {
    // The common case (fetch passes `url.origin`) is kept as is; anything with a path is parsed.
    if (origin.indexOf('/', origin.indexOf('//') + 2) === -1) return origin
    return URL.canParse(origin) ? new URL(origin).origin : undefined
  }
  if (origin instanceof URL) return origin.origin
  return undefined
}

/** The transport's state, separate from the Dispatcher class so it can be built lazily. @internal */
export class OutboundPool {
  readonly gates = new Map<string, Gate>()
  closed = false
  /** This transport's entry in the live set, once registered. */
  ref: WeakRef<OutboundPool> | undefined = undefined

  constructor(
    readonly agent: Agent,
    readonly options: ResolvedOptions,
  ) {
    // An origin whose sockets have all gone is forgotten, so a process calling many hosts over
    // its life does not keep a record per host.
    agent.on('disconnect', (origin: URL) => {
      const gate = this.gates.get(origin.origin)
      if (gate !== undefined && gate.active === 0 && gate.size === 0) this.gates.delete(gate.origin)
    })
  }

  dispatch(opts: Opts, handler: Handler): boolean {
    if (handler.onConnect === undefined && handler.onRequestStart !== undefined) {
      throw new TypeError("tether's outbound dispatcher takes undici 7's handler shape (onConnect, onHeaders, ...)")
    }
    const origin = originOf(opts.origin)
    if (origin === undefined || this.closed) return this.agent.dispatch(opts, handler as Dispatcher.DispatchHandler)
    const scope = currentScope()
    if (scope !== undefined && scope.remaining() <= 0) {
      handler.onError?.(
        scope[kIsAborted]
          ? reasonValue(scope[kReason])
          : deadlineExceeded(scope, 'deadline exceeded: no budget left for the call'),
      )
      return false
    }
    let gate = this.gates.get(origin)
    if (gate === undefined) {
      gate = { origin, active: 0, head: undefined, tail: undefined, size: 0 }
      this.gates.set(origin, gate)
    }
    if (gate.active >= this.options.connections && gate.size >= this.options.maxQueue) {
      counters.outboundShed++
      const error = withoutStack(
        () =>
          new PoolOverloadedError(this.options.retryAfter, {
            message: `outbound queue full: ${gate.size} calls already wait for a connection to ${origin} (maxQueue ${this.options.maxQueue})`,
          }),
      )
      if (shedChannel.hasSubscribers) {
        shedChannel.publish({ source: 'outbound', error, scope, requestScope: requestScopeOf(scope), origin })
      }
      handler.onError?.(error)
      return false
    }
    const call = new Call(this, gate, opts, handler, scope)
    // The scope tells the call when its caller has gone (deadline, client gone, response finished).
    scope?.[kSubscribe](call)
    if (gate.active < this.options.connections) {
      gate.active++
      return this.forward(call)
    }
    call.state = QUEUED
    if (gate.tail === undefined) gate.head = call
    else {
      gate.tail.next = call
      call.prev = gate.tail
    }
    gate.tail = call
    gate.size++
    // The caller gets its abort function now, so that giving up takes the call out of the queue
    // (undici's fetch wires its own abort only through onConnect).
    call.early = true
    handler.onConnect?.((reason?: unknown) => call.stop(reason))
    return true
  }

  /** Hands a call to undici, its timeouts cut to the caller's budget. */
  forward(call: Call): boolean {
    let opts = call.opts
    const remaining = call.scope === undefined ? Number.POSITIVE_INFINITY : call.scope.remaining()
    if (Number.isFinite(remaining)) {
      const budget = Math.max(1, Math.ceil(remaining))
      const headersTimeout = opts.headersTimeout ?? this.options.headersTimeout
      const bodyTimeout = opts.bodyTimeout ?? this.options.bodyTimeout
      if (budget < headersTimeout || budget < bodyTimeout) {
        call.budgeted = true
        opts = {
          ...opts,
          headersTimeout: Math.min(budget, headersTimeout),
          bodyTimeout: Math.min(budget, bodyTimeout),
        }
      }
    }
    return this.agent.dispatch(opts, call as unknown as Dispatcher.DispatchHandler)
  }

  unqueue(call: Call): void {
    const gate = call.gate
    if (call.prev === undefined) gate.head = call.next
    else call.prev.next = call.next
    if (call.next === undefined) gate.tail = call.prev
    else call.next.prev = call.prev
    call.prev = call.next = undefined
    gate.size--
  }

  release(gate: Gate): void {
    gate.active--
    while (gate.active < this.options.connections && gate.head !== undefined) {
      const call = gate.head
      this.unqueue(call)
      call.state = RUNNING
      gate.active++
      this.forward(call)
    }
  }

  /** Refuses every waiting call, then stops taking new ones; leaves the live set. */
  refuseQueued(error: Error): void {
    this.closed = true
    if (this.ref !== undefined) live.delete(this.ref)
    for (const gate of this.gates.values()) {
      while (gate.head !== undefined) gate.head.stop(error)
    }
  }

  origins(): OutboundOrigin[] {
    const stats = this.agent.stats as Record<string, { connected?: number; running?: number } | undefined>
    const list: OutboundOrigin[] = []
    const seen = new Set<string>()
    for (const [origin, stat] of Object.entries(stats)) {
      seen.add(origin)
      const open = stat?.connected ?? 0
      const busy = Math.min(open, stat?.running ?? 0)
      list.push({ origin, open, idle: open - busy, busy, queued: this.gates.get(origin)?.size ?? 0 })
    }
    for (const gate of this.gates.values()) {
      if (!seen.has(gate.origin) && gate.size > 0) {
        list.push({ origin: gate.origin, open: 0, idle: 0, busy: 0, queued: gate.size })
      }
    }
    return list
  }
}
