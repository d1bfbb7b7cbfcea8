import { getEventListeners } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  all,
  allSettled,
  createPool,
  createScope,
  isDeadlineExceeded,
  isPoolOverloaded,
  type Scope,
  type Task,
  TaskGroup,
} from '../src/index.js'

// Property-based tests over random task trees and random abort timings. Every run records what
// happened against one counter (`Clock`), so that "before" and "after" are exact orders of events
// rather than readings of a wall clock. Delays are real but tiny (0-4 ms), so runs stay short.

/** Orders the events of one run. */
class Clock {
  #now = 0
  tick(): number {
    return ++this.#now
  }
}

/** How long something takes: nothing, a few microtasks, one turn of the event loop, or a timer. */
type Timing =
  | { readonly kind: 'sync' }
  | { readonly kind: 'microtask'; readonly ticks: number }
  | { readonly kind: 'immediate' }
  | { readonly kind: 'timeout'; readonly ms: number }

const asyncTiming: fc.Arbitrary<Timing> = fc.oneof(
  fc.record({ kind: fc.constant('microtask' as const), ticks: fc.integer({ min: 1, max: 4 }) }),
  fc.constant({ kind: 'immediate' as const }),
  fc.record({ kind: fc.constant('timeout' as const), ms: fc.integer({ min: 0, max: 3 }) }),
)
const timing: fc.Arbitrary<Timing> = fc.oneof(
  { arbitrary: fc.constant({ kind: 'sync' as const }), weight: 1 },
  { arbitrary: asyncTiming, weight: 3 },
)

function elapse(timing: Timing): Promise<void> {
  switch (timing.kind) {
    case 'sync':
      return Promise.resolve()
    case 'microtask': {
      let promise = Promise.resolve()
      for (let i = 0; i < timing.ticks; i++) promise = promise.then(() => undefined)
      return promise
    }
    case 'immediate':
      return new Promise((resolve) => setImmediate(resolve))
    case 'timeout':
      return new Promise((resolve) => setTimeout(resolve, timing.ms))
  }
}

/**
 * When a parent aborts: before anything starts, right after the tasks were handed over, or
 * later. Never after a few microtasks: an abort landing between a task's settlement and the
 * group's reaction to it would make "which came first" a matter of promise plumbing.
 */
type AbortTiming = 'before' | 'sync' | 'immediate' | number
const abortTiming: fc.Arbitrary<AbortTiming> = fc.oneof(
  fc.constant('before' as const),
  fc.constant('sync' as const),
  fc.constant('immediate' as const),
  fc.integer({ min: 0, max: 4 }),
)

function elapseUntil(at: 'immediate' | number): Promise<void> {
  return at === 'immediate' ? elapse({ kind: 'immediate' }) : elapse({ kind: 'timeout', ms: at })
}

/** One task: how it ends, when, and whether it stops early when its signal aborts. */
interface TaskSpec {
  readonly outcome: 'resolve' | 'reject' | 'throw'
  readonly timing: Timing
  readonly listens: boolean
}

const taskSpec: fc.Arbitrary<TaskSpec> = fc.record({
  outcome: fc.oneof(
    { arbitrary: fc.constant('resolve' as const), weight: 4 },
    { arbitrary: fc.constant('reject' as const), weight: 1 },
    { arbitrary: fc.constant('throw' as const), weight: 1 },
  ),
  timing,
  listens: fc.boolean(),
})

const limit = fc.oneof(fc.integer({ min: 1, max: 5 }), fc.constant(Number.POSITIVE_INFINITY))

interface Started {
  readonly seq: number
  readonly signal: AbortSignal
  readonly abortedAtStart: boolean
}

interface Settled {
  readonly seq: number
  readonly ok: boolean
  readonly value: unknown
  /** Whether the task's signal was aborted when its outcome was observed. */
  readonly signalAborted: boolean
}

/**
 * What one run saw: when each task started and settled, and how many ran at once. A task counts
 * as settled when its outcome can be observed (a reaction registered before anyone else's), so
 * its settlement is always ordered before whatever the group does in reaction to it.
 */
class Recorder {
  readonly clock = new Clock()
  readonly started = new Map<string, Started>()
  readonly settled = new Map<string, Settled>()
  running = 0
  maxRunning = 0

  start(id: string, signal: AbortSignal, abortedAtStart = signal.aborted): void {
    if (this.started.has(id)) throw new Error(`task ${id} started twice`)
    this.started.set(id, { seq: this.clock.tick(), signal, abortedAtStart })
    this.running++
    this.maxRunning = Math.max(this.maxRunning, this.running)
  }

  settle(id: string, ok: boolean, value: unknown, signal: AbortSignal): void {
    if (this.settled.has(id)) throw new Error(`task ${id} settled twice`)
    this.settled.set(id, { seq: this.clock.tick(), ok, value, signalAborted: signal.aborted })
    this.running--
  }

  /** Records the outcome of `promise` as soon as it can be observed; returns `promise` itself. */
  observe<T>(id: string, promise: Promise<T>, signal: AbortSignal): Promise<T> {
    promise.then(
      (value) => this.settle(id, true, value, signal),
      (error: unknown) => this.settle(id, false, error, signal),
    )
    return promise
  }

  /** The failures, in the order they were observed. */
  failures(): Settled[] {
    return [...this.settled.values()].filter((settled) => !settled.ok).sort((a, b) => a.seq - b.seq)
  }
}

