import type { DeadlineMessage } from './diagnostics.js'
import { type TrackedTask, taskSettled } from './registry.js'
import type { Scope } from './scope.js'

// The members the rest of the package reaches a scope through (group, pool, request binding),
// keyed by `Symbol.for` so that a scope made by another copy of the package answers to them too.
// Every one of them is reached across copies: the current scope (one AsyncLocalStorage for all
// copies) is often the adapter's copy's while the app's copy runs all(), a pool or scopedFetch,
// which track tasks on it, subscribe to it and read its request and reason; a group under another
// copy's scope holds a scope that copy made (Scope.create goes through the parent's child()) and
// sets its owner and task hold, and aborts it; a shutdown from the app's copy aborts the adapter's
// request scopes; a scope notifies subscribers of another copy through their own links; and a
// scope's signal, passed as an option to another copy, leads back to its scope.

// Tags a scope's signal with its scope, so that a scope's own signal passed back to us as a
// `signal` option is followed through a direct parent→child link rather than an abort listener.
// A symbol property costs a few ns; a WeakMap entry per signal cost ~140 ns on Node 24.
/** @internal */
export const kScopeOfSignal = Symbol.for('tether.scopeOfSignal')
/** @internal */
export type TaggedSignal = AbortSignal & { [kScopeOfSignal]?: Scope }

/** @internal Symbol-keyed members used by the rest of the package (group, pool, request binding). */
export const kTrack = Symbol.for('tether.scope.track')
/** @internal */
export const kUntrack = Symbol.for('tether.scope.untrack')
/** @internal */
export const kTighten = Symbol.for('tether.scope.tighten')
/** @internal */
export const kAbort = Symbol.for('tether.scope.abort')
/** @internal */
export const kRequest = Symbol.for('tether.scope.request')
/** @internal */
export const kIsAborted = Symbol.for('tether.scope.aborted')
/** @internal */
export const kReason = Symbol.for('tether.scope.reason')
/** @internal */
export const kStartSite = Symbol.for('tether.scope.startSite')
/** @internal */
export const kOnAbort = Symbol.for('tether.scope.onAbort')
/**
 * @internal While set, an aborted scope keeps its tasks instead of making them linger: a task group
 * aborted by a failing task is still waiting for its tasks, and what they started is not late yet.
 * Clearing it on an aborted scope makes the tasks still pending linger then.
 */
export const kHoldTasks = Symbol.for('tether.scope.holdTasks')

/** @internal The method an {@link AbortSubscriber} is called through. */
export const kScopeAborted = Symbol.for('tether.scope.aborted.notify')

/** @internal Links of an {@link AbortSubscriber} in its scope's list. */
export const kSiblingPrev = Symbol.for('tether.scope.siblingPrev')
/** @internal */
export const kSiblingNext = Symbol.for('tether.scope.siblingNext')

/**
 * Told when a scope aborts: a child scope, a task group, a queued pool call. Subscribers sit in an
 * intrusive list in the scope (they carry the links), so subscribing allocates nothing, leaving is
 * O(1), and many queued pool calls of one request do not pile abort listeners on its signal.
 *
 * @internal
 */
export interface AbortSubscriber extends AbortOwner {
  [kSiblingPrev]: AbortSubscriber | undefined
  [kSiblingNext]: AbortSubscriber | undefined
}

/** What a scope notifies when it aborts: its subscribers, and its owner (see `kOnAbort`). @internal */
export interface AbortOwner {
  [kScopeAborted](reason: unknown): void
}

/** @internal */
export const kSubscribe = Symbol.for('tether.scope.subscribe')
/** @internal */
export const kUnsubscribe = Symbol.for('tether.scope.unsubscribe')

/**
 * The scope of the request `scope` belongs to: the scope an adapter attached (a child scope, a
 * group's scope or a scope following a request's signal belong to it too); `undefined` for scopes
 * outside any request.
 *
 * @internal
 */
export function requestScopeOf(scope: Scope | undefined): Scope | undefined {
  const request = scope?.[kRequest]
  if (request === undefined) return undefined
  // While the request's own scope is being created (a budget already spent aborts it at once) the
  // request does not hold it yet; it is then the only scope of that request.
  return (request as { scope?: Scope }).scope ?? scope
}

/**
 * The scope behind a signal, when the signal is a scope's own. Lets helpers link to the scope
 * directly instead of adding an abort listener.
 *
 * @internal
 */
export function scopeForSignal(signal: AbortSignal): Scope | undefined {
  return (signal as TaggedSignal)[kScopeOfSignal]
}

/**
 * Marks a tracked task as settled: it leaves its scope's list, or the lingering list.
 *
 * @internal
 */
export function untrack(task: TrackedTask): void {
  const owner = task.owner as Scope | undefined
  if (owner !== undefined) owner[kUntrack](task)
  taskSettled(task)
}

/** The message of a scope's own deadline passing, on `tether:deadline`. @internal */
export function deadlineMessage(scope: Scope, deadline: number): DeadlineMessage {
  return { scope, deadline, requestScope: requestScopeOf(scope) }
}
