import type { TrackedTask } from './registry.js'
import { currentScope, kIsAborted, kOnAbort, kTrack, reasonValue, Scope, scopeForSignal, untrack } from './scope.js'
import { checkCount, checkOptionsObject, checkSignal, received } from './validate.js'

/**
 * A unit of work started by a group or a pool: it receives the group's signal and should stop
 * when it aborts. A synchronous throw counts as a failure, like a rejection.
 */
export type Task<T> = (signal: AbortSignal) => T | PromiseLike<T>

/** Options of {@link TaskGroup}, {@link all} and {@link allSettled}. All optional. */
export interface TaskGroupOptions {
  /**
   * The parent signal. When it aborts, the group aborts with the same reason, queued tasks are
   * dropped and `wait()` rejects with that reason.
   * @default the signal of {@link currentScope}, if there is one
   */
  readonly signal?: AbortSignal
  /**
   * The most tasks running at once; further tasks wait in a FIFO queue.
   * @default Infinity
   */
  readonly limit?: number
}

/** The outcome of one task, as reported by {@link allSettled}. */
export type Settled<T> = { status: 'fulfilled'; value: T } | { status: 'rejected'; reason: unknown }

type Results<T extends readonly Task<unknown>[]> = { -readonly [K in keyof T]: Awaited<ReturnType<T[K]>> }
type SettledResults<T extends readonly Task<unknown>[]> = { -readonly [K in keyof T]: Settled<Awaited<ReturnType<T[K]>>> }

/** @internal */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  )
}

// What the group does with each task's outcome: nothing (TaskGroup), collect values (all), or
// collect outcomes and let failures stand alone (allSettled).
const enum Collect {
  None = 0,
  Values = 1,
  Outcomes = 2,
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
 * - when `wait()` settles, the group's signal is aborted (as Go cancels the group's context when
 *   `Wait` returns), so nothing a task left behind can go on unchecked.
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
export class TaskGroup {
  /** The most tasks running at once. */
  readonly limit: number
  readonly #scope: Scope
  // Tasks are registered with the scope the group lives in (the request), not the group's own
  // scope: a sibling's failure aborting the group must not mark running siblings as lingering.
  readonly #tracker: Scope | undefined
  #results: unknown[] | undefined = undefined
  #active = 0
  #queue: Array<() => void> | undefined = undefined
  #queueHead = 0
  #failed = false
  #reason: unknown = undefined
  #done = false
  #waiter: { promise: Promise<void>; resolve: () => void; reject: (reason: unknown) => void } | undefined = undefined