const valueFor = (id: string) => `value ${id}`

/**
 * Runs the body of a task: records its start, then resolves with `value <id>`, rejects or throws
 * `Error('failure <id>')` after its timing; a listening task rejects with its signal's reason as
 * soon as the signal aborts.
 */
function body(spec: TaskSpec, id: string, signal: AbortSignal, recorder: Recorder): unknown {
  const value = valueFor(id)
  const error = new Error(`failure ${id}`)
  if (spec.outcome === 'throw') {
    recorder.settle(id, false, error, signal)
    throw error
  }
  if (spec.timing.kind === 'sync') {
    if (spec.outcome === 'resolve') {
      recorder.settle(id, true, value, signal)
      return value
    }
    return recorder.observe(id, Promise.reject(error), signal)
  }
  const promise = new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    if (spec.listens) signal.addEventListener('abort', onAbort, { once: true })
    elapse(spec.timing).then(() => {
      signal.removeEventListener('abort', onAbort)
      if (spec.outcome === 'resolve') resolve(value)
      else reject(error)
    })
  })
  return recorder.observe(id, promise, signal)
}

type Outcome<T> =
  | { readonly status: 'fulfilled'; readonly value: T; readonly seq: number }
  | { readonly status: 'rejected'; readonly reason: unknown; readonly seq: number }
  | { readonly status: 'pending' }

/** How `promise` settled, and when (on `clock`); `pending` if it has not after `ms`. */
async function settleWithin<T>(promise: Promise<T>, clock: Clock, ms = 2_000): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined
  const guard = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ status: 'pending' }), ms)
  })
  const outcome = promise.then(
    (value): Outcome<T> => ({ status: 'fulfilled', value, seq: clock.tick() }),
    (reason: unknown): Outcome<T> => ({ status: 'rejected', reason, seq: clock.tick() }),
  )
  try {
    return await Promise.race([outcome, guard])
  } finally {
    clearTimeout(timer)
  }
}

function settledSeq(outcome: Outcome<unknown>): number {
  if (outcome.status === 'pending') throw new Error('the promise never settled')
  return outcome.seq
}

type ParentKind = 'none' | 'controller' | 'scope'

/** A parent to abort: an AbortController or a scope, aborted with a reason of its own. */
interface Parent {
  readonly signal: AbortSignal | undefined
  readonly reason: Error
  abortedAt: number | undefined
  /** Tells, when the parent aborts, whether the group had already finished (its signal aborted). */
  groupDone: () => boolean
  groupDoneAtAbort: boolean
  abort(): void
}

function makeParent(kind: ParentKind, clock: Clock): Parent {
  const reason = new Error('parent aborted')
  let signal: AbortSignal | undefined
  let abort: () => void = () => undefined
  if (kind === 'controller') {
    const controller = new AbortController()
    signal = controller.signal
    abort = () => controller.abort(reason)
  } else if (kind === 'scope') {
    const scope = createScope()
    signal = scope.signal
    abort = () => scope.cancel(reason)
  }
  const parent: Parent = {
    signal,
    reason,
    abortedAt: undefined,
    groupDone: () => false,
    groupDoneAtAbort: false,
    abort() {
      if (signal === undefined || parent.abortedAt !== undefined) return
      parent.abortedAt = clock.tick()
      parent.groupDoneAtAbort = parent.groupDone()
      abort()
    },
  }
  return parent
}

/** Schedules the parent's abort at `at` (other than `before`); resolves once it has happened. */
function scheduleAbort(parent: Parent, at: AbortTiming): Promise<void> {
  if (at === 'before') return Promise.resolve()
  if (at === 'sync') {
    parent.abort()
    return Promise.resolve()
  }
  return elapseUntil(at).then(() => parent.abort())
}

const groupScenario = fc.record({
  specs: fc.array(
    fc.record({ spec: taskSpec, tryGo: fc.boolean() }).map(({ spec, tryGo }) => ({ ...spec, tryGo })),
    { maxLength: 8 },
  ),
  limit,
  parent: fc.constantFrom<ParentKind>('none', 'controller', 'scope'),
  abortAt: abortTiming,
})

