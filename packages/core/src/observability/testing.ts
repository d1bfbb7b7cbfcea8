import { setTimeout as sleep } from 'node:timers/promises'
import {
  checkDuration,
  checkFunction,
  checkOptionsObject,
  describeOrigin,
  forgetLingering,
} from '../primitives/index.js'
import { inspect, type LingeringTask } from './inspect.js'

/** Options of {@link assertNoLingering}. All optional. */
export interface AssertNoLingeringOptions {
  /**
   * How long to keep retrying, in milliseconds, before failing: tasks that are stopping settle a
   * moment after their request ends.
   * @default 2000
   */
  readonly timeout?: number
  /**
   * Tasks to leave out of the check (goleak's `IgnoreTopFunction`): return true to ignore one.
   */
  readonly ignore?: (task: LingeringTask) => boolean
}

/** Thrown by {@link assertNoLingering}: the tasks that outlived their request, named. */
export class LingeringTasksError extends Error {
  override readonly name = 'LingeringTasksError' as const
  /** The offending tasks, as `inspect()` lists them. */
  readonly tasks: readonly LingeringTask[]

  constructor(tasks: readonly LingeringTask[], waitedMs: number) {
    const lines = tasks.map((task) => {
      const what = task.kind === 'group' ? `group (${task.tasks} task(s))` : `${task.kind} task`
      const site = task.startedAt === null ? '' : `\n      started at ${task.startedAt.split('\n').join('\n        ')}`
      return `  - ${what} of ${describeOrigin(task)}, started ${task.ageMs} ms ago, still pending ${task.pastEndMs} ms after its request ended${task.leaked ? ' (leaked)' : ''}${site}`
    })
    super(`${tasks.length} task(s) outlived their request (still there after ${waitedMs} ms):\n${lines.join('\n')}`)
    this.tasks = tasks
  }
}

/**
 * Asserts, in the spirit of Go's goleak `VerifyNone`, that nothing started through tether
 * (a `TaskGroup`, `all`, `allSettled`, a pool, `scope.track()`) is still pending after its request
 * ended. It retries with a short backoff for up to `timeout` ms, since a task that is stopping
 * settles a moment after its request ends, then rejects with a {@link LingeringTasksError} naming
 * each offender (route, age, and where it started when stack capture is on).
 *
 * Works with any test runner: it is a plain async function.
 *
 * @example
 * ```ts
 * import { assertNoLingering } from '@tether/core/testing'
 * afterEach(() => assertNoLingering())
 * ```
 */
export async function assertNoLingering(options?: AssertNoLingeringOptions): Promise<void> {
  checkOptionsObject('assertNoLingering()', options, ['timeout', 'ignore'])
  const timeout = options?.timeout === undefined ? 2_000 : checkDuration('timeout', options.timeout)
  const ignore = options?.ignore
  if (ignore !== undefined) checkFunction('ignore', ignore)
  const started = Date.now()
  let pause = 5
  for (;;) {
    // A scope that just ended has its pending tasks classified on the next turn of the event loop.
    await new Promise((resolve) => setImmediate(resolve))
    const offenders = inspect().lingering.filter((task) => ignore === undefined || !ignore(task))
    if (offenders.length === 0) return
    const waited = Date.now() - started
    if (waited >= timeout) throw new LingeringTasksError(offenders, waited)
    await sleep(Math.min(pause, timeout - waited))
    pause = Math.min(pause * 2, 100)
  }
}

/**
 * Forgets every lingering and leaked task tether knows of, so that one leaky test does not fail
 * every test after it: call it after a failed {@link assertNoLingering} (or in `afterEach`, after
 * the assertion). The tasks themselves are not stopped, and the cumulative counters keep them.
 *
 * @example
 * ```ts
 * afterEach(async () => {
 *   try {
 *     await assertNoLingering()
 *   } finally {
 *     resetLingering()
 *   }
 * })
 * ```
 */
export function resetLingering(): void {
  forgetLingering()
}
