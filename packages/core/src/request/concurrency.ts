import {
  createPool,
  isPoolOverloaded,
  kIsAborted,
  type Pool,
  type PoolOverloadedError,
  received,
  resizePool,
  type Scope,
  shared,
} from '../primitives/index.js'
import type { Answer, HttpResponse } from '../server/index.js'
import { GradientLimit, MIN_LIMIT } from './limit.js'

/**
 * The request path's concurrency limit (`tether({ concurrency })`): at most `limit` requests run
 * their handlers at once, the others wait in a deadline-aware pool (see `createPool`), which sheds
 * at once with 503 and `Retry-After` a request that cannot finish in time, and serves the newest
 * first while a queue stands. Waiting happens here, inside the process, where each request's
 * deadline is known: a limit that made requests wait in the kernel's accept queue would hide
 * them from every estimate.
 *
 * A request holds its slot from the moment its handler starts until its response is done
 * (`finish`: all of it handed to the connection) or closed, whichever comes first: a handler that
 * returns early and answers later still holds it, and a response tether answers at the deadline
 * frees it even if the handler runs on.
 */

/** A fixed limit (an integer ≥ 1) or `'auto'`. */
export type Concurrency = number | 'auto'

/**
 * Validates the `concurrency` option: an integer ≥ 1, or `'auto'`.
 *
 * @throws TypeError for a value that is neither a number nor `'auto'`; RangeError for a number
 *   that is not an integer ≥ 1
 * @internal
 */
export function checkConcurrency(value: unknown): Concurrency {
  if (value === 'auto') return value
  const expected = `\`concurrency\` must be an integer ≥ 1 or 'auto', received ${received(value)}`
  if (typeof value !== 'number') throw new TypeError(expected)
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(expected)
  return value
}

/**
 * Validates a route's opt-out (`config: { tether: { concurrency: false } }` in Fastify): `false`
 * exempts the route from the limit, `true` (the default) counts it.
 *
 * @param value - the route's setting, `undefined` when absent
 * @param name - how the error message names the setting
 * @returns whether the route's requests count against the limit
 * @throws TypeError for a value that is not a boolean
 *
 * @example
 * ```ts
 * // In a Fastify onRoute hook: validated once, where the route is declared.
 * const counted = routeConcurrency(route.config?.tether?.concurrency, `config.tether.concurrency\` of route \`${route.url}`)
 * ```
 */
export function routeConcurrency(value: unknown, name: string): boolean {
  if (value === undefined) return true
  if (typeof value !== 'boolean') {
    throw new TypeError(`\`${name}\` must be a boolean (false exempts the route), received ${received(value)}`)
  }
  return value
}

/** One request-path limit, as listed by `inspect().concurrency`. */
export interface ConcurrencySnapshot {
  /** Whether the limit adapts (`concurrency: 'auto'`). */
  readonly auto: boolean
  /** The most handlers allowed to run at once now. */
  readonly limit: number
  /** Handlers running under the limit now. */
  readonly active: number
  /** Requests waiting for a slot now. */
  readonly queued: number
  /** Requests answered 503 with `Retry-After` instead of waiting, since the limit was created. */
  readonly shed: number
  /**
   * With `'auto'`: the median latency of handlers that ran alone (ms), which the limit is measured
   * against; `null` until measured, and for a fixed limit.
   */
  readonly baselineMs: number | null
}

/** What a refused request is answered through: the request binding (it knows the adapter). */
export interface Refusable {
  refuse(answer: Answer): void
}

interface ConcurrencyState {
  /** The live limits, weakly: a limit lives as long as the middleware or plugin that owns it. */
  readonly limits: Set<WeakRef<RequestLimiter>>
  /** Requests shed by every limit ever made (a Prometheus counter must never go down). */
  shed: number
}

// Shared by every copy of the package, like the registry: inspect() lists every limit.
const state = shared<ConcurrencyState>('tether.concurrency', () => ({ limits: new Set(), shed: 0 }))

// Shared like the request record (tethered-request.ts): a request bound by bindings of two copies
// takes one slot, and the inner binding's route exemption frees the outer one's slot.
const kSlot = Symbol.for('tether.concurrency.slot')
type SlottedResponse = HttpResponse & { [kSlot]?: Slot }

/** A request's place under a limit, from admission until its response is done. */
class Slot {
  /** Frees the slot (settles the pool task); set while the handler holds it. */
  resolve: (() => void) | undefined = undefined
  /** When the handler started (`performance.now()`), for `'auto'`. */
  began = 0
  /** Handlers running when it started, itself included, for `'auto'`. */
  inflight = 0
  /** The response is done, closed, or exempt: the slot is not held (again). */
  done = false

  constructor(
    readonly limiter: RequestLimiter,
    readonly start: () => void,
  ) {}

  /** The pool task: start the handler, and hold the slot until the response is done. */
  readonly task = (): Promise<void> | undefined => {
    // The response ended while the request waited (between its end and its scope's): never start.
    if (this.done) return undefined
    return new Promise<void>((resolve) => {
      this.resolve = resolve
      const limiter = this.limiter
      if (limiter.auto) {
        this.began = performance.now()
        this.inflight = limiter.pool.active
      }
      this.start()
    })
  }
}