describe('TaskGroup and all(): properties over random tasks and abort timings', () => {
  it('settle only after every started task, start nothing once aborted, respect limit, and report the first failure', async () => {
    await fc.assert(
      fc.asyncProperty(groupScenario, fc.constantFrom('group' as const, 'all' as const), async (scenario, mode) => {
        const { specs, abortAt } = scenario
        const recorder = new Recorder()
        const problems: string[] = []
        const parent = makeParent(scenario.parent, recorder.clock)
        if (abortAt === 'before') parent.abort()
        const options = { signal: parent.signal, limit: scenario.limit }
        const tried = new Map<number, boolean>()
        let group: TaskGroup | undefined
        let groupSignal: AbortSignal | undefined
        // A group that finishes aborts its signal only for whatever still listens to it (tasks
        // here remove their own listeners when they settle), so the run keeps a probe listening:
        // the group's end then shows as an abort, which is what these checks read.
        const probe = (signal: AbortSignal) => signal.addEventListener('abort', () => undefined, { once: true })
        parent.groupDone = () => groupSignal?.aborted === true
        let result: Promise<unknown>
        const tasks = specs.map((spec, index): Task<unknown> => {
          const id = String(index)
          return (signal) => {
            if (groupSignal === undefined) {
              groupSignal = signal
              probe(signal)
            }
            if (signal !== groupSignal) problems.push(`task ${id} got a signal other than the group's`)
            recorder.start(id, signal)
            return body(spec, id, signal, recorder)
          }
        })
        if (mode === 'group') {
          group = new TaskGroup(options)
          groupSignal = group.signal
          probe(groupSignal)
          for (const [index, task] of tasks.entries()) {
            if (specs[index]?.tryGo) tried.set(index, group.tryGo(task))
            else group.go(task)
          }
          result = group.wait()
        } else {
          result = all(tasks, options)
        }
        const aborting = scheduleAbort(parent, abortAt)
        const outcome = await settleWithin(result, recorder.clock)
        await aborting

        // Every promise settles.
        expect(outcome.status).not.toBe('pending')
        const settledAt = settledSeq(outcome)
        expect(problems).toEqual([])
        // No task starts once the group's signal has aborted, and at most `limit` run at once.
        for (const [id, started] of recorder.started) {
          expect(started.abortedAtStart, `task ${id} started with an aborted signal`).toBe(false)
          // The result settles only after every started task has settled.
          const settled = recorder.settled.get(id)
          expect(settled, `started task ${id} never settled`).toBeDefined()
          expect(settled?.seq, `task ${id} settled after the result`).toBeLessThan(settledAt)
          // Once the result has settled, the group's signal is aborted (Go's Wait).
          expect(started.signal.aborted).toBe(true)
        }
        expect(recorder.maxRunning).toBeLessThanOrEqual(scenario.limit)
        for (const [index, wasStarted] of tried) expect(wasStarted).toBe(recorder.started.has(String(index)))

        const first = recorder.failures()[0]
        const parentAbortedFirst =
          parent.abortedAt !== undefined && parent.abortedAt < settledAt && !parent.groupDoneAtAbort
        if (abortAt === 'before' && parent.signal !== undefined) {
          expect(recorder.started.size).toBe(0)
          expect(outcome.status === 'rejected' && outcome.reason, "the parent's reason").toBe(parent.reason)
        } else if (first !== undefined && (parent.abortedAt === undefined || first.seq < parent.abortedAt)) {
          expect(outcome.status === 'rejected' && outcome.reason, 'the first failure').toBe(first.value)
        } else if (parentAbortedFirst) {
          expect(outcome.status === 'rejected' && outcome.reason, "the parent's reason").toBe(parent.reason)
        } else {
          expect(outcome.status).toBe('fulfilled')
          if (mode === 'all') {
            expect(recorder.started.size, 'tasks all() started before resolving').toBe(specs.length)
            expect(outcome.status === 'fulfilled' && outcome.value).toEqual(specs.map((_, i) => valueFor(String(i))))
          }
        }

        if (group !== undefined) {
          // After wait() has settled the group is spent: go() starts nothing.
          expect(group.signal.aborted).toBe(true)
          let startedLate = false
          group.go(() => {
            startedLate = true
          })
          expect(group.tryGo(() => undefined)).toBe(false)
          expect(startedLate).toBe(false)
        }
        if (parent.signal !== undefined) expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0)
      }),
      {
        numRuns: 300,
        examples: [
          [
            {
              specs: [
                { outcome: 'resolve', timing: { kind: 'sync' }, listens: false, tryGo: false },
                { outcome: 'resolve', timing: { kind: 'sync' }, listens: false, tryGo: false },
              ],
              limit: 1,
              parent: 'none',
              abortAt: 'sync',
            },
            'all',
          ],
        ],
      },
    )
  })

  it('allSettled() runs every task to its end, reports each outcome in order, and settles after the last', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(taskSpec, { maxLength: 8 }),
        limit,
        fc.constantFrom<ParentKind>('none', 'controller', 'scope'),
        abortTiming,
        async (specs, taskLimit, parentKind, abortAt) => {
          const recorder = new Recorder()
          const parent = makeParent(parentKind, recorder.clock)
          if (abortAt === 'before') parent.abort()
          const tasks = specs.map((spec, index): Task<unknown> => {
            const id = String(index)
            return (signal) => {
              recorder.start(id, signal)
              return body(spec, id, signal, recorder)
            }
          })
          const result = allSettled(tasks, { signal: parent.signal, limit: taskLimit })
          const aborting = scheduleAbort(parent, abortAt)
          const outcome = await settleWithin(result, recorder.clock)
          await aborting

          expect(outcome.status).toBe('fulfilled')
          const settledAt = settledSeq(outcome)
          expect(recorder.maxRunning).toBeLessThanOrEqual(taskLimit)
          const reports = outcome.status === 'fulfilled' ? outcome.value : []
          expect(reports).toHaveLength(specs.length)
          specs.forEach((_, index) => {
            const id = String(index)
            const started = recorder.started.get(id)
            const settled = recorder.settled.get(id)
            if (started === undefined) {
              // Only the parent's abort keeps a task from starting; it is reported with that reason.
              expect(parent.abortedAt, `task ${id} never started, yet the parent did not abort`).toBeDefined()
              expect(reports[index]).toEqual({ status: 'rejected', reason: parent.reason })
              expect((reports[index] as { reason?: unknown }).reason).toBe(parent.reason)
              return
            }
            expect(started.abortedAtStart).toBe(false)
            expect(settled).toBeDefined()
            if (settled === undefined) return
            expect(settled.seq).toBeLessThan(settledAt)
            // A sibling's failure never aborts a task: only the parent does.
            if (parent.abortedAt === undefined || settled.seq < parent.abortedAt)
              expect(settled.signalAborted).toBe(false)
            const report = reports[index] as { status: string; value?: unknown; reason?: unknown }
            expect(report.status).toBe(settled.ok ? 'fulfilled' : 'rejected')
            expect(settled.ok ? report.value : report.reason).toBe(settled.value)
          })
        },
      ),
      {
        numRuns: 200,
        examples: [
          [
            [
              { outcome: 'throw', timing: { kind: 'sync' }, listens: false },
              { outcome: 'resolve', timing: { kind: 'sync' }, listens: false },
            ],
            Number.POSITIVE_INFINITY,
            'none',
            'sync',
          ],
          [
            [
              { outcome: 'resolve', timing: { kind: 'sync' }, listens: false },
              { outcome: 'resolve', timing: { kind: 'sync' }, listens: false },
            ],
            1,
            'none',
            'sync',
          ],
        ],
      },
    )
  })
})

