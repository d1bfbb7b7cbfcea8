import diagnostics from 'node:diagnostics_channel'
import { lingeringChannel, type TaskMessage } from './diagnostics.js'
import type { Scope } from './scope.js'
import { shared } from './shared.js'

/**
 * Process-wide bookkeeping: cumulative counters, the requests in flight, and the tasks that
 * outlived their scope. Everything here is touched only on state changes (a request starts or
 * ends, a task lingers or settles late), never per await.
 */

/** Cumulative counts since the process started. */
export interface Counters {
  /** Requests that went through a tether adapter. */
  requests: number
  /** Requests whose deadline passed before they finished. */
  deadlineExceeded: number
  /** Requests whose client hung up before the response was finished. */
  clientClosed: number
  /** Writes, sends and throws swallowed after a response was answered or cut by tether. */
  lateWrites: number
  /** Tasks still pending when their scope ended. */
  lingering: number
  /** Lingering tasks still pending `leakAfter` ms after their scope ended. */
  leaked: number
  /** Pool tasks refused because the queue was full. */
  shed: number
  /** Incoming deadline headers that were malformed and ignored. */
  ignoredDeadlineHeaders: number
  /** Requests refused with 503 because their server was shutting down. */
  refusedDuringShutdown: number
  /** In-flight requests aborted because the shutdown grace period ran out. */
  abortedByShutdown: number
  /** Outbound calls refused because their origin's wait queue was full (`maxQueue`). */
  outboundShed: number
  /** Connections cut because a finished response was not delivered within `writeTimeout`. */
  writeTimeouts: number
  /** Connections cut because their client read the response slower than `minResponseRate`. */
  slowReaders: number
  /** Idle keep-alive connections closed because the server held more than `maxIdleConnections`. */
  idleEvicted: number
  /** Worker-pool tasks refused (full queue, or a deadline that cannot cover the work ahead). */
  workerShed: number
  /** Worker-pool tasks stopped because their caller's signal aborted: a running one's thread was stopped. */
  workerAborted: number
}

/** Where a leak report goes: anything with a pino- or console-style `warn`. */
export interface Logger {
  warn(object: object, message?: string): void
}

/** How tasks of a scope are watched once they outlive it. */
export interface TrackingPolicy {
  /** Milliseconds after its scope ended that a still-pending task is reported as leaked. */
  readonly leakAfter: number
  /** Capture where each task was started (costs a stack trace per task). */
  readonly captureStacks: boolean
}

/** What the registry needs to know about a request, provided by the request binding. */
export interface RequestInfo {
  readonly method: string
  readonly startedAt: number
  readonly policy: TrackingPolicy
  /** The route pattern, when the framework knows it. */
  route(): string | undefined
  /** Milliseconds left before the request's deadline (`Infinity` without one). */
  remaining(): number
  /** The logger leak reports of this request's tasks go to. */
  logger(): Logger | undefined
  /** A task of this request is pending at its end: keep what a report needs while it can. */
  noteLingering?(): void
  /** The header `scopedFetch` sends the remaining budget in, or `undefined` to send none. */
  readonly deadlineHeader: string | undefined
  /** The status a missed deadline of this request is answered with (504 when absent). */
  readonly deadlineStatus?: number
  /**
   * The deadline of `scope` has passed: the reason to end it with instead of a
   * `DeadlineExceededError` when the request is finished already (its handler ended the
   * response, which is still being delivered); `undefined` otherwise.
   */
  finishedReason?(scope: Scope): unknown
}

/** How a tracked task was started: by a TaskGroup/all/allSettled, a pool, or `scope.track()`. */
export type TaskKind = 'group' | 'pool' | 'track'

/**
 * One unit of work registered with a scope. While its scope lives it sits in the scope's list;
 * once the scope has ended and the task is still pending it is *lingering*.
 *
 * @internal
 */
