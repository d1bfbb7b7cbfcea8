import { AsyncLocalStorage } from 'node:async_hooks'
import { type DeadlineMessage, deadlineChannel } from './diagnostics.js'
import { CanceledError, DeadlineExceededError, withoutStack } from './errors.js'
import {
  defaultPolicy,
  type RequestInfo,
  scopeEnded,
  type TaskKind,
  TrackedTask,
  type TrackingPolicy,
  taskSettled,
} from './registry.js'
import { shared } from './shared.js'
import { cancelTimer, kDue, kExpire, kList, kNext, kPrev, startTimer, type Timed, type TimerList } from './timers.js'
import { checkDuration, checkOptionsObject, checkSignal, checkTimestamp } from './validate.js'

/** Options of {@link createScope} and {@link Scope.child}. All optional. */
export interface ScopeOptions {
  /**
   * Milliseconds from now until the deadline. A finite number ≥ 0.
   * @default undefined (no deadline of its own)
   */
  readonly timeout?: number
  /**
   * Absolute deadline, epoch milliseconds. With `timeout` too, the earlier one wins.
   * @default undefined
   */
  readonly deadline?: number
  /**
   * A parent signal: when it aborts, the scope aborts with the same reason. A signal that is
   * already aborted aborts the scope at once.
   * @default undefined
   */
  readonly signal?: AbortSignal
}

const SCOPE_OPTIONS = ['timeout', 'deadline', 'signal']

// One storage for the whole process, holding the scope only (never req/res), entered with run().
// Shared by every copy of the package, so an app's copy sees the scope an adapter's copy entered.
const storage = shared('tether.storage', () => new AsyncLocalStorage<Scope>())

// Tags a scope's signal with its scope, so that a scope's own signal passed back to us as a
// `signal` option is followed through a direct parent→child link rather than an abort listener.
// A symbol property costs a few ns; a WeakMap entry per signal cost ~140 ns on Node 24.
const kScopeOfSignal = Symbol.for('tether.scopeOfSignal')
type TaggedSignal = AbortSignal & { [kScopeOfSignal]?: Scope }

/**
 * An abort reason made only when someone looks at it. Requests end by the million with a
 * `CanceledError` nobody reads; building each one would cost more than the rest of the request.
 */
const kLazyReason = Symbol.for('tether.lazyReason')

class LazyReason {
  // A brand rather than instanceof: a reason made by another copy of the package is lazy too.
  readonly [kLazyReason] = true
  #value: unknown
  #made = false
  constructor(
    readonly make: (status?: number) => unknown,
    readonly isDeadline = false,
    /** For a deadline: the status of the request the scope belongs to, if it has one. */
    readonly status: number | undefined = undefined,
  ) {}
  get value(): unknown {
    if (!this.#made) {
      this.#value = this.status === undefined ? withoutStack(this.make) : withoutStack(() => this.make(this.status))
      this.#made = true
    }
    return this.#value
  }
}

const makeCanceled = () => new CanceledError()
const makeDeadlineExceeded = (status?: number) =>
  new DeadlineExceededError(undefined, status === undefined ? undefined : { statusCode: status })

/**
 * A `DeadlineExceededError` for work of `scope` (without a stack: these are made on hot paths),
 * whose `statusCode` is the `status` of the request the scope belongs to. Whichever timer notices
 * a missed deadline first (the request's, an outbound call's, a queue's), an error that escapes
 * the handler is then answered with the status tether's own answer would have had.
 *
 * @internal
 */
export function deadlineExceeded(scope: Scope | undefined, message: string, cause?: unknown): DeadlineExceededError {
  const statusCode = scope?.[kRequest]?.deadlineStatus
  // An absent cause stays absent (`'cause' in error` is false), as with the standard option.
  const options = cause === undefined ? { statusCode } : { cause, statusCode }
  return withoutStack(() => new DeadlineExceededError(message, options))
}

/**
 * Reads a reason that may still be lazy.
 *
 * @internal
 */
export function reasonValue(reason: unknown): unknown {
  return isLazy(reason) ? reason.value : reason
}

function isLazy(reason: unknown): reason is LazyReason {
  return typeof reason === 'object' && reason !== null && (reason as LazyReason)[kLazyReason] === true
}

/**
 * Whether an abort reason is a passed deadline, without building it.
 *
 * @internal
 */