/** A random tree of tasks: leaves are tasks, inner nodes run their children with all(). */
type TreeNode =
  | { readonly kind: 'leaf'; readonly spec: TaskSpec }
  | { readonly kind: 'group'; readonly limit: number; readonly children: readonly TreeNode[] }

const tree = fc.letrec<{ group: TreeNode; node: TreeNode; leaf: TreeNode }>((tie) => ({
  group: fc.record({
    kind: fc.constant('group' as const),
    limit,
    children: fc.array(tie('node'), { minLength: 1, maxLength: 4 }),
  }),
  node: fc.oneof({ maxDepth: 3, depthIdentifier: 'tree' }, tie('leaf'), tie('group')),
  leaf: taskSpec.map((spec) => ({ kind: 'leaf' as const, spec })),
})).group

/** One all() in the tree: the signal its tasks got, when it aborted and why, and its ancestors. */
interface GroupRecord {
  readonly path: string
  /** The signal the group was given (its parent's group signal, or the root's parent signal). */
  readonly parentSignal: AbortSignal | undefined
  readonly ancestors: readonly GroupRecord[]
  signal?: AbortSignal
  abortedAt?: number
  reason?: unknown
}

function expectedValues(node: TreeNode, path: string): unknown {
  return node.kind === 'leaf' ? valueFor(path) : node.children.map((child, i) => expectedValues(child, `${path}.${i}`))
}