export class TrackedTask {
  /** Neighbours in the owning scope's list (intrusive, so linking allocates nothing). */
  prev: TrackedTask | undefined = undefined
  next: TrackedTask | undefined = undefined
  /** The scope whose list holds this task, while it holds it. */
  owner: object | undefined = undefined
  /** When the scope ended with this task pending; 0 until then. */
  endedAt = 0
  request: RequestInfo | undefined = undefined
  policy: TrackingPolicy = defaultPolicy
  leaked = false
  settled = false
  /** Listed as lingering (from its scope's end until it settles or is no longer listed). */
  lingers = false
  /** Where it came from, kept once it has leaked (its request is let go then). */
  origin: { readonly method: string | null; readonly route: string | null } | undefined = undefined
  /** How many tasks this record stands for: a group registers one record for all its tasks. */
  count = 1

  constructor(
    readonly kind: TaskKind,
    readonly startedAt: number,
    readonly stack: string | undefined,
  ) {}
}

/** Tracking policy for scopes that do not belong to a request. */
export const defaultPolicy: TrackingPolicy = Object.freeze({ leakAfter: 10_000, captureStacks: false })

/**
 * A request in the in-flight list. The list is intrusive (the request carries its own links), so
 * entering and leaving it allocates nothing and hashes nothing: it happens twice per request.
 *
 * @internal
 */
export interface InflightEntry extends RequestInfo {
  inflightPrev: InflightEntry | undefined
  inflightNext: InflightEntry | undefined
  /** The server the request arrived on (none for injected requests). */
  readonly server: object | undefined
  /** The request's scope. */
  readonly scope: Scope
  /** Whether the handler has ended the response (see `handlerEnded`): it is no longer in flight. */
  ended?(): boolean
}

interface RegistryState {
  readonly counters: Counters
  inflightHead: InflightEntry | undefined
  /** Lingering tasks not reported as leaked yet: the sweep walks these. */
  readonly lingering: Set<TrackedTask>
  /** Leaked tasks, the latest {@link MAX_LEAKED_KEPT}, for inspect(). */
  leaked: Set<TrackedTask>
  readonly settledObservers: Set<(pastEndMs: number) => void>
  /** Tasks whose scope just ended, checked once the abort has propagated. */
  ending: TrackedTask[]
  endingCheck: NodeJS.Immediate | undefined
  sweepTimer: NodeJS.Timeout | undefined
  sweepAt: number
}

// Kept on globalThis so that two copies of this package (a duplicated install) still agree on what
// is in flight and what is lingering: a test's assertNoLingering must see every request.
const state = shared<RegistryState>('tether.registry', () => ({
  counters: {
    requests: 0,
    deadlineExceeded: 0,
    clientClosed: 0,
    lateWrites: 0,
    lingering: 0,
    leaked: 0,
    shed: 0,
    ignoredDeadlineHeaders: 0,
    refusedDuringShutdown: 0,
    abortedByShutdown: 0,
    outboundShed: 0,
    writeTimeouts: 0,
    slowReaders: 0,
    idleEvicted: 0,
    workerShed: 0,
    workerAborted: 0,
  },
  inflightHead: undefined,
  lingering: new Set(),
  leaked: new Set(),
  settledObservers: new Set(),
  ending: [],
  endingCheck: undefined,
  sweepTimer: undefined,
  sweepAt: 0,
}))
// A copy of an older version may have made the counters and the state before this one was loaded.
state.counters.outboundShed ??= 0
state.leaked ??= new Set()
state.counters.workerShed ??= 0
state.counters.workerAborted ??= 0

/** The live counters (mutable: the request binding and the pool increment them). @internal */
export const counters: Counters = state.counters
/** Adds a request to the in-flight list. @internal */
export function addInflight(entry: InflightEntry): void {
  const head = state.inflightHead
  entry.inflightPrev = undefined
  entry.inflightNext = head
  if (head !== undefined) head.inflightPrev = entry
  state.inflightHead = entry
}

/** Removes a request from the in-flight list; removing it twice is harmless. @internal */
export function removeInflight(entry: InflightEntry): void {
  const { inflightPrev: prev, inflightNext: next } = entry
  if (prev !== undefined) prev.inflightNext = next
  else if (state.inflightHead === entry) state.inflightHead = next
  else return // not listed
  if (next !== undefined) next.inflightPrev = prev
  entry.inflightPrev = entry.inflightNext = undefined
}

