import { currentScope } from './create-scope.js'
import { type ShedSource, shedChannel } from './diagnostics.js'
import { PoolOverloadedError, withoutStack } from './errors.js'
import { POOL_OPTIONS, type Pool, type PoolOptions, type PoolRunOptions, RUN_OPTIONS } from './pool-options.js'
import { neverAborted, Waiting } from './pool-waiting.js'
import { counters, type TrackedTask } from './registry.js'
import type { Scope } from './scope.js'
import { kSubscribe, kTrack, requestScopeOf, scopeForSignal, untrack } from './scope-protocol.js'
import { isThenable, type Task } from './task.js'
import { checkBoolean, checkCount, checkOptionsObject, checkRetryAfter, checkSignal, received } from './validate.js'

// How much one measured run moves the service-time average: a quarter, so that the estimate
// follows a change of load within a few tasks while one slow outlier (a GC pause) moves it little.
const SERVICE_TIME_WEIGHT = 0.25
// A queue is standing, rather than absorbing a burst, once its oldest caller has waited longer than
// this many service times per slot (CoDel's "standing queue", with a target that scales with the
// work instead of a constant to tune).
const STANDING_QUEUE = 2
const QUEUE_FULL = 'pool overloaded: queue is full'
const CANNOT_FINISH = "pool overloaded: the work queued ahead cannot finish before the caller's deadline"
const TOO_LATE = "pool overloaded: the caller's deadline no longer leaves time to run the task"
const OUTRUN = "pool overloaded: newer callers go first, and the caller's deadline leaves no time for them and its task"

// The method behind resizePool(): module-private, so that a pool's public face stays read-only.
const kResize = Symbol('tether.pool.resize')

// p-limit fits everything here but one rule: a queued task whose caller has aborted must leave
// the queue at once and never start. p-limit's queue cannot remove an entry from the middle
// (p-queue's issues #219/#241 are the same problem), so the pool keeps its own small queue.
class TaskPool implements Pool {
  #concurrency: number
  readonly maxQueue: number
  readonly #retryAfter: number
  readonly #deadlineAware: boolean
  readonly #source: ShedSource
  #serviceTime = 0
  #active = 0
  #queued = 0
  #head: Waiting<unknown> | undefined = undefined
  #tail: Waiting<unknown> | undefined = undefined

  constructor(
    concurrency: number,
    maxQueue: number,
    retryAfter: number,
    deadlineAware: boolean,
    source: ShedSource = 'pool',
  ) {
    this.#concurrency = concurrency
    this.maxQueue = maxQueue
    this.#retryAfter = retryAfter
    this.#deadlineAware = deadlineAware
    this.#source = source
  }

  get concurrency(): number {
    return this.#concurrency
  }

  get serviceTime(): number {
    return this.#serviceTime
  }

  /** Sets the most tasks running at once; callers waiting start at once if slots opened. */
  [kResize](concurrency: number): void {
    this.#concurrency = concurrency
    this.#dispatch()
  }

  get active(): number {
    return this.#active
  }

  get queued(): number {
    return this.#queued
  }

