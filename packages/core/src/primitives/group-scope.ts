import { currentScope } from './create-scope.js'
import { routineCancel } from './errors.js'
import type { TrackedTask } from './registry.js'
import { Scope } from './scope.js'
import {
  type AbortOwner,
  kAbort,
  kHoldTasks,
  kIsAborted,
  kOnAbort,
  kReason,
  kScopeAborted,
  kStartSite,
  kTrack,
  scopeForSignal,
  untrack,
} from './scope-protocol.js'
import type { TaskGroupOptions } from './task.js'
import { checkCount, checkOptionsObject, checkSignal, renamedOption } from './validate.js'

const GROUP_OPTIONS = ['signal', 'concurrency', 'limit']
// What a finished group's signal aborts with.
const groupFinished = routineCancel('task group finished')

/** The options of a task group, read and checked. @internal */
export interface GroupOptions {
  readonly limit: number
  readonly signal: AbortSignal | undefined
}

/**
 * Reads the options of {@link TaskGroup}, {@link all} and {@link allSettled}.
 *
 * @throws TypeError/RangeError naming the option, for invalid options
 * @internal
 */
export function readGroupOptions(where: string, options: TaskGroupOptions | undefined): GroupOptions {
  if (options === undefined) return { limit: Number.POSITIVE_INFINITY, signal: undefined }
  checkOptionsObject(where, options, GROUP_OPTIONS)
  const concurrency = renamedOption<number>(options, 'concurrency', 'limit')
  const name = options.concurrency === undefined ? 'limit' : 'concurrency'
  return {
    limit: concurrency === undefined ? Number.POSITIVE_INFINITY : checkCount(name, concurrency),
    signal: options.signal === undefined ? undefined : checkSignal('signal', options.signal),
  }
}

/**
 * The lifetime every task group shares, whichever way it runs its tasks ({@link TaskGroup}'s queue,
 * or the all-at-once fan-out of `all()`): its own scope, a child of the parent scope, current while
 * its tasks run; what happens when the parent ends first (the tasks still running linger, as one
 * record with the parent); and its end, which aborts its signal.
 *
 * Tracking costs nothing until it matters: the group learns from its scope that the parent ended,
 * and only then, if tasks are still pending, registers one record for them with the parent (which
 * has ended, so it is lingering at once). A sibling's failure aborting the group itself does not
 * count: the tasks' request goes on.
 *
 * @internal
 */
export abstract class GroupScope implements AbortOwner {
  /** @internal The group's scope; its signal is the group's signal. */
  protected readonly scope: Scope
  /** @internal How many started tasks have not settled. */
  protected active = 0
  /** @internal Whether the group has been aborted (a failure, the parent, or its end). */
  protected aborted = false
  /** @internal What it was aborted with; the first reason wins. */
  protected reason: unknown = undefined
  readonly #tracker: Scope | undefined
  #startedAt = 0
  #startSite: string | undefined = undefined
  #tracked: TrackedTask | undefined = undefined
  #ended = false

  /** @param signal - the parent signal; without one, the parent is {@link currentScope} */
  constructor(signal: AbortSignal | undefined) {
    const parent = signal === undefined ? currentScope() : scopeForSignal(signal)
    this.#tracker = parent
    const scope =
      parent !== undefined ? Scope.create(parent, undefined, undefined) : Scope.create(undefined, undefined, signal)
    this.scope = scope
    if (scope[kIsAborted]) {
      // The parent has ended already: born aborted, with nothing to hold. (Not through the
      // subclass's abort(): its own fields are not initialised while this constructor runs.)
      this.aborted = true
      this.reason = scope[kReason]
      return
    }
    // What the tasks start is the group's until the group is done, even once a failure aborted it.
    scope[kHoldTasks] = true
    scope[kOnAbort] = this
  }

  /**
   * @internal The group's scope aborted. From the group itself (a failure, or its end) this
   * changes nothing; otherwise the parent ended (or the parent signal aborted): the tasks still
   * running are lingering, and so is what they started.
   */
  [kScopeAborted](reason: unknown): void {
    if (this.aborted) return
    if (this.active > 0 && this.#tracker !== undefined) {
      this.#tracked = this.#tracker[kTrack]('group', this.#startedAt, this.#startSite)
      this.countPending()
      this.syncTracked()
    }
    this.scope[kHoldTasks] = false
    this.abort(reason)
  }

  /** @internal Aborts the group's signal. The first reason wins. */
  protected abort(reason: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    this.scope[kAbort](reason)
  }

  /**
   * @internal Once the group lingers: makes {@link active} the number of tasks still pending, for
   * an engine that does not count them as they settle.
   */
  protected countPending(): void {}

  /**
   * @internal Every task has settled: the group is done. Its signal aborts (if it was aborted
   * already, it keeps its reason), so whatever still holds it is told to stop, and what the tasks
   * started and left pending is lingering from now on.
   */
  protected end(): void {
    if (this.#ended) return
    this.#ended = true
    if (!this.aborted) {
      this.aborted = true
      this.reason = groupFinished()
      this.scope[kAbort](this.reason)
    }
    this.scope[kHoldTasks] = false
  }

  /** @internal Remembers when (and, if stacks are captured, where) the group's tasks started. */
  protected noteStart(): void {
    const tracker = this.#tracker
    if (tracker === undefined) return
    this.#startedAt = Date.now()
    this.#startSite = tracker[kStartSite]()
  }

  /** @internal Keeps the lingering record's count in step with the tasks running; drops it at zero. */
  protected syncTracked(): void {
    const tracked = this.#tracked
    if (tracked === undefined) return
    if (this.active > 0) tracked.count = this.active
    else {
      this.#tracked = undefined
      untrack(tracked)
    }
  }
}