/** The requests in flight, oldest last. @internal */
export function inflightRequests(): InflightEntry[] {
  const list: InflightEntry[] = []
  for (let entry = state.inflightHead; entry !== undefined; entry = entry.inflightNext) list.push(entry)
  return list
}
/**
 * A task that never settles would otherwise be kept, with its request, for the life of the process,
 * and walked by every sweep and snapshot. Once reported as leaked it is listed among the latest
 * this many, and its request is let go; the cumulative counters still count every one.
 */
const MAX_LEAKED_KEPT = 1_000

/** Lingering tasks as `inspect()` lists them: those not leaked yet, then the latest leaked. @internal */
export function* listedLingering(): Generator<TrackedTask> {
  yield* state.lingering
  yield* state.leaked
}

/** How many lingering tasks are listed (see {@link listedLingering}). @internal */
export function lingeringCount(): number {
  return state.lingering.size + state.leaked.size
}

/**
 * Forgets every lingering and leaked task (they stay in the cumulative counters), for test suites:
 * one leaky test must not fail every test after it.
 *
 * @internal
 */
export function forgetLingering(): void {
  for (const task of listedLingering()) task.lingers = false
  state.lingering.clear()
  state.leaked.clear()
}

/**
 * The diagnostics channel leak reports are published on, each as a `TaskMessage`: the
 * {@link LeakReport} and the scope of the request the task outlived (`requestScope`).
 */
export const LEAK_CHANNEL = 'tether:leak'
const leakChannel = diagnostics.channel(LEAK_CHANNEL)

/** A task that outlived its request by `leakAfter` ms, as published on {@link LEAK_CHANNEL}. */
export interface LeakReport {
  readonly kind: TaskKind
  /** How many tasks are pending: a group is reported once, with the number of its pending tasks. */
  readonly tasks: number
  readonly method: string | null
  readonly route: string | null
  /** Milliseconds since the task started. */
  readonly ageMs: number
  /** Milliseconds since its request (or scope) ended. */
  readonly pastEndMs: number
  /** Where the task was started, when stack capture is on. */
  readonly startedAt: string | null
}

/** Describes a lingering task for a snapshot or a report. @internal */
export function describeTask(task: TrackedTask, now: number): LeakReport {
  const origin = task.origin
  return {
    kind: task.kind,
    tasks: task.count,
    method: origin === undefined ? (task.request?.method ?? null) : origin.method,
    route: origin === undefined ? (task.request?.route() ?? null) : origin.route,
    ageMs: now - task.startedAt,
    pastEndMs: now - task.endedAt,
    startedAt: task.stack ?? null,
  }
}

/** Where a lingering task came from, for a message: `GET /users/:id`, or `(no route)`. @internal */
export function describeOrigin(report: Pick<LeakReport, 'method' | 'route'>): string {
  return report.route === null ? '(no route)' : `${report.method ?? ''} ${report.route}`.trim()
}

/**
 * A scope ended at `now` with this task pending. It becomes *lingering* only if it is still
 * pending once the abort has propagated: a task that stops when told to settles a few microtasks
 * after the abort, and must not be reported. One shared `setImmediate` checks all tasks of all
 * scopes that ended in the same turn of the event loop.
 *
 * @internal
 */
export function scopeEnded(
  task: TrackedTask,
  request: RequestInfo | undefined,
  policy: TrackingPolicy,
  now: number,
): void {
  task.endedAt = now
  task.request = request
  task.policy = policy
  request?.noteLingering?.()
  state.ending.push(task)
  if (state.endingCheck === undefined) {
    state.endingCheck = setImmediate(checkEnding)
    state.endingCheck.unref()
  }
}

function checkEnding(): void {
  state.endingCheck = undefined
  const tasks = state.ending
  state.ending = []
  let earliest = Number.POSITIVE_INFINITY
  for (const task of tasks) {
    if (task.settled) continue
    state.lingering.add(task)
    task.lingers = true
    state.counters.lingering++
    if (lingeringChannel.hasSubscribers) lingeringChannel.publish(taskMessage(task, Date.now()))
    const due = task.endedAt + task.policy.leakAfter
    if (due < earliest) earliest = due
  }
  if (earliest !== Number.POSITIVE_INFINITY) scheduleSweep(earliest)
}

