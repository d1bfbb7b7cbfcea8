import diagnostics from 'node:diagnostics_channel'
import type { PoolOverloadedError } from './errors.js'
import type { LeakReport } from './registry.js'
import type { Scope } from './scope.js'

/**
 * Lifecycle events on `node:diagnostics_channel`, the convention Node's http, undici and Fastify
 * publish on and what OpenTelemetry and APM agents subscribe to.
 *
 * Every channel object is made once, here, and every publish is guarded by `hasSubscribers` at its
 * call site: with no subscriber, an event costs one property read and builds no message. Channels
 * are process-wide by name, so two copies of this package publish on the same channels.
 *
 * The leak channel (`tether:leak`) predates the others and lives with the leak report in
 * registry.ts. The request's own channels (start, end) belong to the request layer:
 * request/request-diagnostics.ts.
 */

/** A scope's own deadline passed (a request's, a route's, a child scope's): {@link DeadlineMessage}. */
export const DEADLINE_CHANNEL = 'tether:deadline'
/** A pool, a worker pool or an outbound queue refused a call: {@link ShedMessage}. */
export const SHED_CHANNEL = 'tether:shed'
/** A task was still pending once its request's end had propagated: {@link TaskMessage}. */
export const LINGERING_CHANNEL = 'tether:task:lingering'

/** Published on {@link DEADLINE_CHANNEL} when a scope's own deadline timer fires. */
export interface DeadlineMessage {
  /** The scope whose deadline passed (its children abort with it, without events of their own). */
  readonly scope: Scope
  /** The deadline that passed, epoch ms. */
  readonly deadline: number
  /** The scope of the request `scope` belongs to (itself for a request's own deadline), or `undefined`. */
  readonly requestScope: Scope | undefined
}

/** Which queue refused a call, on {@link SHED_CHANNEL}. */
export type ShedSource = 'pool' | 'worker-pool' | 'outbound'

/** Published on {@link SHED_CHANNEL}, synchronously, when a call is refused. */
export interface ShedMessage {
  readonly source: ShedSource
  /** What the caller rejects with (`isPoolOverloaded(error)` is true); its message says why. */
  readonly error: PoolOverloadedError
  /** The caller's scope, or `undefined` for a caller outside any scope. */
  readonly scope: Scope | undefined
  /** The scope of the request the caller belongs to, or `undefined`. */
  readonly requestScope: Scope | undefined
  /** For `outbound`: the origin whose queue was full. */
  readonly origin?: string
}

/**
 * Published on {@link LINGERING_CHANNEL} (and, once `leakAfter` has passed, on `tether:leak`):
 * the task's report, and the request it outlived.
 */
export interface TaskMessage extends LeakReport {
  /** The scope of the request the task belongs to, or `undefined` for a scope outside a request. */
  readonly requestScope: Scope | undefined
}

/** @internal */
export const deadlineChannel = diagnostics.channel(DEADLINE_CHANNEL)
/** @internal */
export const shedChannel = diagnostics.channel(SHED_CHANNEL)
/** @internal */
export const lingeringChannel = diagnostics.channel(LINGERING_CHANNEL)
