import { currentScope, runInScope } from './create-scope.js'
import { CanceledError } from './errors.js'
import { lazyReason, reasonValue } from './lazy-reason.js'
import type { TrackedTask } from './registry.js'
import { Scope } from './scope.js'
import {
  type AbortOwner,
  kAbort,
  kHoldTasks,
  kOnAbort,
  kScopeAborted,
  kStartSite,
  kTrack,
  scopeForSignal,
  untrack,
} from './scope-protocol.js'
import { Collect, checkTask, isThenable, type Task, type TaskGroupOptions } from './task.js'
import { checkCount, checkOptionsObject, checkSignal, received, renamedOption } from './validate.js'

const GROUP_OPTIONS = ['signal', 'concurrency', 'limit']

// The reason a group's signal aborts with once the group is done, built only if someone reads it:
// groups finish by the million and almost nobody does. Never shared or frozen (see lazyReason).
const groupFinished = () => new CanceledError('task group finished')

interface Queued {
  readonly task: Task<unknown>
  readonly index: number
}

/**
 * Go's `errgroup.WithContext` for promises: start tasks with `go`, then `wait` for all of them.
 *
 * Guarantees:
 * - the first failure (a rejection or a synchronous throw) aborts the group's signal with that
 *   error, so the siblings are told to stop;
 * - `wait()` settles only after every started task has settled, and rejects with the reason the
 *   group was aborted with: the first failure, or the parent's reason;
 * - a queued task never starts once the group is aborted;
 * - at most `limit` tasks run at once;
 * - each task runs with the group's own scope current ({@link currentScope}): tether's helpers a
 *   task calls without a signal of their own (`scopedFetch`, a pool, a nested `all`) belong to the
 *   group, not to the request, and stop when a sibling fails (structured concurrency, as Trio's
 *   nurseries and effection do);
 * - when `wait()` settles the group is done: its signal aborts, so whatever still holds it (work a
 *   task started and left behind, a signal derived from it, code that polls `throwIfAborted()`)
 *   is told to stop, as Go cancels the group's context when `Wait` returns. A group is used once.
 *
 * Without a `signal` option the group is a child of {@link currentScope}: inside a request, a
 * group needs no wiring to stop when the request ends.
 *
 * @example
 * ```ts
 * const group = new TaskGroup({ limit: 4 })
 * for (const id of ids) group.go((signal) => loadUser(id, { signal }))
 * await group.wait() // rejects with the first failure, after the others have stopped
 * ```
 */
export class TaskGroup implements AbortOwner {
  /** The most tasks running at once. */
  readonly limit: number
  // The group's own scope: a child of the parent scope (or a root following the parent signal).
  // Its signal is the group's signal, and tasks run with it current.
  readonly #scope: Scope
  // Tracking costs nothing until it matters: the group learns from its scope that the parent
  // ended, and only then, if tasks are still pending, does it register one record for them with
  // the parent (which has ended, so it is lingering at once). A sibling's failure aborting the
  // group itself does not count: the tasks' request goes on.
  readonly #tracker: Scope | undefined
  #startedAt = 0
  #startSite: string | undefined = undefined
  #tracked: TrackedTask | undefined = undefined
  #mode = Collect.None
  #results: unknown[] | undefined = undefined
  // all()/allSettled() starting every task at once: the tasks' results, read only to count the
  // pending ones once the group lingers (V8's Promise.all does the per-task bookkeeping otherwise).
  #started: unknown[] | undefined = undefined
  #active = 0
  #queue: Queued[] | undefined = undefined
  #queueHead = 0
  #aborted = false
  #ended = false
  #reason: unknown = undefined
  #onIdle: ((aborted: boolean, reason: unknown) => void) | undefined = undefined
  #waiter: Promise<void> | undefined = undefined