function onResponseFinish(this: SlottedResponse): void {
  release(this, true)
}

function onResponseClose(this: SlottedResponse): void {
  release(this, false)
}

/** The response is done (`finished`) or closed: its slot goes to the next request. */
function release(res: SlottedResponse, finished: boolean): void {
  const slot = res[kSlot]
  if (slot === undefined || slot.done) return
  slot.done = true
  const resolve = slot.resolve
  if (resolve === undefined) return // never started: it waited and was dropped, or was shed
  slot.resolve = undefined
  // A response cut short by its client says how patient the client was, not how fast the server.
  if (finished) slot.limiter.sample(slot)
  resolve()
}

/**
 * Exempts the current request from the concurrency limit it was admitted under: its slot goes to
 * the next waiting request now, and its latency is not sampled. For routes that stream or
 * long-poll, which would otherwise hold a slot for as long as they last. Nothing happens for a
 * request that holds no slot.
 *
 * @param res - the request's response
 *
 * @example
 * ```ts
 * // Express's unlimited() route middleware, in full:
 * (req, res, next) => {
 *   exemptFromConcurrency(res)
 *   next()
 * }
 * ```
 */
export function exemptFromConcurrency(res: HttpResponse): void {
  const slot = (res as SlottedResponse)[kSlot]
  if (slot === undefined || slot.done) return
  slot.done = true
  const resolve = slot.resolve
  slot.resolve = undefined
  resolve?.()
}

/**
 * One request-path limit: a pool whose tasks are handlers, and with `'auto'`, the gradient limit
 * that sizes it.
 *
 * @internal
 */
export class RequestLimiter {
  readonly auto: boolean
  readonly pool: Pool
  readonly #gradient: GradientLimit | undefined
  #shed = 0

  constructor(concurrency: Concurrency) {
    this.auto = concurrency === 'auto'
    this.#gradient = this.auto ? new GradientLimit() : undefined
    this.pool = createPool({ concurrency: concurrency === 'auto' ? MIN_LIMIT : concurrency })
    state.limits.add(new WeakRef(this))
  }

  /**
   * Starts a request's handler (`start`) in the request's scope now, once a slot is free, or never:
   * a request that cannot finish in time is answered 503 with `Retry-After` through `refusal`, and
   * one whose scope ends while it waits (deadline, client gone) was answered by that end. A
   * request that holds a slot already (a second binding) starts at once.
   */
  admit(scope: Scope, res: HttpResponse, start: () => void, refusal: Refusable): void {
    const response = res as SlottedResponse
    if (response[kSlot] !== undefined) {
      scope.run(start)
      return
    }
    const slot = new Slot(this, start)
    response[kSlot] = slot
    response.on('finish', onResponseFinish)
    response.on('close', onResponseClose)
    // Run from the request's scope: the pool binds the wait to it, drops it when the scope ends,
    // judges it by its deadline, and starts the handler in its async context.
    scope
      .run(() => this.pool.run(slot.task))
      .then(undefined, (error: unknown) => {
        if (isPoolOverloaded(error)) {
          this.#shed++
          state.shed++
          refusal.refuse(shedAnswer(error))
        } else if (!scope[kIsAborted]) {
          // Not a shed, not the end of the request: a bug in the chain's first step. Surface it.
          throw error
        }
      })
  }

  /** A handler's response is done: with `'auto'`, its latency moves the limit. */
  sample(slot: Slot): void {
    const gradient = this.#gradient
    if (gradient === undefined) return
    const now = performance.now()
    const pool = this.pool
    const limit = gradient.sample(now, now - slot.began, Math.max(slot.inflight, pool.active), pool.queued)
    if (limit !== pool.concurrency) resizePool(pool, limit)
  }

  /** What `inspect().concurrency` lists for this limit. */
  snapshot(): ConcurrencySnapshot {
    const baseline = this.#gradient?.baseline
    return {
      auto: this.auto,
      limit: this.pool.concurrency,
      active: this.pool.active,
      queued: this.pool.queued,
      shed: this.#shed,
      baselineMs: baseline === undefined || baseline === 0 ? null : Math.round(baseline * 1000) / 1000,
    }
  }
}

/** tether's answer to a shed request: the pool's reason, 503, and its `Retry-After`. */
function shedAnswer(error: PoolOverloadedError): Answer {
  return {
    statusCode: error.statusCode,
    code: error.code,
    message: error.message,
    close: false,
    retryAfter: Number(error.headers['retry-after']),
  }
}

/**
 * The request-path limits alive now, oldest first, for `inspect()` and the metrics.
 *
 * @internal
 */
export function concurrencyLimits(): ConcurrencySnapshot[] {
  const snapshots: ConcurrencySnapshot[] = []
  for (const ref of state.limits) {
    const limiter = ref.deref()
    if (limiter === undefined) state.limits.delete(ref)
    else snapshots.push(limiter.snapshot())
  }
  return snapshots
}

/**
 * Requests shed by every request-path limit since the process started.
 *
 * @internal
 */
export function concurrencyShed(): number {
  return state.shed
}