describe('nested groups: properties over random task trees', () => {
  it('an outer failure or abort reaches every inner task with the outer reason, and each level settles after the levels inside it', async () => {
    await fc.assert(
      fc.asyncProperty(
        tree,
        fc.constantFrom<ParentKind>('none', 'controller'),
        abortTiming,
        async (root, parentKind, abortAt) => {
          const recorder = new Recorder()
          const problems: string[] = []
          const parent = makeParent(parentKind, recorder.clock)
          const groups: GroupRecord[] = []
          // Which group each task belongs to, and for tasks that run a group, that group.
          const taskGroup = new Map<string, GroupRecord>()
          const innerGroup = new Map<string, GroupRecord>()
          const leafChecks: Array<() => void> = []

          const runGroup = (
            node: TreeNode & { kind: 'group' },
            path: string,
            signal: AbortSignal | undefined,
            ancestors: readonly GroupRecord[],
          ): { record: GroupRecord; promise: Promise<unknown[]> } => {
            const record: GroupRecord = { path, parentSignal: signal, ancestors }
            groups.push(record)
            const lineage = [...ancestors, record]
            const tasks = node.children.map((child, index): Task<unknown> => {
              const id = `${path}.${index}`
              return (groupSignal) => {
                if (record.signal === undefined) {
                  record.signal = groupSignal
                  groupSignal.addEventListener(
                    'abort',
                    () => {
                      record.abortedAt = recorder.clock.tick()
                      record.reason = groupSignal.reason
                    },
                    { once: true },
                  )
                }
                if (groupSignal !== record.signal) problems.push(`task ${id} got a signal other than its group's`)
                const anyAborted = lineage.some((group) => group.signal?.aborted) || parent.signal?.aborted === true
                recorder.start(id, groupSignal, anyAborted)
                taskGroup.set(id, record)
                if (child.kind === 'leaf') {
                  // When the leaf settles, an aborted ancestor means its own signal has aborted too.
                  const check = () => {
                    const ancestorAborted = lineage.some((group) => group.signal?.aborted)
                    if (ancestorAborted && !groupSignal.aborted)
                      problems.push(`leaf ${id}: an ancestor aborted, not it`)
                  }
                  const result = body(child.spec, id, groupSignal, recorder)
                  if (result instanceof Promise) result.then(check, check)
                  else leafChecks.push(check)
                  return result
                }
                const inner = runGroup(child, id, groupSignal, lineage)
                innerGroup.set(id, inner.record)
                return recorder.observe(id, inner.promise, groupSignal)
              }
            })
            return { record, promise: all(tasks, { signal, limit: node.limit }) }
          }

          if (abortAt === 'before') parent.abort()
          const run = runGroup(root as TreeNode & { kind: 'group' }, 'root', parent.signal, [])
          parent.groupDone = () => run.record.signal?.aborted === true
          const aborting = scheduleAbort(parent, abortAt)
          const outcome = await settleWithin(run.promise, recorder.clock)
          await aborting

          expect(outcome.status).not.toBe('pending')
          const settledAt = settledSeq(outcome)
          for (const check of leafChecks) check()
          expect(problems).toEqual([])
          for (const [id, started] of recorder.started) {
            expect(started.abortedAtStart, `task ${id} started after an ancestor aborted`).toBe(false)
            const settled = recorder.settled.get(id)
            expect(settled, `task ${id} never settled`).toBeDefined()
            expect(settled?.seq).toBeLessThan(settledAt)
          }
          // Each level settles after everything started inside it.
          for (const [id, inner] of innerGroup) {
            const outer = recorder.settled.get(id)?.seq ?? Number.NEGATIVE_INFINITY
            for (const [innerId, group] of taskGroup) {
              if (group !== inner && !group.ancestors.includes(inner)) continue
              expect(recorder.settled.get(innerId)?.seq, `${innerId} settled after ${id}`).toBeLessThan(outer)
            }
          }
          // A group aborted by its parent carries the parent's reason, identical.
          for (const group of groups) {
            if (group.abortedAt === undefined) continue
            const above = group.ancestors[group.ancestors.length - 1]
            const parentAbortedAt = above === undefined ? parent.abortedAt : above.abortedAt
            const parentReason = above === undefined ? parent.reason : above.reason
            if (parentAbortedAt !== undefined && parentAbortedAt < group.abortedAt) {
              expect(group.reason, `group ${group.path} aborted with its parent's reason`).toBe(parentReason)
            }
          }
          // The tree's result: the nested values, or a failure that some task actually had.
          const failures = recorder.failures()
          const parentFirst = parent.abortedAt !== undefined && parent.abortedAt < settledAt && !parent.groupDoneAtAbort
          if (outcome.status === 'fulfilled') {
            expect(failures).toHaveLength(0)
            expect(parentFirst).toBe(false)
            expect(outcome.value).toEqual(expectedValues(root, 'root'))
          } else if (outcome.status === 'rejected') {
            const known = [...failures.map((failure) => failure.value), parent.reason]
            expect(known).toContain(outcome.reason)
            expect(failures.length > 0 || parentFirst).toBe(true)
          }
          if (parent.signal !== undefined) expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0)
        },
      ),
      {
        numRuns: 200,
        examples: [
          [
            {
              kind: 'group',
              limit: 2,
              children: [
                { kind: 'leaf', spec: { outcome: 'reject', timing: { kind: 'timeout', ms: 1 }, listens: false } },
                {
                  kind: 'group',
                  limit: 1,
                  children: [
                    { kind: 'leaf', spec: { outcome: 'resolve', timing: { kind: 'timeout', ms: 3 }, listens: true } },
                    { kind: 'leaf', spec: { outcome: 'resolve', timing: { kind: 'sync' }, listens: false } },
                  ],
                },
              ],
            },
            'none',
            'sync',
          ],
          [
            {
              kind: 'group',
              limit: Number.POSITIVE_INFINITY,
              children: [
                {
                  kind: 'group',
                  limit: 1,
                  children: [
                    { kind: 'leaf', spec: { outcome: 'resolve', timing: { kind: 'sync' }, listens: false } },
                    { kind: 'leaf', spec: { outcome: 'resolve', timing: { kind: 'sync' }, listens: false } },
                  ],
                },
              ],
            },
            'none',
            'before',
          ],
        ],
      },
    )
  })
})

/** One run() call of the pool scenario. */
interface CallSpec {
  /** Wait before making the call: none (same tick as the previous call) or some timing. */
  readonly gap: Timing | null
  readonly task: TaskSpec
  /** The caller whose signal is passed, if any. */
  readonly caller: number | undefined
}

const callSpec: fc.Arbitrary<CallSpec> = fc.record({
  // Calls are made between turns of the event loop, never in the middle of the pool's microtasks.
  gap: fc.oneof(
    { arbitrary: fc.constant(null), weight: 4 },
    { arbitrary: fc.constant({ kind: 'immediate' as const }), weight: 1 },
    { arbitrary: fc.record({ kind: fc.constant('timeout' as const), ms: fc.integer({ min: 0, max: 2 }) }), weight: 1 },
  ),
  // Pool tasks mostly take a few milliseconds, so that callers wait in the queue when they abort.
  task: fc.record({
    outcome: taskSpec.map((spec) => spec.outcome),
    timing: fc.oneof(
      { arbitrary: timing, weight: 1 },
      {
        arbitrary: fc.record({ kind: fc.constant('timeout' as const), ms: fc.integer({ min: 1, max: 4 }) }),
        weight: 3,
      },
    ),
    listens: fc.boolean(),
  }),
  caller: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined, freq: 4 }),
})

const poolScenario = fc.record({
  concurrency: fc.integer({ min: 1, max: 4 }),
  maxQueue: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constant(Number.POSITIVE_INFINITY)),
  callerKinds: fc.array(fc.constantFrom('controller' as const, 'scope' as const), { minLength: 3, maxLength: 3 }),
  calls: fc.array(callSpec, { minLength: 1, maxLength: 12 }),
  aborts: fc.array(
    fc.record({
      caller: fc.integer({ min: 0, max: 2 }),
      at: fc.oneof(
        { arbitrary: fc.constant('before' as const), weight: 1 },
        { arbitrary: fc.constant('immediate' as const), weight: 2 },
        { arbitrary: fc.integer({ min: 0, max: 8 }), weight: 6 },
      ),
    }),
    { minLength: 1, maxLength: 3 },
  ),
})