export function isDeadlineReason(reason: unknown): boolean {
  if (isLazy(reason)) return reason.isDeadline
  return (
    typeof reason === 'object' && reason !== null && (reason as { code?: unknown }).code === 'TETHER_DEADLINE_EXCEEDED'
  )
}

/**
 * An abort reason for one scope (and the children it reaches), built the first time someone reads
 * it. For the reasons every request ends with ("response finished"): most are never read, so the
 * error is never built; one that is read is the scope's own, an ordinary extensible error. It is
 * never shared or frozen, because consumers decorate the reason they receive (undici's `fetch`
 * defines `stack` on it, and throws a TypeError on an object that is not extensible).
 *
 * @internal
 */
export function lazyReason(make: () => object): unknown {
  return new LazyReason(make)
}

/** @internal Symbol-keyed members used by the rest of the package (group, pool, request binding). */
export const kTrack = Symbol.for('tether.scope.track')
/** @internal */
export const kUntrack = Symbol.for('tether.scope.untrack')
/** @internal */
export const kTighten = Symbol.for('tether.scope.tighten')
/** @internal */
export const kAbort = Symbol.for('tether.scope.abort')
/** @internal */
export const kRequest = Symbol.for('tether.scope.request')
/** @internal */
export const kIsAborted = Symbol.for('tether.scope.aborted')
/** @internal */
export const kReason = Symbol.for('tether.scope.reason')
/** @internal */
export const kStartSite = Symbol.for('tether.scope.startSite')
/** @internal */
export const kOnAbort = Symbol.for('tether.scope.onAbort')
/**
 * @internal While set, an aborted scope keeps its tasks instead of making them linger: a task group
 * aborted by a failing task is still waiting for its tasks, and what they started is not late yet.
 * Clearing it on an aborted scope makes the tasks still pending linger then.
 */
export const kHoldTasks = Symbol.for('tether.scope.holdTasks')

/** @internal The method an {@link AbortSubscriber} is called through. */
export const kScopeAborted = Symbol.for('tether.scope.aborted.notify')

/** @internal Links of an {@link AbortSubscriber} in its scope's list. */
export const kSiblingPrev = Symbol.for('tether.scope.siblingPrev')
/** @internal */
export const kSiblingNext = Symbol.for('tether.scope.siblingNext')

/**
 * Told when a scope aborts: a child scope, a task group, a queued pool call. Subscribers sit in an
 * intrusive list in the scope (they carry the links), so subscribing allocates nothing, leaving is
 * O(1), and many queued pool calls of one request do not pile abort listeners on its signal.
 *
 * @internal
 */
export interface AbortSubscriber extends AbortOwner {
  [kSiblingPrev]: AbortSubscriber | undefined
  [kSiblingNext]: AbortSubscriber | undefined
}

/** What a scope notifies when it aborts: its subscribers, and its owner (see `kOnAbort`). @internal */
export interface AbortOwner {
  [kScopeAborted](reason: unknown): void
}

/** @internal */
export const kSubscribe = Symbol.for('tether.scope.subscribe')
/** @internal */
export const kUnsubscribe = Symbol.for('tether.scope.unsubscribe')

/**
 * The lifetime of one piece of work, usually a request: a deadline, an `AbortSignal` that aborts
 * when the deadline passes or the scope is cancelled, and the tasks registered with it.
 *
 * Scopes form a tree. A child's deadline is never later than its parent's; a parent's abort
 * reaches every child with the parent's reason; ending a child unlinks it from its parent, so
 * millions of short-lived children under one long-lived parent leave nothing behind.
 *
 * Create one with {@link createScope} or {@link Scope.child}; the adapters create one per request.
 */
export class Scope implements Timed, AbortSubscriber {
  #ownDeadline: number | undefined
  #parent: Scope | undefined
  #children: AbortSubscriber | undefined = undefined
  #controller: AbortController | undefined = undefined
  #aborted = false
  #reason: unknown = undefined;
  // Links in the parent's list of subscribers, while this scope is a child.
  [kSiblingPrev]: AbortSubscriber | undefined = undefined;
  [kSiblingNext]: AbortSubscriber | undefined = undefined;
  // Links in a shared deadline-timer list (see timers.ts) while a deadline of its own is armed.
  [kDue] = 0;
  [kPrev]: Timed | undefined = undefined;
  [kNext]: Timed | undefined = undefined;
  [kList]: TimerList | undefined = undefined
  #followed: AbortSignal | undefined = undefined
  #onFollowedAbort: (() => void) | undefined = undefined
  // When following another scope's signal besides the parent: this scope's entry in its list.
  #followLink: AbortSubscriber | undefined = undefined
  #tasks: TrackedTask | undefined = undefined
  #request: RequestInfo | undefined
  #onAbort: AbortOwner | undefined = undefined
  #holdTasks = false

