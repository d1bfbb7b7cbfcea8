import { received } from './validate.js'

/**
 * A unit of work started by a group or a pool: it receives the group's signal and should stop
 * when it aborts. A synchronous throw counts as a failure, like a rejection.
 */
export type Task<T> = (signal: AbortSignal) => T | PromiseLike<T>

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
/** @internal */
export enum Collect {
  None = 0,
  Values = 1,
  Outcomes = 2,
}

/** Throws unless `task` is a function. @internal */
export function checkTask(task: unknown): void {
  if (typeof task !== 'function') throw new TypeError(`a task must be a function, received ${received(task)}`)
}

/** Options of {@link TaskGroup}, {@link all} and {@link allSettled}. All optional. */
export interface TaskGroupOptions {
  /**
   * The parent signal. When it aborts, the group aborts with the same reason, queued tasks are
   * dropped and `wait()` rejects with that reason.
   * @default the signal of {@link currentScope}, if there is one
   */
  readonly signal?: AbortSignal
  /**
   * The most tasks running at once; further tasks wait in a FIFO queue. The name every limit of
   * simultaneous work has in tether (`createPool`, `tether()`, `createScopedFetch`).
   * @default Infinity
   */
  readonly concurrency?: number
  /**
   * The former name of {@link TaskGroupOptions.concurrency}: the same option.
   * @deprecated Use `concurrency`; `limit` keeps working.
   * @default Infinity
   */
  readonly limit?: number
}