interface Caller {
  readonly signal: AbortSignal
  readonly reason: Error
  readonly scope: Scope | undefined
  abortedAt: number | undefined
  abort(): void
}

interface CallState {
  readonly index: number
  readonly caller: Caller | undefined
  readonly status: 'immediate' | 'queued' | 'overloaded' | 'refused'
  /** Left the queue because its caller aborted. */
  dropped: boolean
  outcome?: { ok: boolean; value: unknown }
}

describe('createPool(): properties over random calls and caller aborts', () => {
  it('never runs more than `concurrency`, drops queued callers that abort, settles every call and cleans up', async () => {
    await fc.assert(
      fc.asyncProperty(poolScenario, async (scenario) => {
        const { concurrency, maxQueue } = scenario
        const recorder = new Recorder()
        const problems: string[] = []
        const pool = createPool({ concurrency, maxQueue })
        const states: CallState[] = []
        const callers: Caller[] = scenario.callerKinds.map((kind, i) => {
          const reason = new Error(`caller ${i} left`)
          const scope = kind === 'scope' ? createScope() : undefined
          const controller = kind === 'controller' ? new AbortController() : undefined
          const caller: Caller = {
            signal: scope?.signal ?? (controller as AbortController).signal,
            reason,
            scope,
            abortedAt: undefined,
            abort() {
              if (caller.abortedAt !== undefined) return
              caller.abortedAt = recorder.clock.tick()
              // Queued calls of this caller leave the queue at once: `queued` drops synchronously.
              const waiting = states.filter(
                (state) =>
                  state.caller === caller &&
                  state.status === 'queued' &&
                  !state.dropped &&
                  !recorder.started.has(String(state.index)),
              )
              for (const state of waiting) state.dropped = true
              const queuedBefore = pool.queued
              if (scope !== undefined) scope.cancel(reason)
              else controller?.abort(reason)
              if (pool.queued !== queuedBefore - waiting.length) {
                problems.push(
                  `caller ${i} aborted: queued went ${queuedBefore} -> ${pool.queued}, not -${waiting.length}`,
                )
              }
            },
          }
          return caller
        })

        for (const { caller, at } of scenario.aborts) if (at === 'before') callers[caller]?.abort()
        const aborting = Promise.all(
          scenario.aborts.map(({ caller, at }) =>
            at === 'before' ? undefined : elapseUntil(at).then(() => callers[caller]?.abort()),
          ),
        )
        const results: Array<Promise<Outcome<unknown>>> = []
        for (const [index, call] of scenario.calls.entries()) {
          if (call.gap !== null) await elapse(call.gap)
          const id = String(index)
          const caller = call.caller === undefined ? undefined : callers[call.caller]
          const before = { active: pool.active, queued: pool.queued }
          const callerAborted = caller?.signal.aborted === true
          const promise = pool.run(
            (signal) => {
              if (caller !== undefined && signal !== caller.signal) problems.push(`call ${id} got another signal`)
              if (caller === undefined && signal.aborted) problems.push(`call ${id} got an aborted signal`)
              if (pool.active > concurrency) problems.push(`call ${id} started with ${pool.active} active`)
              recorder.start(id, signal)
              return body(call.task, id, signal, recorder)
            },
            caller === undefined ? undefined : { signal: caller.signal },
          )
          let status: CallState['status']
          if (callerAborted) status = 'refused'
          else if (recorder.started.has(id)) status = 'immediate'
          else if (pool.queued === before.queued + 1) status = 'queued'
          else status = 'overloaded'
          const state: CallState = { index, caller, status, dropped: false }
          states.push(state)
          // A call starts at once exactly when a slot is free, and is shed exactly when the queue is full.
          if (status === 'immediate') expect(before.active).toBeLessThan(concurrency)
          if (status === 'queued') {
            expect(before.active).toBe(concurrency)
            expect(before.queued).toBeLessThan(maxQueue)
          }
          if (status === 'overloaded') {
            expect(before.active).toBe(concurrency)
            expect(before.queued).toBe(maxQueue)
          }
          if (status === 'refused') expect(recorder.started.has(id)).toBe(false)
          expect(pool.active).toBeLessThanOrEqual(concurrency)
          expect(pool.queued).toBeLessThanOrEqual(maxQueue)
          results.push(
            settleWithin(promise, recorder.clock).then((outcome) => {
              if (outcome.status === 'fulfilled') state.outcome = { ok: true, value: outcome.value }
              if (outcome.status === 'rejected') state.outcome = { ok: false, value: outcome.reason }
              return outcome
            }),
          )
        }
        const outcomes = await Promise.all(results)
        await aborting

        for (const outcome of outcomes) expect(outcome.status).not.toBe('pending')
        expect(problems).toEqual([])
        expect(recorder.maxRunning).toBeLessThanOrEqual(concurrency)
        for (const state of states) {
          const id = String(state.index)
          const started = recorder.started.get(id)
          const caller = state.caller
          if (state.status === 'refused' || state.dropped) {
            // A caller that left before its task started: the task never starts, the call rejects with its reason.
            expect(started, `call ${id} started after its caller aborted`).toBeUndefined()
            expect(state.outcome?.ok).toBe(false)
            expect(state.outcome?.value).toBe(caller?.reason)
          } else if (state.status === 'overloaded') {
            expect(started).toBeUndefined()
            expect(state.outcome?.ok).toBe(false)
            expect(isPoolOverloaded(state.outcome?.value)).toBe(true)
          } else {
            // Everything else starts (FIFO, below), before its caller aborted, and settles as its task did.
            expect(started, `call ${id} never started`).toBeDefined()
            if (started !== undefined && caller?.abortedAt !== undefined) {
              expect(started.seq).toBeLessThan(caller.abortedAt)
            }
            const settled = recorder.settled.get(id)
            expect(state.outcome).toEqual({ ok: settled?.ok, value: settled?.value })
            expect(state.outcome?.value).toBe(settled?.value)
          }
        }
        // FIFO: calls start in the order they were made.
        const startOrder = states
          .filter((state) => recorder.started.has(String(state.index)))
          .map((state) => recorder.started.get(String(state.index))?.seq as number)
        expect(startOrder).toEqual([...startOrder].sort((a, b) => a - b))

        expect(pool.active).toBe(0)
        expect(pool.queued).toBe(0)
        for (const caller of callers) {
          expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0)
          caller.scope?.cancel()
        }
      }),
      { numRuns: 300 },
    )
  })
})

