import type { Task } from './task.js'

// What a pool takes and what it shows: createPool()'s options, run()'s, and the Pool interface.

/** Options of {@link createPool}. */
export interface PoolOptions {
  /** The most tasks running at once: an integer ≥ 1, or `Infinity`. Required. */
  readonly concurrency: number
  /**
   * The most tasks waiting for a slot. Beyond it, `run()` rejects with `PoolOverloadedError`
   * at once instead of queueing (load shedding).
   * @default Infinity
   */
  readonly maxQueue?: number
  /**
   * Seconds a shed client should wait, sent as `Retry-After` by the adapters.
   * @default 1
   */
  readonly retryAfter?: number
  /**
   * Overload policy for callers whose scope has a deadline (a request's, under `tether()`), so that
   * a pool under overload spends its slots on work that can still finish in time, with nothing to
   * tune:
   *
   * - a caller that would have to queue is shed at once with `PoolOverloadedError` when the work
   *   ahead of it, at the pool's observed service time, cannot finish before its deadline;
   * - a queued caller whose remaining budget no longer covers one service time when its turn
   *   comes is shed instead of started;
   * - while the queue is standing (its oldest caller has waited longer than two service times per
   *   slot), the newest caller is started first if it has a deadline (adaptive LIFO), and the
   *   oldest are shed as soon as the work queued after them leaves them no time.
   *
   * Callers without a deadline are never shed by it nor moved ahead: among them the order stays
   * FIFO. `false` gives plain FIFO for everyone, for tasks whose durations vary so widely that a
   * recent average predicts nothing.
   * @default true
   */
  readonly deadlineAware?: boolean
}

/** @internal */
export const POOL_OPTIONS = ['concurrency', 'maxQueue', 'retryAfter', 'deadlineAware']

/** Options of {@link Pool.run}. */
export interface PoolRunOptions {
  /**
   * The caller's signal, handed to the task. If it aborts while the task is queued, the task
   * leaves the queue at once, never starts, and `run()` rejects with the signal's reason.
   * @default the signal of {@link currentScope}, if there is one
   */
  readonly signal?: AbortSignal
}

/** @internal */
export const RUN_OPTIONS = ['signal']

/**
 * A bounded worker pool: at most `concurrency` tasks at once, the rest queued FIFO (under a standing
 * queue, callers with a deadline newest first: see {@link PoolOptions.deadlineAware}).
 */
export interface Pool {
  /**
   * Runs `task` when a slot is free, in the async context of the caller (AsyncLocalStorage
   * values seen by the caller are seen by the task).
   *
   * @returns the task's result
   * @throws (rejects) `PoolOverloadedError` when the queue is full, or (with `deadlineAware`)
   *   when the caller's deadline cannot cover the work ahead of it or no longer covers its own run
   *   when its turn comes; the caller's abort reason when its signal aborts while the task is queued
   */
  run<T>(task: Task<T>, options?: PoolRunOptions): Promise<T>
  /** Tasks running now. */
  readonly active: number
  /** Tasks waiting for a slot. */
  readonly queued: number
  /** The most tasks running at once. */
  readonly concurrency: number
  /** The most tasks waiting for a slot. */
  readonly maxQueue: number
  /**
   * The observed service time, in ms: a moving average of how long tasks of callers with a
   * deadline ran after waiting in the queue. `0` until one has been measured.
   */
  readonly serviceTime: number
}