  /**
   * @param options - `signal` (parent signal), `limit` (max tasks running at once)
   * @throws TypeError/RangeError naming the option, for invalid options
   */
  constructor(options?: TaskGroupOptions) {
    this.limit = readLimit(options)
    const signal = options?.signal === undefined ? undefined : checkSignal('signal', options.signal)
    const parent = signal === undefined ? currentScope() : scopeForSignal(signal)
    this.#tracker = parent
    this.#scope = parent !== undefined ? parent.child() : Scope.create(undefined, undefined, signal)
    this.#scope[kOnAbort] = (_scope, reason) => this.#onAbort(reason)
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
    if (this.#stopped()) return
    if (this.#active < this.limit) this.#start(task, -1)
    else (this.#queue ??= []).push(() => this.#start(task, -1))
  }

  /**
   * Starts `task` only if a slot is free right now.
   *
   * @returns `true` if the task was started; `false` at the limit or once the group was aborted
   */
  tryGo(task: Task<unknown>): boolean {
    checkTask(task)
    if (this.#stopped() || this.#active >= this.limit) return false
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
    let waiter = this.#waiter
    if (waiter === undefined) {
      let resolve!: () => void
      let reject!: (reason: unknown) => void
      const promise = new Promise<void>((res, rej) => {
        resolve = res
        reject = rej
      })
      waiter = this.#waiter = { promise, resolve, reject }
      this.#settleIfIdle()
    }
    return waiter.promise
  }

  /** @internal Runs the tasks of `all`/`allSettled`, collecting results by index. */
  static run(tasks: readonly Task<unknown>[], options: TaskGroupOptions | undefined, collect: Collect): Promise<unknown[]> {
    if (!Array.isArray(tasks)) throw new TypeError(`expected an array of task functions, received ${received(tasks)}`)
    for (const task of tasks) checkTask(task)
    return new TaskGroup(options).#runAll(tasks, collect)
  }

  #runAll(tasks: readonly Task<unknown>[], mode: Collect): Promise<unknown[]> {
    const results = (this.#results = new Array(tasks.length))
    for (let index = 0; index < tasks.length; index++) {
      const task = tasks[index] as Task<unknown>
      if (this.#stopped()) break
      if (this.#active < this.limit) this.#startCollecting(task, index, mode)
      else (this.#queue ??= []).push(() => this.#startCollecting(task, index, mode))
    }
    return this.wait().then(
      () => results,
      (reason: unknown) => {
        if (mode !== Collect.Outcomes) throw reason
        // allSettled: tasks that never started report the group's abort reason.
        for (let index = 0; index < results.length; index++) {
          if (results[index] === undefined) results[index] = { status: 'rejected', reason }
        }
        return results
      },
    )
  }

  /** Whether new tasks must not start: a task failed, or the group was aborted. */
  #stopped(): boolean {
    return this.#failed || this.#scope[kIsAborted]
  }

  #start(task: Task<unknown>, index: number): void {
    this.#startCollecting(task, index, Collect.None)
  }

  #startCollecting(task: Task<unknown>, index: number, mode: Collect): void {
    this.#active++
    let result: unknown
    try {
      result = task(this.#scope.signal)
    } catch (error) {
      this.#finish(undefined, index, mode, false, error)
      return
    }
    if (!isThenable(result)) {
      this.#finish(undefined, index, mode, true, result)
      return
    }
    const tracked = this.#tracker?.[kTrack]('group')
    result.then(
      (value) => this.#finish(tracked, index, mode, true, value),
      (error: unknown) => this.#finish(tracked, index, mode, false, error),
    )
  }

  #finish(tracked: TrackedTask | undefined, index: number, mode: Collect, ok: boolean, value: unknown): void {
    if (tracked !== undefined) untrack(tracked)
    this.#active--
    const results = this.#results
    if (mode === Collect.Outcomes && results !== undefined) {
      results[index] = ok ? { status: 'fulfilled', value } : { status: 'rejected', reason: value }
    } else if (ok) {
      if (mode === Collect.Values && results !== undefined) results[index] = value
    } else if (!this.#failed) {
      this.#failed = true
      if (this.#reason === undefined) this.#reason = value
      this.#scope.cancel(value)
    }
    this.#next()
  }

  #next(): void {
    const queue = this.#queue
    if (queue !== undefined && this.#queueHead < queue.length && !this.#stopped()) {
      while (this.#active < this.limit && this.#queueHead < queue.length) {
        const start = queue[this.#queueHead] as () => void
        queue[this.#queueHead++] = undefined as unknown as () => void
        start()
      }
      if (this.#queueHead === queue.length) {
        this.#queue = undefined
        this.#queueHead = 0
      }
    }
    this.#settleIfIdle()
  }

  #onAbort(reason: unknown): void {
    // Queued tasks never start once the group is aborted.
    this.#queue = undefined
    this.#queueHead = 0
    if (!this.#done && this.#reason === undefined) this.#reason = reason
    this.#settleIfIdle()
  }

  #settleIfIdle(): void {
    const waiter = this.#waiter
    if (waiter === undefined || this.#done || this.#active > 0) return
    if (this.#queue !== undefined && this.#queueHead < this.#queue.length) return
    this.#done = true
    const reason = this.#reason
    // Go cancels the group's context when Wait returns; so do we, which also unlinks the group
    // from its parent scope.
    this.#scope.cancel()
    if (reason === undefined) waiter.resolve()
    else waiter.reject(reasonValue(reason))
  }
}

function readLimit(options: TaskGroupOptions | undefined): number {
  checkOptionsObject('TaskGroup', options)
  return options?.limit === undefined ? Number.POSITIVE_INFINITY : checkCount('limit', options.limit)
}

function checkTask(task: unknown): void {
  if (typeof task !== 'function') throw new TypeError(`a task must be a function, received ${received(task)}`)
}

/**
 * `Promise.all` for task functions, with errgroup semantics: the first failure aborts the
 * siblings' signal, and the returned promise rejects only once every started task has settled:
 * nothing is left running when it rejects. Results come in the order of `tasks`.
 *
 * @param tasks - functions receiving the group's `AbortSignal`
 * @param options - `signal` (parent; defaults to the current scope's), `limit`
 * @returns the tasks' results, in order
 * @throws TypeError synchronously if `tasks` is not an array of functions
 *
 * @example
 * ```ts
 * const [user, orders] = await all([
 *   (signal) => users.get(id, { signal }),
 *   (signal) => orders.list(id, { signal }),
 * ])
 * ```
 */
export function all<const T extends readonly Task<unknown>[]>(tasks: T, options?: TaskGroupOptions): Promise<Results<T>> {
  return TaskGroup.run(tasks, options, Collect.Values) as Promise<Results<T>>
}

/**
 * `Promise.allSettled` for task functions: every task runs to its end (a failure does not abort
 * the siblings), under the current scope, so they all stop if the request ends. Tasks that never
 * started because the parent aborted are reported as rejected with the parent's reason.
 *
 * @param tasks - functions receiving the group's `AbortSignal`
 * @param options - `signal` (parent; defaults to the current scope's), `limit`
 * @returns `{ status: 'fulfilled', value }` or `{ status: 'rejected', reason }` per task, in order
 */
export function allSettled<const T extends readonly Task<unknown>[]>(
  tasks: T,
  options?: TaskGroupOptions,
): Promise<SettledResults<T>> {
  return TaskGroup.run(tasks, options, Collect.Outcomes) as Promise<SettledResults<T>>
}