/** One scope of a random tree, created in order: a root, or a child of an earlier scope. */
interface ScopeSpec {
  /** -1 for a new root; otherwise picks an earlier scope (modulo the number created so far). */
  readonly parent: number
  readonly how: 'child' | 'createScope'
  readonly timeout: number | undefined
  /** An extra signal: an outside AbortController, or another scope's signal (a second parent). */
  readonly extra:
    | { readonly kind: 'external'; readonly index: number }
    | { readonly kind: 'scope'; readonly pick: number }
    | undefined
}

const scopeSpec: fc.Arbitrary<ScopeSpec> = fc.record({
  parent: fc.integer({ min: -1, max: 20 }),
  how: fc.constantFrom('child' as const, 'createScope' as const),
  timeout: fc.option(fc.integer({ min: 0, max: 20 }), { nil: undefined }),
  extra: fc.option(
    fc.oneof(
      fc.record({ kind: fc.constant('external' as const), index: fc.integer({ min: 0, max: 1 }) }),
      fc.record({ kind: fc.constant('scope' as const), pick: fc.nat(20) }),
    ),
    { nil: undefined, freq: 3 },
  ),
})

const scopeEvent = fc.record({
  target: fc.nat(20),
  at: fc.oneof(fc.constant('immediate' as const), fc.integer({ min: 0, max: 20 })),
  what: fc.constantFrom('cancel' as const, 'cancel with a reason' as const, 'abort outside signal' as const),
})

interface ScopeNode {
  readonly scope: Scope
  readonly parent: ScopeNode | undefined
  readonly second: ScopeNode | undefined
  readonly external: number | undefined
  /** Whether a deadline reason reaching this scope can only come from its own line of deadlines. */
  readonly ownLineOnly: boolean
  abortedAt?: number
  abortedAtMs?: number
  deadlineAtAbort?: number | undefined
}