  run<T>(task: Task<T>, options?: PoolRunOptions): Promise<T> {
    if (typeof task !== 'function') throw new TypeError(`a task must be a function, received ${received(task)}`)
    let signal: AbortSignal
    let scope: Scope | undefined
    if (options?.signal !== undefined) {
      checkOptionsObject('pool.run()', options, RUN_OPTIONS)
      signal = checkSignal('signal', options.signal)
      scope = scopeForSignal(signal)
    } else {
      if (options !== undefined) checkOptionsObject('pool.run()', options, RUN_OPTIONS)
      scope = currentScope()
      signal = scope === undefined ? neverAborted : scope.signal
    }
    if (signal.aborted) return Promise.reject(signal.reason)
    if (this.#active < this.concurrency) {
      this.#active++
      return this.#runNow(task, signal, scope)
    }
    if (this.#queued >= this.maxQueue) return Promise.reject(this.#shed(QUEUE_FULL, scope))
    let deadline = Number.POSITIVE_INFINITY
    if (this.#deadlineAware && scope !== undefined) {
      const own = scope.deadline
      if (own !== undefined) {
        deadline = own
        // The caller would wait for the tasks running now and those queued ahead of it to pass
        // through `concurrency` slots, then run its own task: if that cannot end before its
        // deadline, starting it later only burns a slot on work that will be aborted part-way.
        // Shedding at once also answers the caller while it can still use the answer (the SRE
        // book's "Handling Overload": drop work whose deadline cannot be met, before doing it).
        const service = this.#serviceTime
        // Under a standing queue the newest caller with a deadline is served next, so nothing
        // queued is ahead of it.
        const ahead = this.#standing() ? 0 : this.#queued
        if (service > 0 && own - Date.now() < ((ahead + 1) / this.concurrency + 1) * service) {
          return Promise.reject(this.#shed(CANNOT_FINISH, scope))
        }
      }
    }
    return new Promise<T>((resolve, reject) => {
      const waiting = new Waiting(this, task, signal, scope, deadline, resolve, reject)
      // Dated once the pool judges deadlines at all (a caller with one has come, or a service time
      // was measured): a pool whose callers have no deadline pays no clock read.
      if (deadline !== Number.POSITIVE_INFINITY || this.#serviceTime > 0) waiting.enqueuedAt = performance.now()
      // The start continuation is attached here, in the caller's async context, so the task runs
      // in that context even though a slot is freed by some other task's completion.
      new Promise<void>((release) => {
        waiting.start = release
      }).then(() => this.#runQueued(waiting))
      this.#enqueue(waiting as Waiting<unknown>)
      if (scope !== undefined) scope[kSubscribe](waiting)
      else if (signal !== neverAborted) signal.addEventListener('abort', waiting, { once: true })
    })
  }

  /** Removes an aborted caller from the queue and rejects it with its signal's reason. @internal */
  drop(waiting: Waiting<unknown>): void {
    if (waiting.start === undefined) return // already left the queue
    waiting.start = undefined
    this.#unlink(waiting)
    waiting.reject(waiting.signal.reason)
  }

  /** Runs a task in a slot already counted in `#active`; returns its outcome. */
  #runNow<T>(task: Task<T>, signal: AbortSignal, scope: Scope | undefined): Promise<T> {
    let result: T | PromiseLike<T>
    try {
      result = task(signal)
    } catch (error) {
      this.#release()
      return Promise.reject(error)
    }
    if (!isThenable(result)) {
      this.#release()
      return Promise.resolve(result)
    }
    const tracked = scope?.[kTrack]('pool')
    // A derived promise is returned, not the task's own, so that an unhandled rejection still
    // surfaces on the caller's side rather than being absorbed by the pool's bookkeeping.
    return Promise.resolve(result).then(
      (value) => {
        this.#taskEnded(tracked)
        return value
      },
      (error: unknown) => {
        this.#taskEnded(tracked)
        throw error
      },
    )
  }

  /**
   * Counts a shed call, makes its error (no stack: shedding is the hot path of overload) and tells
   * the shed channel's subscribers.
   */
  #shed(message: string, scope: Scope | undefined): PoolOverloadedError {
    const source = this.#source
    if (source === 'pool') counters.shed++
    else counters.workerShed++
    const retryAfter = this.#retryAfter
    const shed = withoutStack(() => {
      const error = new PoolOverloadedError(retryAfter)
      // The class's message is the full-queue one; the stack (frameless here) repeats the message.
      error.message = message
      error.stack = `${error.name}: ${message}`
      return error
    })
    if (shedChannel.hasSubscribers) {
      shedChannel.publish({ source, error: shed, scope, requestScope: requestScopeOf(scope) })
    }
    return shed
  }

  /** Folds one measured run time into the service-time average. */
  #observe(ms: number): void {
    const service = this.#serviceTime
    this.#serviceTime = service === 0 ? ms : service + (ms - service) * SERVICE_TIME_WEIGHT
  }

  /** Runs a queued task, settling the caller's promise directly (no promise adoption). */
  #runQueued<T>(waiting: Waiting<T>): void {
    const { task, signal, scope, resolve, reject } = waiting
    // The caller may have aborted between leaving the queue and this microtask.
    if (signal.aborted) {
      this.#release()
      reject(signal.reason)
      return
    }
    // Only tasks that queued, for callers with a deadline, are timed: they are the ones admission
    // judges, and the uncontended path (and callers without deadlines) pays no clock reads. Read
    // before the task is called, so that its synchronous part counts too.
    const began = waiting.deadline === Number.POSITIVE_INFINITY ? -1 : performance.now()
    let result: T | PromiseLike<T>
    try {
      result = task(signal)
    } catch (error) {
      this.#release()
      reject(error)
      return
    }
    if (!isThenable(result)) {
      this.#release()
      resolve(result)
      return
    }
    const tracked = scope?.[kTrack]('pool')
    result.then(
      (value) => {
        if (began >= 0) this.#observe(performance.now() - began)
        this.#taskEnded(tracked)
        resolve(value)
      },
      (error: unknown) => {
        if (began >= 0) this.#observe(performance.now() - began)
        this.#taskEnded(tracked)
        reject(error)
      },
    )
  }