  private constructor(parent: Scope | undefined, deadline: number | undefined, request: RequestInfo | undefined) {
    this.#parent = parent
    this.#ownDeadline = deadline
    this.#request = request
  }

  /** @internal Creates a scope; the public way in is {@link createScope}. */
  static create(
    parent: Scope | undefined,
    deadline: number | undefined,
    signal: AbortSignal | undefined,
    request?: RequestInfo,
    now?: number,
  ): Scope {
    if (parent !== undefined) {
      // A parent made by another copy of the package has its own #spawn: go through its public API.
      if (!(#spawn in parent)) return (parent as Scope).child({ deadline, signal })
      return parent.#spawn(deadline, signal)
    }
    const scope = new Scope(undefined, deadline, request)
    if (signal !== undefined) scope.#follow(signal)
    if (!scope.#aborted) scope.#arm(now)
    return scope
  }

  /**
   * The signal to hand to anything that can be cancelled (`fetch`, database drivers, child
   * processes). It aborts with `DeadlineExceededError` at the deadline, with `CanceledError` when
   * the scope is cancelled or its request ends, or with the parent's reason.
   *
   * Created on first access: a request nobody asks the signal of never allocates one.
   */
  get signal(): AbortSignal {
    let controller = this.#controller
    if (controller === undefined) {
      controller = this.#controller = new AbortController()
      ;(controller.signal as TaggedSignal)[kScopeOfSignal] = this
      if (this.#aborted) controller.abort(reasonValue(this.#reason))
    }
    return controller.signal
  }

  /**
   * The deadline in epoch milliseconds: the earliest of this scope's own and its ancestors'.
   * `undefined` when there is none.
   */
  get deadline(): number | undefined {
    const own = this.#ownDeadline
    const inherited = this.#parent?.deadline
    if (inherited === undefined) return own
    return own === undefined || inherited < own ? inherited : own
  }

  /**
   * Milliseconds left before the deadline: `Infinity` without one, `0` once the scope has been
   * aborted or the deadline has passed.
   */
  remaining(): number {
    if (this.#aborted) return 0
    const deadline = this.deadline
    if (deadline === undefined) return Number.POSITIVE_INFINITY
    const left = deadline - Date.now()
    return Math.max(left, 0)
  }

  /**
   * Aborts the scope and every child. The first cancellation wins: later calls, and the deadline,
   * change nothing. Tasks still pending become *lingering*.
   *
   * @param reason - the abort reason; a `CanceledError` when omitted
   */
  cancel(reason?: unknown): void {
    if (this.#aborted) return
    this.#abort(reason === undefined ? new LazyReason(makeCanceled) : reason)
  }

  /**
   * A child scope. Its deadline is the earlier of its own (`timeout`/`deadline`) and this
   * scope's; this scope aborting aborts it with the same reason; an extra `signal` aborts it too.
   * Cancel the child when its work is done (as with Go's `defer cancel()`): that unlinks it.
   *
   * @throws TypeError/RangeError for invalid options
   */
  child(options?: ScopeOptions): Scope {
    const { deadline, signal } = readScopeOptions('child()', options)
    return this.#spawn(deadline, signal)
  }

  /**
   * Runs `fn` with this scope as the current one ({@link currentScope}), across awaits, timers
   * and every async continuation `fn` starts.
   *
   * @returns what `fn` returns
   */
  run<T>(fn: () => T): T {
    return storage.run(this, fn)
  }

  /**
   * Registers a promise with this scope, so that if it is still pending when the scope ends it is
   * reported as lingering (and, later, as leaked), then returns a promise that settles the same
   * way. Await the returned promise, or let its rejection surface: it is the one that carries it.
   *
   * @example
   * ```ts
   * req.scope.track(audit.write(event)) // fire and forget, but accounted for
   * ```
   */
  track<T>(promise: PromiseLike<T>): Promise<T> {
    const task = this[kTrack]('track')
    return Promise.resolve(promise).then(
      (value) => {
        untrack(task)
        return value
      },
      (error: unknown) => {
        untrack(task)
        throw error
      },
    )
  }

  /** Disposes of the scope (`using scope = createScope(...)`): the same as `cancel()`. */
  [Symbol.dispose](): void {
    this.cancel()
  }

  /** @internal Whether the scope has been aborted, without creating its signal. */
  get [kIsAborted](): boolean {
    return this.#aborted
  }

  /** @internal The abort reason, possibly still lazy (read it with {@link reasonValue}). */
  get [kReason](): unknown {
    return this.#reason
  }

  /** How this scope's tasks are tracked: its request's policy, or the default. */
  get #policy(): TrackingPolicy {
    return this.#request?.policy ?? defaultPolicy
  }

  /** @internal The request this scope belongs to, if any. */
  get [kRequest](): RequestInfo | undefined {
    return this.#request
  }

  /**
   * @internal Sets the owner notified once when this scope aborts, after its signal and its
   * children (the request binding); notified at once if the scope has already aborted.
   */
  set [kOnAbort](owner: AbortOwner | undefined) {
    if (this.#aborted) owner?.[kScopeAborted](this.#reason)
    else this.#onAbort = owner
  }

  /** @internal See {@link kHoldTasks}. */
  set [kHoldTasks](hold: boolean) {
    this.#holdTasks = hold
    if (!hold && this.#aborted) this.#lingerTasks()
  }

  /** @internal Aborts with an exact reason (used for deadlines and shutdown). */
  [kAbort](reason: unknown): void {
    if (!this.#aborted) this.#abort(reason)
  }

  /**
   * @internal Registers a new task with this scope. If the scope has already ended, the task is
   * lingering from the start.
   */
  [kTrack](kind: TaskKind, startedAt = Date.now(), stack = this[kStartSite]()): TrackedTask {
    const task = new TrackedTask(kind, startedAt, stack)
    if (this.#aborted && !this.#holdTasks) {
      scopeEnded(task, this.#request, this.#policy, Date.now())
      return task
    }
    task.owner = this
    const head = this.#tasks
    if (head !== undefined) {
      head.prev = task
      task.next = head
    }
    this.#tasks = task
    return task
  }

  /**
   * @internal Notifies `subscriber` when this scope aborts.
   * @returns false, without subscribing, if the scope has already aborted
   */
  [kSubscribe](subscriber: AbortSubscriber): boolean {
    if (this.#aborted) return false
    const head = this.#children
    subscriber[kSiblingPrev] = undefined
    subscriber[kSiblingNext] = head
    if (head !== undefined) head[kSiblingPrev] = subscriber
    this.#children = subscriber
    return true
  }

  /** @internal Removes a subscriber; one that is not in the list is left alone. */
  [kUnsubscribe](subscriber: AbortSubscriber): void {
    const prev = subscriber[kSiblingPrev]
    const next = subscriber[kSiblingNext]
    if (prev !== undefined) prev[kSiblingNext] = next
    else if (this.#children === subscriber) this.#children = next
    else return
    if (next !== undefined) next[kSiblingPrev] = prev
    subscriber[kSiblingPrev] = subscriber[kSiblingNext] = undefined
  }

  /**
   * @internal The parent aborted. It has already dropped its link to this scope; #unlink still
   * runs in full, so the deadline inherited from the parent is kept (unsubscribing is a no-op).
   */
  [kScopeAborted](reason: unknown): void {
    this.#abort(reason)
  }

  /**
   * @internal Where the calling code started a task, when this scope's policy captures stacks.
   * Stack capture is opt-in: it is the one expensive thing tracking can do.
   */
  [kStartSite](): string | undefined {
    return this.#policy.captureStacks ? captureStack() : undefined
  }

  /** @internal Removes a settled task from this scope's list. */
  [kUntrack](task: TrackedTask): void {
    const { prev, next } = task
    if (prev !== undefined) prev.next = next
    else this.#tasks = next
    if (next !== undefined) next.prev = prev
    task.prev = task.next = task.owner = undefined
  }

  /** @internal Moves the deadline earlier (never later) and re-arms the timer. */
  [kTighten](deadline: number): void {
    if (this.#aborted) return
    const current = this.deadline
    if (current !== undefined && current <= deadline) return
    this.#ownDeadline = deadline
    cancelTimer(this)
    this.#arm()
  }

  #spawn(deadline: number | undefined, signal: AbortSignal | undefined): Scope {
    const child = new Scope(this, deadline, this.#request)
    if (this.#aborted) {
      child.#aborted = true
      child.#reason = this.#reason
      return child
    }
    this[kSubscribe](child)
    if (signal !== undefined) child.#follow(signal)
    if (!child.#aborted) child.#arm()
    return child
  }

  /** Follows an outside signal: a scope's own signal by link, any other by one listener. */
  #follow(signal: AbortSignal): void {
    if (signal.aborted) {
      this.#abort(signal.reason)
      return
    }
    const parentScope = (signal as TaggedSignal)[kScopeOfSignal]
    if (parentScope !== undefined && parentScope === this.#parent) return // linked already
    if (parentScope !== undefined) {
      // The signal's scope becomes a second parent. This scope's own links are taken by the
      // primary parent's list, so a small entry stands for it in the second one.
      const link: AbortSubscriber = {
        [kSiblingPrev]: undefined,
        [kSiblingNext]: undefined,
        [kScopeAborted]: (reason: unknown) => {
          this.#followLink = undefined
          this.#abort(reason)
        },
      }
      parentScope[kSubscribe](link)
      this.#followLink = link
      this.#followed = signal
      return
    }
    const onAbort = () => this.#abort(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    this.#followed = signal
    this.#onFollowedAbort = onAbort
  }

  /** Arms the deadline timer, unless an ancestor's timer already covers this deadline. */
  #arm(now = Date.now()): void {
    const own = this.#ownDeadline
    if (own === undefined) return
    const inherited = this.#parent?.deadline
    if (inherited !== undefined && inherited <= own) return
    if (own <= now) {
      if (deadlineChannel.hasSubscribers) deadlineChannel.publish(deadlineMessage(this, own))
      this.#abort(new LazyReason(makeDeadlineExceeded, true, this.#request?.deadlineStatus))
      return
    }
    startTimer(this, own, now)
  }

  /** @internal The deadline timer fired. */
  [kExpire](): void {
    // A request already answered is not a deadline miss: delivering it is the write bound's job.
    const request = this.#request
    const finished = request?.finishedReason?.(this)
    if (finished !== undefined) {
      this.#abort(finished)
      return
    }
    if (deadlineChannel.hasSubscribers) deadlineChannel.publish(deadlineMessage(this, this.#ownDeadline as number))
    this.#abort(new LazyReason(makeDeadlineExceeded, true, request?.deadlineStatus))
  }

  #abort(reason: unknown): void {
    if (this.#aborted) return
    this.#aborted = true
    this.#reason = reason
    if (this[kList] !== undefined) cancelTimer(this)
    this.#unlink()
    // Listeners on the signal run first: one of them may answer the request its own way.
    this.#controller?.abort(reasonValue(reason))
    let child = this.#children
    this.#children = undefined
    while (child !== undefined) {
      const next: AbortSubscriber | undefined = child[kSiblingNext]
      child[kSiblingPrev] = child[kSiblingNext] = undefined
      child[kScopeAborted](reason)
      child = next
    }
    if (!this.#holdTasks) this.#lingerTasks()
    const owner = this.#onAbort
    if (owner !== undefined) {
      this.#onAbort = undefined
      owner[kScopeAborted](reason)
    }
  }

  /** Leaves the parent's list and stops following a followed signal. */
  #unlink(): void {
    const parent = this.#parent
    if (parent !== undefined) {
      parent[kUnsubscribe](this)
      // Keep the deadline readable after the unlink: freeze the inherited one into our own.
      const inherited = parent.deadline
      if (inherited !== undefined && (this.#ownDeadline === undefined || inherited < this.#ownDeadline)) {
        this.#ownDeadline = inherited
      }
      this.#parent = undefined
    }
    const followed = this.#followed
    if (followed !== undefined) {
      this.#followed = undefined
      if (this.#onFollowedAbort !== undefined) {
        followed.removeEventListener('abort', this.#onFollowedAbort)
        this.#onFollowedAbort = undefined
      } else if (this.#followLink !== undefined) {
        ;(followed as TaggedSignal)[kScopeOfSignal]?.[kUnsubscribe](this.#followLink)
        this.#followLink = undefined
      }
    }
  }

  #lingerTasks(): void {
    let task = this.#tasks
    if (task === undefined) return
    this.#tasks = undefined
    const now = Date.now()
    const policy = this.#policy
    while (task !== undefined) {
      const next: TrackedTask | undefined = task.next
      task.prev = task.next = task.owner = undefined
      scopeEnded(task, this.#request, policy, now)
      task = next
    }
  }
}

function captureStack(): string | undefined {
  const holder: { stack?: string } = {}
  Error.captureStackTrace(holder, captureStack)
  // Drop the "Error" header line and tether's own frames; keep where the user started the task.
  return holder.stack
    ?.split('\n')
    .slice(1)
    .filter((line) => !/[\\/]@tether[\\/]core[\\/]|[\\/]packages[\\/]core[\\/]/.test(line))
    .map((line) => line.trim())
    .join('\n')
}

/**
 * Marks a tracked task as settled: it leaves its scope's list, or the lingering list.
 *
 * @internal
 */
export function untrack(task: TrackedTask): void {
  const owner = task.owner as Scope | undefined
  if (owner !== undefined) owner[kUntrack](task)
  taskSettled(task)
}

function readScopeOptions(
  where: string,
  options: ScopeOptions | undefined,
): { deadline: number | undefined; signal: AbortSignal | undefined } {
  if (options === undefined) return { deadline: undefined, signal: undefined }
  checkOptionsObject(where, options, SCOPE_OPTIONS)
  let deadline: number | undefined
  if (options.timeout !== undefined) deadline = Date.now() + checkDuration('timeout', options.timeout)
  if (options.deadline !== undefined) {
    const absolute = checkTimestamp('deadline', options.deadline)
    if (deadline === undefined || absolute < deadline) deadline = absolute
  }
  const signal = options.signal === undefined ? undefined : checkSignal('signal', options.signal)
  return { deadline, signal }
}

/**
 * Creates a scope: a deadline, a lazily created `AbortSignal`, and a place to register tasks.
 *
 * @param options - `timeout` (ms), `deadline` (epoch ms), `signal` (a parent signal)
 * @returns a new root scope, or a child of the scope whose signal was passed as `signal`
 * @throws TypeError/RangeError naming the option and the value received, for invalid options
 *
 * @example
 * ```ts
 * const scope = createScope({ timeout: 2_000 })
 * try {
 *   await scope.run(() => all([(signal) => fetch(a, { signal }), (signal) => fetch(b, { signal })]))
 * } finally {
 *   scope.cancel()
 * }
 * ```
 */
export function createScope(options?: ScopeOptions): Scope {
  const { deadline, signal } = readScopeOptions('createScope()', options)
  const parent = signal === undefined ? undefined : (signal as TaggedSignal)[kScopeOfSignal]
  if (parent !== undefined) return Scope.create(parent, deadline, undefined)
  return Scope.create(undefined, deadline, signal)
}

/**
 * The scope of the code that is running, set by {@link Scope.run} (the adapters run every
 * request's middleware, hooks and handler inside its scope); `undefined` outside any scope.
 */
export function currentScope(): Scope | undefined {
  return storage.getStore()
}

/**
 * Calls `fn(...args)` with `scope` current: {@link Scope.run} without a closure, for the paths that
 * start tasks by the million.
 *
 * @internal
 */
export function runInScope<A extends unknown[], R>(scope: Scope, fn: (...args: A) => R, ...args: A): R {
  return storage.run(scope, fn, ...args)
}

/**
 * The scope of the request `scope` belongs to: the scope an adapter attached (a child scope, a
 * group's scope or a scope following a request's signal belong to it too); `undefined` for scopes
 * outside any request.
 *
 * @internal
 */
export function requestScopeOf(scope: Scope | undefined): Scope | undefined {
  const request = scope?.[kRequest]
  if (request === undefined) return undefined
  // While the request's own scope is being created (a budget already spent aborts it at once) the
  // request does not hold it yet; it is then the only scope of that request.
  return (request as { scope?: Scope }).scope ?? scope
}

function deadlineMessage(scope: Scope, deadline: number): DeadlineMessage {
  return { scope, deadline, requestScope: requestScopeOf(scope) }
}

/**
 * The scope behind a signal, when the signal is a scope's own. Lets helpers link to the scope
 * directly instead of adding an abort listener.
 *
 * @internal
 */
export function scopeForSignal(signal: AbortSignal): Scope | undefined {
  return (signal as TaggedSignal)[kScopeOfSignal]
}
