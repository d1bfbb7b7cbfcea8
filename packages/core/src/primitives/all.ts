import { TaskGroup } from './group.js'
import { Collect, type Task, type TaskGroupOptions } from './task.js'

/** The outcome of one task, as reported by {@link allSettled}. */
export type Settled<T> = { status: 'fulfilled'; value: T } | { status: 'rejected'; reason: unknown }

type Results<T extends readonly Task<unknown>[]> = { -readonly [K in keyof T]: Awaited<ReturnType<T[K]>> }
type SettledResults<T extends readonly Task<unknown>[]> = {
  -readonly [K in keyof T]: Settled<Awaited<ReturnType<T[K]>>>
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
export function all<const T extends readonly Task<unknown>[]>(
  tasks: T,
  options?: TaskGroupOptions,
): Promise<Results<T>> {
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