  /** A started task has settled: it leaves its scope's list, and its slot is freed. */
  #taskEnded(tracked: TrackedTask | undefined): void {
    if (tracked !== undefined) untrack(tracked)
    this.#release()
  }

  #release(): void {
    this.#active--
    this.#dispatch()
  }

  /** Starts waiting callers while there are free slots. */
  #dispatch(): void {
    if (this.#head !== undefined && this.#standing()) this.#shedOutrun()
    while (this.#active < this.concurrency && this.#head !== undefined) {
      const waiting = this.#next()
      const start = waiting.start as () => void
      waiting.start = undefined
      this.#unlink(waiting)
      waiting.unsubscribe()
      // Its turn came too late: what is left of its budget does not cover one service time.
      // Answer it now, while it can still act on the answer, and give the slot to the next.
      if (waiting.deadline !== Number.POSITIVE_INFINITY && waiting.deadline - Date.now() < this.#serviceTime) {
        waiting.reject(this.#shed(TOO_LATE, waiting.scope))
        continue
      }
      this.#active++
      start()
    }
  }

  /**
   * Under a standing queue newer callers with a deadline go first, so the oldest are served last:
   * one whose remaining budget cannot cover the work queued after it plus its own run is answered
   * now rather than at its deadline (a standing queue must not eat every budget it holds).
   */
  #shedOutrun(): void {
    const service = this.#serviceTime
    const now = Date.now()
    let head = this.#head
    while (
      head !== undefined &&
      head.deadline !== Number.POSITIVE_INFINITY &&
      head.deadline - now < ((this.#queued - 1) / this.concurrency + 1) * service
    ) {
      const next = head.next
      head.start = undefined
      this.#unlink(head)
      head.unsubscribe()
      head.reject(this.#shed(OUTRUN, head.scope))
      head = next
    }
  }

  /**
   * Whether the queue is standing: its oldest caller has waited longer than a few service times per
   * slot. Then the queue is not absorbing a burst but holding more than the pool can serve, and
   * serving it oldest-first hands every slot to the caller closest to its deadline.
   */
  #standing(): boolean {
    const head = this.#head
    return (
      head !== undefined &&
      head.enqueuedAt > 0 &&
      this.#serviceTime > 0 &&
      performance.now() - head.enqueuedAt > (STANDING_QUEUE * this.#serviceTime) / this.concurrency
    )
  }

  /**
   * The caller to start next: the oldest (FIFO), except under a standing queue, where the newest
   * is started first if it has a deadline (Facebook's adaptive LIFO): it has the most budget left,
   * so its answer is the likeliest to arrive in time, while the oldest were going to miss theirs
   * anyway. Callers without a deadline are never moved ahead, so among them the order stays FIFO.
   */
  #next(): Waiting<unknown> {
    const tail = this.#tail as Waiting<unknown>
    if (tail.deadline !== Number.POSITIVE_INFINITY && this.#standing()) return tail
    return this.#head as Waiting<unknown>
  }

  #enqueue(waiting: Waiting<unknown>): void {
    const tail = this.#tail
    if (tail === undefined) this.#head = waiting
    else {
      tail.next = waiting
      waiting.prev = tail
    }
    this.#tail = waiting
    this.#queued++
  }

  #unlink(waiting: Waiting<unknown>): void {
    const { prev, next } = waiting
    if (prev === undefined) this.#head = next
    else prev.next = next
    if (next === undefined) this.#tail = prev
    else next.prev = prev
    waiting.prev = waiting.next = undefined
    this.#queued--
  }
}

