import { runInScope } from './create-scope.js'
import { GroupScope } from './group-scope.js'
import { reasonValue } from './lazy-reason.js'
import { Collect, isThenable, type Task } from './task.js'

/**
 * The common case of `all()`/`allSettled()`: every task starts at once (no `concurrency` below the
 * number of tasks). V8's own `Promise.all` and `Promise.allSettled` do the per-task bookkeeping
 * (about as fast as a bare `Promise.all`); the fan-out adds what they lack: the first failure aborts
 * the siblings, a rejection waits for every started task to settle, and the tasks run in the
 * group's scope. The queueing engine for more tasks than `concurrency` is {@link TaskGroup}.
 *
 * @internal
 */
export class FanOut extends GroupScope {
  // The tasks' results, read only to count the pending ones once the group lingers.
  #started: unknown[] | undefined = undefined

  /**
   * Starts every task and collects their results (`Collect.Values`) or outcomes
   * (`Collect.Outcomes`), in order.
   */
  run(tasks: readonly Task<unknown>[], mode: Collect): Promise<unknown[]> {
    if (this.aborted) return this.#abortedBeforeStart(tasks.length, mode)
    this.noteStart()
    this.active = tasks.length
    const started: unknown[] = new Array(tasks.length)
    this.#started = started
    // One entry into the group's scope for all of them: each task's continuations keep it.
    const count = runInScope(this.scope, FanOut.#startAll, this, tasks, started, mode)
    if (mode === Collect.Outcomes) return Promise.allSettled(started).then((outcomes) => this.#done(outcomes, mode))
    if (count < tasks.length) {
      // A synchronous throw: the tasks already started are told to stop, the rest never start.
      started.length = count
      this.active = count
      return this.#afterFailure(started)
    }
    if (this.aborted) return this.#afterFailure(started)
    return Promise.all(started).then(
      (values) => this.#done(values, mode),
      (error: unknown) => {
        this.abort(error)
        return this.#afterFailure(started)
      },
    )
  }

  /** The parent had ended before anything started: nothing runs, and the result says why. */
  #abortedBeforeStart(count: number, mode: Collect): Promise<unknown[]> {
    this.end()
    const reason = reasonValue(this.reason)
    if (mode !== Collect.Outcomes) return Promise.reject(reason)
    return Promise.resolve(Array.from({ length: count }, () => ({ status: 'rejected', reason })))
  }

  /** Waits for every started task to settle, then rejects with the group's reason. */
  #afterFailure(started: unknown[]): Promise<never> {
    return Promise.allSettled(started).then(() => {
      this.#release()
      this.end()
      throw reasonValue(this.reason)
    })
  }

  /**
   * All started tasks settled: end the group, then report. all() rejects if the group was aborted
   * (by its parent) meanwhile; allSettled reports each task's own outcome.
   */
  #done(results: unknown[], mode: Collect): unknown[] {
    this.#release()
    const aborted = this.aborted
    const reason = this.reason
    this.end()
    if (aborted && mode !== Collect.Outcomes) throw reasonValue(reason)
    return results
  }

  #release(): void {
    this.active = 0
    this.#started = undefined
    this.syncTracked()
  }

  /**
   * The tasks started at once and Promise.all counts them: once the group lingers, count the ones
   * still pending one by one, so that its record says how many there are.
   */
  protected override countPending(): void {
    const started = this.#started
    if (started === undefined) return
    let pending = 0
    const settled = () => {
      if (this.#started !== started) return // released already
      this.active = --pending
      this.syncTracked()
    }
    for (const result of started) {
      if (!isThenable(result)) continue
      pending++
      result.then(settled, settled)
    }
    this.active = pending
  }

  /**
   * Starts every task; called with the group's scope current.
   *
   * @returns how many tasks were started before one threw synchronously (all of them otherwise;
   *   allSettled keeps going, a throw being one task's outcome)
   */
  static #startAll(fanOut: FanOut, tasks: readonly Task<unknown>[], started: unknown[], mode: Collect): number {
    const signal = fanOut.scope.signal
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
      fanOut.abort(error)
    }
    return count
  }
}