  /**
   * @param options - `signal` (parent signal), `limit` (max tasks running at once)
   * @throws TypeError/RangeError naming the option, for invalid options
   */
  constructor(options?: TaskGroupOptions) {
    checkOptionsObject('TaskGroup', options, GROUP_OPTIONS)
    const concurrency = renamedOption<number>(options, 'concurrency', 'limit')
    const name = options?.concurrency === undefined ? 'limit' : 'concurrency'
    this.limit = concurrency === undefined ? Number.POSITIVE_INFINITY : checkCount(name, concurrency)
    const signal = options?.signal === undefined ? undefined : checkSignal('signal', options.signal)
    const parent = signal === undefined ? currentScope() : scopeForSignal(signal)
    this.#tracker = parent
    const scope =
      parent !== undefined ? Scope.create(parent, undefined, undefined) : Scope.create(undefined, undefined, signal)
    // What the tasks start is the group's until the group is done, even once a failure aborted it.
    scope[kHoldTasks] = true
    this.#scope = scope
    scope[kOnAbort] = this // told at once if the parent has aborted already
  }

  /**
   * The group's signal: aborts on the first failure, when the parent aborts, or when `wait()`
   * settles.
   */
  get signal(): AbortSignal {
    return this.#scope.signal
  }

  /**
   * Starts `task`, or queues it (FIFO) while `limit` tasks are running. Once the group has been
   * aborted, the task is not started.
   */
  go(task: Task<unknown>): void {
    checkTask(task)
    if (this.#aborted) return
    if (this.#active < this.limit) this.#start(task, -1)
    else this.#enqueue(task, -1)
  }

  /**
   * Starts `task` only if a slot is free right now.
   *
   * @returns `true` if the task was started; `false` at the limit or once the group was aborted
   */
  tryGo(task: Task<unknown>): boolean {
    checkTask(task)
    if (this.#aborted || this.#active >= this.limit) return false
    this.#start(task, -1)
    return true
  }

  /**
   * Waits for every started task to settle.
   *
   * @returns a promise that resolves when all tasks succeeded, or rejects with the reason the
   *   group was aborted with (the first failure, or the parent's reason), in both cases only
   *   after every started task has settled
   */
  wait(): Promise<void> {
    if (this.#waiter === undefined) {
      this.#waiter = new Promise<void>((resolve, reject) => {
        this.#onIdle = (aborted, reason) => (aborted ? reject(reasonValue(reason)) : resolve())
      })
      this.#settleIfIdle()
    }
    return this.#waiter
  }

  /** @internal Runs the tasks of `all`/`allSettled`, collecting results by index. */
  static run(
    tasks: readonly Task<unknown>[],
    options: TaskGroupOptions | undefined,
    mode: Collect,
  ): Promise<unknown[]> {
    if (!Array.isArray(tasks)) throw new TypeError(`expected an array of task functions, received ${received(tasks)}`)
    for (let index = 0; index < tasks.length; index++) checkTask(tasks[index])
    return new TaskGroup(options).#runAll(tasks, mode)
  }

  /**
   * @internal The group's scope aborted. From the group itself (a failure, or its end) this
   * changes nothing; otherwise the parent ended (or the parent signal aborted): the tasks still
   * running are lingering, and so is what they started.
   */
  [kScopeAborted](reason: unknown): void {
    if (this.#aborted) return
    if (this.#active > 0 && this.#tracker !== undefined) {
      this.#tracked = this.#tracker[kTrack]('group', this.#startedAt, this.#startSite)
      this.#countPending()
      this.#syncTracked()
    }
    this.#scope[kHoldTasks] = false
    this.#abort(reason)
  }

  /**
   * Every task has settled: the group is done. Its signal aborts (if it was aborted already, it
   * keeps its reason), so whatever still holds it is told to stop, and what the tasks started and
   * left pending is lingering from now on.
   */
  #end(): void {
    if (this.#ended) return
    this.#ended = true
    if (!this.#aborted) {
      this.#aborted = true
      this.#reason = lazyReason(groupFinished)
      this.#scope[kAbort](this.#reason)
    }
    this.#scope[kHoldTasks] = false
  }

  /** Aborts the group's signal; queued tasks never start. The first reason wins. */
  #abort(reason: unknown): void {
    if (this.#aborted) return
    this.#aborted = true
    this.#reason = reason
    this.#queue = undefined
    this.#queueHead = 0
    this.#scope[kAbort](reason)
    this.#settleIfIdle()
  }

  #runAll(tasks: readonly Task<unknown>[], mode: Collect): Promise<unknown[]> {
    this.#mode = mode
    if (tasks.length <= this.limit && !this.#aborted) return this.#runAllAtOnce(tasks, mode)
    const results: unknown[] = new Array(tasks.length)
    this.#results = results
    for (let index = 0; index < tasks.length && !this.#aborted; index++) {
      const task = tasks[index] as Task<unknown>
      if (this.#active < this.limit) this.#start(task, index)
      else this.#enqueue(task, index)
    }
    // Listening for "idle" only now: a task that finishes synchronously while the loop is still
    // starting and queueing must not make the group look finished.
    const promise = new Promise<unknown[]>((resolve, reject) => {
      this.#onIdle = (aborted, reason) => {
        if (!aborted) resolve(results)
        else if (mode !== Collect.Outcomes) reject(reasonValue(reason))
        else {
          // allSettled: tasks that never started report the group's abort reason.
          const value = reasonValue(reason)
          for (let index = 0; index < results.length; index++) {
            if (results[index] === undefined) results[index] = { status: 'rejected', reason: value }
          }
          resolve(results)
        }
      }
    })
    this.#settleIfIdle()
    return promise
  }

  /**
   * The common case of all()/allSettled(): every task starts at once. V8's own Promise.all and
   * Promise.allSettled do the per-task bookkeeping (about as fast as a bare Promise.all); the group
   * adds what they lack: the first failure aborts the siblings, and a rejection waits for every
   * started task to settle.
   */
  #runAllAtOnce(tasks: readonly Task<unknown>[], mode: Collect): Promise<unknown[]> {
    this.#noteStart()
    this.#active = tasks.length
    const started: unknown[] = new Array(tasks.length)
    this.#started = started
    // One entry into the group's scope for all of them: each task's continuations keep it.
    const count = runInScope(this.#scope, TaskGroup.#startAll, this, tasks, started, mode)
    if (mode === Collect.Outcomes) return Promise.allSettled(started).then((outcomes) => this.#done(outcomes))
    if (count < tasks.length) {
      // A synchronous throw: the tasks already started are told to stop, the rest never start.
      started.length = count
      this.#active = count
      return this.#afterFailure(started)
    }
    if (this.#aborted) return this.#afterFailure(started)
    return Promise.all(started).then(
      (values) => this.#done(values),
      (error: unknown) => {
        this.#abort(error)
        return this.#afterFailure(started)
      },
    )
  }

  /** Waits for every started task to settle, then rejects with the group's reason. */
  #afterFailure(started: unknown[]): Promise<never> {
    return Promise.allSettled(started).then(() => {
      this.#release()
      this.#end()
      throw reasonValue(this.#reason)
    })
  }

  /** All started tasks settled: end the group, then report. */
  #done(results: unknown[]): unknown[] {
    this.#release()
    const aborted = this.#aborted
    const reason = this.#reason
    this.#end()
    if (aborted && this.#mode !== Collect.Outcomes) throw reasonValue(reason)
    return results
  }

  #release(): void {
    this.#active = 0
    this.#started = undefined
    this.#syncTracked()
  }

  /**
   * all() started its tasks at once and left the counting to Promise.all: once the group lingers,
   * count the tasks still pending one by one, so that its record says how many there are.
   */
  #countPending(): void {
    const started = this.#started
    if (started === undefined) return
    let pending = 0
    const settled = () => {
      if (this.#started !== started) return // released already
      this.#active = --pending
      this.#syncTracked()
    }
    for (const result of started) {
      if (!isThenable(result)) continue
      pending++
      result.then(settled, settled)
    }
    this.#active = pending
  }

  /** Keeps the lingering record's count in step with the tasks still running; drops it at zero. */
  #syncTracked(): void {
    const tracked = this.#tracked
    if (tracked === undefined) return
    if (this.#active > 0) tracked.count = this.#active
    else {
      this.#tracked = undefined
      untrack(tracked)
    }
  }

  #enqueue(task: Task<unknown>, index: number): void {
    if (this.#queue === undefined) this.#queue = []
    this.#queue.push({ task, index })
  }

  #start(task: Task<unknown>, index: number): void {
    if (this.#active++ === 0) this.#noteStart()
    this.#syncTracked()
    runInScope(this.#scope, TaskGroup.#runTask, this, task, index)
  }

  /** Remembers when (and, if stacks are captured, where) the group's current tasks started. */
  #noteStart(): void {
    const tracker = this.#tracker
    if (tracker === undefined) return
    this.#startedAt = Date.now()
    this.#startSite = tracker[kStartSite]()
  }

  /**
   * Starts every task of all()/allSettled(); called with the group's scope current.
   *
   * @returns how many tasks were started before one threw synchronously (all of them otherwise;
   *   allSettled keeps going, a throw being one task's outcome)
   */
  static #startAll(group: TaskGroup, tasks: readonly Task<unknown>[], started: unknown[], mode: Collect): number {
    const signal = group.signal
    if (mode === Collect.Outcomes) {
      for (let index = 0; index < tasks.length; index++) {
        try {
          started[index] = (tasks[index] as Task<unknown>)(signal)
        } catch (error) {
          started[index] = Promise.reject(error)
        }
      }
      return tasks.length
    }
    let count = 0
    try {
      for (; count < tasks.length; count++) started[count] = (tasks[count] as Task<unknown>)(signal)
    } catch (error) {
      group.#abort(error)
    }
    return count
  }

  /** Runs one task of go()/tryGo() or a queued one; called with the group's scope current. */
  static #runTask(group: TaskGroup, task: Task<unknown>, index: number): void {
    let result: unknown
    try {
      result = task(group.signal)
    } catch (error) {
      group.#finish(index, false, error)
      return
    }
    if (!isThenable(result)) {
      group.#finish(index, true, result)
      return
    }
    result.then(
      (value) => group.#finish(index, true, value),
      (error: unknown) => group.#finish(index, false, error),
    )
  }

  #finish(index: number, ok: boolean, value: unknown): void {
    this.#active--
    this.#syncTracked()
    const results = this.#results
    if (this.#mode === Collect.Outcomes) {
      ;(results as unknown[])[index] = ok ? { status: 'fulfilled', value } : { status: 'rejected', reason: value }
    } else if (ok) {
      if (results !== undefined) results[index] = value
    } else {
      this.#abort(value) // the first failure, or abort, wins: later ones change nothing
    }
    this.#next()
  }

  #next(): void {
    // Starting a task can finish it synchronously, which calls #next again from inside this loop:
    // the nested call may drain or drop the queue, so the queue and its head are read afresh on
    // every turn rather than kept in locals.
    while (this.#active < this.limit && !this.#aborted) {
      const queue = this.#queue
      if (queue === undefined || this.#queueHead >= queue.length) break
      const { task, index } = queue[this.#queueHead] as Queued
      queue[this.#queueHead++] = undefined as unknown as Queued
      this.#start(task, index)
    }
    if (this.#queue !== undefined && this.#queueHead >= this.#queue.length) {
      this.#queue = undefined
      this.#queueHead = 0
    }
    this.#settleIfIdle()
  }

  #settleIfIdle(): void {
    const onIdle = this.#onIdle
    if (onIdle === undefined || this.#active > 0) return
    if (this.#queue !== undefined && this.#queueHead < this.#queue.length) return
    this.#onIdle = undefined
    const aborted = this.#aborted
    const reason = this.#reason
    this.#end()
    onIdle(aborted, reason)
  }
}