/**
 * A pool with validated settings, whose sheds are counted and published as `source`'s (the worker
 * pool admits its callers through one).
 *
 * @internal
 */
export function poolFor(
  source: ShedSource,
  concurrency: number,
  maxQueue: number,
  retryAfter: number,
  deadlineAware: boolean,
): Pool {
  return new TaskPool(concurrency, maxQueue, retryAfter, deadlineAware, source)
}

/**
 * A bounded worker pool that stops serving callers who have left: a queued task whose caller's
 * signal aborts is rejected at once with the signal's reason, leaves the queue and never starts;
 * a full queue sheds new tasks with `PoolOverloadedError` (HTTP 503 with `Retry-After` in both
 * adapters). Tasks run in the async context of their caller and receive its signal.
 *
 * Under overload it spends its slots on work that can still finish in time, for callers whose
 * scope has a deadline (every request's, under `tether()`): it sheds at once a caller whose deadline
 * cannot cover the work ahead at the observed service time, never starts one whose turn came too
 * late, and serves the newest first while a queue stands. Callers without a deadline keep FIFO.
 *
 * @param options - `concurrency` (required), `maxQueue`, `retryAfter`, `deadlineAware`
 * @throws TypeError/RangeError naming the option, for a missing or invalid `concurrency` or
 *   other invalid options
 *
 * @example
 * ```ts
 * const db = createPool({ concurrency: 8, maxQueue: 100 })
 * app.get('/report', async (req, res) => {
 *   res.json(await db.run((signal) => runReport(req.query, { signal })))
 * })
 * ```
 */
export function createPool(options: PoolOptions): Pool {
  checkOptionsObject('createPool()', options, POOL_OPTIONS)
  const concurrency = checkCount('concurrency', options?.concurrency)
  const maxQueue =
    options.maxQueue === undefined ? Number.POSITIVE_INFINITY : checkCount('maxQueue', options.maxQueue, { min: 0 })
  const retryAfter = checkRetryAfter(options.retryAfter)
  const deadlineAware =
    options.deadlineAware === undefined ? true : checkBoolean('deadlineAware', options.deadlineAware)
  return new TaskPool(concurrency, maxQueue, retryAfter, deadlineAware)
}

/**
 * Changes the concurrency of a pool made by {@link createPool}: the request path's adaptive limit
 * (`tether({ concurrency: 'auto' })`) moves it as it learns. Raising it starts waiting callers at
 * once; lowering it stops nothing that runs, and new callers wait until the running ones are
 * fewer than the new concurrency.
 *
 * @param pool - a pool from {@link createPool}
 * @param concurrency - an integer ≥ 1 (not checked: the caller computed it)
 * @internal
 */
export function resizePool(pool: Pool, concurrency: number): void {
  ;(pool as TaskPool)[kResize](concurrency)
}
