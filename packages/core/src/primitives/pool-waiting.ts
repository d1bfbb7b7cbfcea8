import type { Scope } from './scope.js'
import { type AbortSubscriber, kScopeAborted, kSiblingNext, kSiblingPrev, kUnsubscribe } from './scope-protocol.js'
import type { Task } from './task.js'

/**
 * Handed to tasks whose caller has no signal and no scope: it never aborts.
 *
 * @internal
 */
export const neverAborted: AbortSignal = new AbortController().signal

/**
 * @internal A caller waiting for a slot. It sits in an intrusive list, so leaving the queue from the middle
 * on abort is O(1), and it is its own abort handler: subscribed to the caller's scope when the
 * signal is a scope's (no event listener, so a thousand queued calls of one request add nothing
 * to its signal), or added as an EventTarget listener object (`handleEvent`) otherwise.
 */
export class Waiting<T> implements AbortSubscriber {
  [kSiblingPrev]: AbortSubscriber | undefined = undefined;
  [kSiblingNext]: AbortSubscriber | undefined = undefined
  prev: Waiting<unknown> | undefined = undefined
  next: Waiting<unknown> | undefined = undefined
  /** Starts the task; cleared once the caller has left the queue. */
  start: (() => void) | undefined = undefined
  /** When it joined the queue (`performance.now()`), or 0 for a caller the pool does not judge. */
  enqueuedAt = 0

  constructor(
    readonly pool: { drop(waiting: Waiting<unknown>): void },
    readonly task: Task<T>,
    readonly signal: AbortSignal,
    readonly scope: Scope | undefined,
    /** The caller's deadline (epoch ms), or `Infinity` when it has none or `deadlineAware` is off. */
    readonly deadline: number,
    readonly resolve: (value: T) => void,
    readonly reject: (reason: unknown) => void,
  ) {}

  handleEvent(): void {
    this.pool.drop(this as Waiting<unknown>)
  }

  [kScopeAborted](): void {
    this.pool.drop(this as Waiting<unknown>)
  }

  /** Stops listening for the caller's abort. */
  unsubscribe(): void {
    if (this.scope !== undefined) this.scope[kUnsubscribe](this)
    else if (this.signal !== neverAborted) this.signal.removeEventListener('abort', this)
  }
}