/**
 * A tracked task settled. If it was lingering it leaves the list (the counters keep the history).
 *
 * @internal
 */
export function taskSettled(task: TrackedTask): void {
  task.settled = true
  if (!task.lingers) return
  task.lingers = false
  if (!state.lingering.delete(task)) state.leaked.delete(task)
  if (state.settledObservers.size > 0) {
    const pastEndMs = Date.now() - task.endedAt
    for (const observe of state.settledObservers) observe(pastEndMs)
  }
}

/**
 * Calls `observe` with how long each lingering task ran past its scope's end, when it settles.
 * Returns the function that stops observing.
 *
 * @internal
 */
export function observeLingeringSettled(observe: (pastEndMs: number) => void): () => void {
  state.settledObservers.add(observe)
  return () => state.settledObservers.delete(observe)
}

// Leak detection uses one shared, unref'd timer for all lingering tasks, armed for the earliest
// report due, instead of a timer per task.
const MIN_SWEEP_INTERVAL = 50

function scheduleSweep(at: number): void {
  if (state.sweepTimer !== undefined && state.sweepAt <= at) return
  if (state.sweepTimer !== undefined) clearTimeout(state.sweepTimer)
  state.sweepAt = at
  state.sweepTimer = setTimeout(sweep, Math.max(at - Date.now(), MIN_SWEEP_INTERVAL))
  state.sweepTimer.unref()
}

function sweep(): void {
  state.sweepTimer = undefined
  const now = Date.now()
  let next = Number.POSITIVE_INFINITY
  for (const task of state.lingering) {
    const due = task.endedAt + task.policy.leakAfter
    if (due <= now) reportLeak(task, now)
    else if (due < next) next = due
  }
  if (next !== Number.POSITIVE_INFINITY) scheduleSweep(next)
}

function reportLeak(task: TrackedTask, now: number): void {
  task.leaked = true
  state.counters.leaked++
  const report = describeTask(task, now)
  if (leakChannel.hasSubscribers) leakChannel.publish(taskMessage(task, now, report))
  const logger = task.request?.logger()
  // From now on it is listed among the latest leaked tasks, and its request is let go.
  task.origin = { method: report.method, route: report.route }
  task.request = undefined
  state.lingering.delete(task)
  state.leaked.add(task)
  if (state.leaked.size > MAX_LEAKED_KEPT) {
    const oldest = state.leaked.values().next().value as TrackedTask
    oldest.lingers = false // still pending and counted as leaked, no longer listed
    state.leaked.delete(oldest)
  }
  if (logger !== undefined) {
    try {
      const what = report.kind === 'group' ? `${report.tasks} task(s) of a group` : `a ${report.kind} task`
      logger.warn(
        { tether: report },
        `tether: ${what} started by ${describeOrigin(report)} still pending ${report.pastEndMs} ms after the request ended`,
      )
    } catch {
      // A broken logger must not take the process down from inside a timer.
    }
  }
}

/** What the lingering and leak channels publish: the report, and the request the task outlived. */
function taskMessage(task: TrackedTask, now: number, report = describeTask(task, now)): TaskMessage {
  return { ...report, requestScope: (task.request as { scope?: Scope } | undefined)?.scope }
}

/**
 * Subscribes to leak reports (tasks still pending `leakAfter` ms after their request ended).
 * Each leaked task is reported once. Returns the function that unsubscribes.
 *
 * @example
 * ```ts
 * const stop = onLeak((report) => metrics.leaks.inc({ route: report.route ?? 'none' }))
 * ```
 */
export function onLeak(listener: (report: LeakReport) => void): () => void {
  const handler = (message: unknown) => listener(message as LeakReport)
  diagnostics.subscribe(LEAK_CHANNEL, handler)
  return () => {
    diagnostics.unsubscribe(LEAK_CHANNEL, handler)
  }
}
