import { CanceledError, DeadlineExceededError, withoutStack } from './errors.js'
import type { Scope } from './scope.js'
import { kRequest } from './scope-protocol.js'

/**
 * An abort reason made only when someone looks at it. Requests end by the million with a
 * `CanceledError` nobody reads; building each one would cost more than the rest of the request.
 */
const kLazyReason = Symbol.for('tether.lazyReason')

/** @internal */
export class LazyReason {
  // A brand rather than instanceof: a reason made by another copy of the package is lazy too.
  readonly [kLazyReason] = true
  #value: unknown
  #made = false
  constructor(
    readonly make: (status?: number) => unknown,
    readonly isDeadline = false,
    /** For a deadline: the status of the request the scope belongs to, if it has one. */
    readonly status: number | undefined = undefined,
  ) {}
  get value(): unknown {
    if (!this.#made) {
      this.#value = this.status === undefined ? withoutStack(this.make) : withoutStack(() => this.make(this.status))
      this.#made = true
    }
    return this.#value
  }
}

/** @internal */
export const makeCanceled = () => new CanceledError()
/** @internal */
export const makeDeadlineExceeded = (status?: number) =>
  new DeadlineExceededError(undefined, status === undefined ? undefined : { statusCode: status })

/**
 * A `DeadlineExceededError` for work of `scope` (without a stack: these are made on hot paths),
 * whose `statusCode` is the `status` of the request the scope belongs to. Whichever timer notices
 * a missed deadline first (the request's, an outbound call's, a queue's), an error that escapes
 * the handler is then answered with the status tether's own answer would have had.
 *
 * @internal
 */
export function deadlineExceeded(scope: Scope | undefined, message: string, cause?: unknown): DeadlineExceededError {
  const statusCode = scope?.[kRequest]?.deadlineStatus
  // An absent cause stays absent (`'cause' in error` is false), as with the standard option.
  const options = cause === undefined ? { statusCode } : { cause, statusCode }
  return withoutStack(() => new DeadlineExceededError(message, options))
}

/**
 * Reads a reason that may still be lazy.
 *
 * @internal
 */
export function reasonValue(reason: unknown): unknown {
  return isLazy(reason) ? reason.value : reason
}

function isLazy(reason: unknown): reason is LazyReason {
  return typeof reason === 'object' && reason !== null && (reason as LazyReason)[kLazyReason] === true
}

/**
 * Whether an abort reason is a passed deadline, without building it.
 *
 * @internal
 */
export function isDeadlineReason(reason: unknown): boolean {
  if (isLazy(reason)) return reason.isDeadline
  return (
    typeof reason === 'object' && reason !== null && (reason as { code?: unknown }).code === 'TETHER_DEADLINE_EXCEEDED'
  )
}

/**
 * An abort reason for one scope (and the children it reaches), built the first time someone reads
 * it. For the reasons every request ends with ("response finished"): most are never read, so the
 * error is never built; one that is read is the scope's own, an ordinary extensible error. It is
 * never shared or frozen, because consumers decorate the reason they receive (undici's `fetch`
 * defines `stack` on it, and throws a TypeError on an object that is not extensible).
 *
 * @internal
 */
export function lazyReason(make: () => object): unknown {
  return new LazyReason(make)
}
