import { FanOut } from './fan-out.js'
import { TaskGroup } from './group.js'
import { readGroupOptions } from './group-scope.js'
import { Collect, checkTask, type Task, type TaskGroupOptions } from './task.js'
import { received } from './validate.js'

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
 * @param options - `signal` (parent; defaults to the current scope's), `concurrency`
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
  return run('all()', tasks, options, Collect.Values) as Promise<Results<T>>
}

/**
 * `Promise.allSettled` for task functions: every task runs to its end (a failure does not abort
 * the siblings), under the current scope, so they all stop if the request ends. Tasks that never
 * started because the parent aborted are reported as rejected with the parent's reason.
 *
 * @param tasks - functions receiving the group's `AbortSignal`
 * @param options - `signal` (parent; defaults to the current scope's), `concurrency`
 * @returns `{ status: 'fulfilled', value }` or `{ status: 'rejected', reason }` per task, in order
 */
export function allSettled<const T extends readonly Task<unknown>[]>(
  tasks: T,
  options?: TaskGroupOptions,
): Promise<SettledResults<T>> {
  return run('allSettled()', tasks, options, Collect.Outcomes) as Promise<SettledResults<T>>
}

/**
 * Checks the tasks and options, then runs the tasks all at once ({@link FanOut}), or through a
 * {@link TaskGroup}'s queue when there are more of them than `concurrency`.
 */
function run(
  where: string,
  tasks: readonly Task<unknown>[],
  options: TaskGroupOptions | undefined,
  mode: Collect,
): Promise<unknown[]> {
  if (!Array.isArray(tasks)) throw new TypeError(`expected an array of task functions, received ${received(tasks)}`)
  for (let index = 0; index < tasks.length; index++) checkTask(tasks[index])
  const { limit, signal } = readGroupOptions(where, options)
  if (tasks.length > limit) return TaskGroup.run(tasks, options, mode)
  return new FanOut(signal).run(tasks, mode)
}
