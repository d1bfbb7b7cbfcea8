import { readScopeOptions, runInScope, type ScopeOptions } from './create-scope.js'
import { deadlineChannel } from './diagnostics.js'
import { LazyReason, makeCanceled, makeDeadlineExceeded, reasonValue } from './lazy-reason.js'
import { defaultPolicy, type RequestInfo, scopeEnded, type TaskKind, TrackedTask } from './registry.js'
import {
  type AbortOwner,
  type AbortSubscriber,
  deadlineMessage,
  kAbort,
  kHoldTasks,
  kIsAborted,
  kOnAbort,
  kReason,
  kRequest,
  kScopeAborted,
  kScopeOfSignal,
  kSiblingNext,
  kSiblingPrev,
  kStartSite,
  kSubscribe,
  kTighten,
  kTrack,
  kUnsubscribe,
  kUntrack,
  type TaggedSignal,
  untrack,
} from './scope-protocol.js'
import { captureStack } from './start-site.js'
import { cancelTimer, kDue, kExpire, kList, kNext, kPrev, startTimer, type Timed, type TimerList } from './timers.js'

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
      return parent.#spawn(deadline, signal, now)
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
    const { deadline, signal, now } = readScopeOptions('child()', options)
    return this.#spawn(deadline, signal, now)
  }

  /**
   * Runs `fn` with this scope as the current one ({@link currentScope}), across awaits, timers
   * and every async continuation `fn` starts.
   *
   * @returns what `fn` returns
   */
  run<T>(fn: () => T): T {
    return runInScope(this, fn)
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
      scopeEnded(task, this.#request, this.#request?.policy ?? defaultPolicy, Date.now())
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
    return (this.#request?.policy ?? defaultPolicy).captureStacks ? captureStack() : undefined
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

  #spawn(deadline: number | undefined, signal: AbortSignal | undefined, now?: number): Scope {
    const child = new Scope(this, deadline, this.#request)
    if (this.#aborted) {
      child.#aborted = true
      child.#reason = this.#reason
      return child
    }
    this[kSubscribe](child)
    if (signal !== undefined) child.#follow(signal)
    if (!child.#aborted) child.#arm(now)
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
  #arm(at?: number): void {
    const own = this.#ownDeadline
    if (own === undefined) return
    const inherited = this.#parent?.deadline
    if (inherited !== undefined && inherited <= own) return
    // The clock is read only for a deadline of its own: a group's scope (one per fan-out) has none.
    const now = at ?? Date.now()
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
    const policy = this.#request?.policy ?? defaultPolicy
    while (task !== undefined) {
      const next: TrackedTask | undefined = task.next
      task.prev = task.next = task.owner = undefined
      scopeEnded(task, this.#request, policy, now)
      task = next
    }
  }
}