describe('scopes: properties over random trees, timeouts and cancellations', () => {
  it("bound children's deadlines by their parent's, pass a parent's abort reason to every descendant, and leave no listeners", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(scopeSpec, { minLength: 1, maxLength: 10 }),
        fc.array(scopeEvent, { maxLength: 6 }),
        async (specs, events) => {
          const clock = new Clock()
          const externals = [0, 1].map((i) => ({
            controller: new AbortController(),
            reason: new Error(`outside signal ${i} aborted`),
            abortedAt: undefined as number | undefined,
          }))
          const nodes: ScopeNode[] = []

          const watch = (node: ScopeNode) => {
            const signal = node.scope.signal
            const record = () => {
              node.abortedAt = clock.tick()
              node.abortedAtMs = Date.now()
              node.deadlineAtAbort = node.scope.deadline
            }
            if (signal.aborted) record()
            else signal.addEventListener('abort', record, { once: true })
          }

          const create = (spec: ScopeSpec): ScopeNode => {
            const parent = spec.parent < 0 || nodes.length === 0 ? undefined : nodes[spec.parent % nodes.length]
            const second =
              spec.extra?.kind === 'scope' && nodes.length > 0 ? nodes[spec.extra.pick % nodes.length] : undefined
            const external = spec.extra?.kind === 'external' ? spec.extra.index : undefined
            const extraSignal =
              second !== undefined
                ? second.scope.signal
                : external === undefined
                  ? undefined
                  : externals[external]?.controller.signal
            let scope: Scope
            let node: ScopeNode
            if (parent === undefined) {
              scope = createScope({ timeout: spec.timeout, signal: extraSignal })
              // A root created from another scope's signal is that scope's child.
              node = {
                scope,
                parent: second,
                second: undefined,
                external,
                ownLineOnly: second === undefined || second.ownLineOnly,
              }
            } else if (spec.how === 'child' || extraSignal !== undefined) {
              scope = parent.scope.child({ timeout: spec.timeout, signal: extraSignal })
              const same = second === parent
              node = {
                scope,
                parent,
                second: same ? undefined : second,
                external,
                ownLineOnly: parent.ownLineOnly && (second === undefined || same),
              }
            } else {
              scope = createScope({ timeout: spec.timeout, signal: parent.scope.signal })
              node = { scope, parent, second: undefined, external, ownLineOnly: parent.ownLineOnly }
            }
            watch(node)
            nodes.push(node)
            return node
          }

          const checkInvariants = () => {
            for (const node of nodes) {
              const { scope } = node
              // A child's deadline is never later than its parent's.
              const parentDeadline = node.parent?.scope.deadline
              if (parentDeadline !== undefined) {
                const where = `scope ${nodes.indexOf(node)} (aborted: ${scope.signal.aborted}): deadline vs its parent's`
                expect(scope.deadline, where).toBeDefined()
                expect(scope.deadline as number, where).toBeLessThanOrEqual(parentDeadline)
              }
              // A parent's abort reaches every descendant, with the identical reason: the reason of
              // whichever of its parents (scopes or outside signals) had aborted when it did.
              const sources: Array<{ signal: AbortSignal; reason: unknown; at: number | undefined }> = []
              for (const above of [node.parent, node.second]) {
                if (above !== undefined) {
                  sources.push({ signal: above.scope.signal, reason: above.scope.signal.reason, at: above.abortedAt })
                }
              }
              const external = node.external === undefined ? undefined : externals[node.external]
              if (external !== undefined) {
                sources.push({ signal: external.controller.signal, reason: external.reason, at: external.abortedAt })
              }
              if (sources.some((source) => source.signal.aborted)) expect(scope.signal.aborted).toBe(true)
              const abortedBefore = sources.filter(
                (source) => source.at !== undefined && node.abortedAt !== undefined && source.at < node.abortedAt,
              )
              if (abortedBefore.length > 0) {
                expect(abortedBefore.map((source) => source.reason)).toContain(scope.signal.reason)
              }
              // remaining(): 0 once aborted, else what is left before the deadline.
              const before = Date.now()
              const remaining = scope.remaining()
              const after = Date.now()
              const deadline = scope.deadline
              if (scope.signal.aborted) expect(remaining).toBe(0)
              else if (deadline === undefined) expect(remaining).toBe(Number.POSITIVE_INFINITY)
              else {
                expect(remaining).toBeLessThanOrEqual(Math.max(deadline - before, 0))
                expect(remaining).toBeGreaterThanOrEqual(Math.max(deadline - after, 0))
              }
              // A deadline never fires early.
              if (node.ownLineOnly && isDeadlineExceeded(scope.signal.reason)) {
                const where = `scope ${nodes.indexOf(node)}: aborted for its deadline at ${node.abortedAtMs}`
                expect(node.deadlineAtAbort, where).toBeDefined()
                expect(node.abortedAtMs as number, where).toBeGreaterThanOrEqual(node.deadlineAtAbort as number)
              }
            }
          }

          for (const spec of specs) create(spec)
          checkInvariants()

          await Promise.all(
            events.map(async (event) => {
              await elapseUntil(event.at)
              if (event.what === 'abort outside signal') {
                const external = externals[event.target % externals.length]
                if (external !== undefined && external.abortedAt === undefined) {
                  external.abortedAt = clock.tick()
                  external.controller.abort(external.reason)
                }
              } else {
                const node = nodes[event.target % nodes.length] as ScopeNode
                const wasAborted = node.scope.signal.aborted
                const reasonBefore = node.scope.signal.reason
                node.scope.cancel(event.what === 'cancel' ? undefined : new Error('cancelled by the test'))
                expect(node.scope.signal.aborted).toBe(true)
                // The first cancellation wins.
                if (wasAborted) expect(node.scope.signal.reason).toBe(reasonBefore)
              }
              checkInvariants()
            }),
          )

          // Every deadline that has passed has fired.
          const last = Math.max(0, ...nodes.map((node) => node.scope.deadline ?? 0))
          await sleep(Math.max(0, last - Date.now()) + 2)
          for (let attempt = 0; attempt < 100; attempt++) {
            const now = Date.now()
            const late = nodes.filter((node) => !node.scope.signal.aborted && (node.scope.deadline ?? now + 1) <= now)
            if (late.length === 0) break
            await sleep(5)
          }
          for (const node of nodes) {
            const deadline = node.scope.deadline
            if (deadline !== undefined && deadline < Date.now()) expect(node.scope.signal.aborted).toBe(true)
          }
          checkInvariants()

          // A child made now of an aborted scope is born aborted, with the same reason.
          for (const node of nodes) {
            if (!node.scope.signal.aborted) continue
            const late = node.scope.child()
            expect(late.signal.aborted).toBe(true)
            expect(late.signal.reason).toBe(node.scope.signal.reason)
            expect(late.remaining()).toBe(0)
          }

          for (const node of nodes) node.scope.cancel()
          checkInvariants()
          // Nothing is left listening: not on the outside signals, not on any scope's signal.
          for (const { controller } of externals) expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
          for (const node of nodes) expect(getEventListeners(node.scope.signal, 'abort')).toHaveLength(0)
        },
      ),
      {
        numRuns: 150,
        examples: [
          [
            [
              { parent: -1, how: 'child', timeout: 2, extra: undefined },
              { parent: 0, how: 'child', timeout: undefined, extra: undefined },
              { parent: 1, how: 'createScope', timeout: 15, extra: undefined },
            ],
            [],
          ],
        ],
      },
    )
  })
})
