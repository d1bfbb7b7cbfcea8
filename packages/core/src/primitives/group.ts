import { runInScope } from './create-scope.js'
import { GroupScope, readGroupOptions } from './group-scope.js'
import { reasonValue } from './lazy-reason.js'
import { Collect, checkTask, isThenable, type Task, type TaskGroupOptions } from './task.js'

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
 * - at most `concurrency` tasks run at once;
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
 * const group = new TaskGroup({ concurrency: 4 })
 * for (const id of ids) group.go((signal) => loadUser(id, { signal }))
 * await group.wait() // rejects with the first failure, after the others have stopped
 * ```
 */
export class TaskGroup extends GroupScope {
  /** The most tasks running at once. */
  readonly limit: number
  #mode = Collect.None
  #results: unknown[] | undefined = undefined
  #queue: Queued[] | undefined = undefined
  #queueHead = 0
  #onIdle: ((aborted: boolean, reason: unknown) => void) | undefined = undefined
  #waiter: Promise<void> | undefined = undefined

  /**
   * @param options - `signal` (parent signal), `concurrency` (max tasks running at once)
   * @throws TypeError/RangeError naming the option, for invalid options
   */
  constructor(options?: TaskGroupOptions) {
    const { limit, signal } = readGroupOptions('TaskGroup', options)
    super(signal)
    this.limit = limit
  }

  /**
   * The group's signal: aborts on the first failure, when the parent aborts, or when `wait()`
   * settles.
   */
  get signal(): AbortSignal {
    return this.scope.signal
  }

  /**
   * Starts `task`, or queues it (FIFO) while `limit` tasks are running. Once the group has been
   * aborted, the task is not started.
   */
  go(task: Task<unknown>): void {
    checkTask(task)
    if (this.aborted) return
    if (this.active < this.limit) this.#start(task, -1)
    else this.#enqueue(task, -1)
  }

  /**
   * Starts `task` only if a slot is free right now.
   *
   * @returns `true` if the task was started; `false` at the limit or once the group was aborted
   */
  tryGo(task: Task<unknown>): boolean {
    checkTask(task)
    if (this.aborted || this.active >= this.limit) return false
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

  /**
   * @internal Runs the tasks of `all`/`allSettled` when there are more of them than `concurrency`,
   * collecting results by index.
   */
  static run(
    tasks: readonly Task<unknown>[],
    options: TaskGroupOptions | undefined,
    mode: Collect,
  ): Promise<unknown[]> {
    return new TaskGroup(options).#runAll(tasks, mode)
  }

  /** @internal Aborts the group's signal; queued tasks never start. The first reason wins. */
  protected override abort(reason: unknown): void {
    if (this.aborted) return
    super.abort(reason)
    this.#queue = undefined
    this.#queueHead = 0
    this.#settleIfIdle()
  }

  #runAll(tasks: readonly Task<unknown>[], mode: Collect): Promise<unknown[]> {
    this.#mode = mode
    const results: unknown[] = new Array(tasks.length)
    this.#results = results
    for (let index = 0; index < tasks.length && !this.aborted; index++) {
      const task = tasks[index] as Task<unknown>
      if (this.active < this.limit) this.#start(task, index)
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

  #enqueue(task: Task<unknown>, index: number): void {
    if (this.#queue === undefined) this.#queue = []
    this.#queue.push({ task, index })
  }

  #start(task: Task<unknown>, index: number): void {
    if (this.active++ === 0) this.noteStart()
    this.syncTracked()
    runInScope(this.scope, TaskGroup.#runTask, this, task, index)
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
    this.active--
    this.syncTracked()
    const results = this.#results
    if (this.#mode === Collect.Outcomes) {
      ;(results as unknown[])[index] = ok ? { status: 'fulfilled', value } : { status: 'rejected', reason: value }
    } else if (ok) {
      if (results !== undefined) results[index] = value
    } else {
      this.abort(value) // the first failure, or abort, wins: later ones change nothing
    }
    this.#next()
  }

  #next(): void {
    // Starting a task can finish it synchronously, which calls #next again from inside this loop:
    // the nested call may drain or drop the queue, so the queue and its head are read afresh on
    // every turn rather than kept in locals.
    while (this.active < this.limit && !this.aborted) {
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
    if (onIdle === undefined || this.active > 0) return
    if (this.#queue !== undefined && this.#queueHead < this.#queue.length) return
    this.#onIdle = undefined
    const aborted = this.aborted
    const reason = this.reason
    this.end()
    onIdle(aborted, reason)
  }
}
