import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks'
import { Scope } from './scope.js'
import { kScopeOfSignal, type TaggedSignal } from './scope-protocol.js'
import { shared } from './shared.js'
import { checkDuration, checkOptionsObject, checkSignal, checkTimestamp } from './validate.js'

/** Options of {@link createScope} and {@link Scope.child}. All optional. */
export interface ScopeOptions {
  /**
   * Milliseconds from now until the deadline. A finite number ≥ 0.
   * @default undefined (no deadline of its own)
   */
  readonly timeout?: number
  /**
   * Absolute deadline, epoch milliseconds. With `timeout` too, the earlier one wins.
   * @default undefined
   */
  readonly deadline?: number
  /**
   * A parent signal: when it aborts, the scope aborts with the same reason. A signal that is
   * already aborted aborts the scope at once.
   * @default undefined
   */
  readonly signal?: AbortSignal
}

const SCOPE_OPTIONS = ['timeout', 'deadline', 'signal']

// One storage for the whole process, holding the scope only (never req/res), entered with run().
// Shared by every copy of the package, so an app's copy sees the scope an adapter's copy entered.
/** @internal */
export const storage = shared('tether.storage', () => new AsyncLocalStorage<Scope>())

/** @internal Reads and checks the options of {@link createScope} and {@link Scope.child}. */
export function readScopeOptions(
  where: string,
  options: ScopeOptions | undefined,
): { deadline: number | undefined; signal: AbortSignal | undefined; now: number | undefined } {
  if (options === undefined) return { deadline: undefined, signal: undefined, now: undefined }
  checkOptionsObject(where, options, SCOPE_OPTIONS)
  let deadline: number | undefined
  // The clock read a timeout is counted from, handed on to the timer: read twice, the two reads can
  // straddle a millisecond and put scopes with the same timeout into two timer lists.
  let now: number | undefined
  if (options.timeout !== undefined) {
    now = Date.now()
    deadline = now + checkDuration('timeout', options.timeout)
  }
  if (options.deadline !== undefined) {
    const absolute = checkTimestamp('deadline', options.deadline)
    if (deadline === undefined || absolute < deadline) deadline = absolute
  }
  const signal = options.signal === undefined ? undefined : checkSignal('signal', options.signal)
  return { deadline, signal, now }
}

/**
 * Creates a scope: a deadline, a lazily created `AbortSignal`, and a place to register tasks.
 *
 * @param options - `timeout` (ms), `deadline` (epoch ms), `signal` (a parent signal)
 * @returns a new root scope, or a child of the scope whose signal was passed as `signal`
 * @throws TypeError/RangeError naming the option and the value received, for invalid options
 *
 * @example
 * ```ts
 * const scope = createScope({ timeout: 2_000 })
 * try {
 *   await scope.run(() => all([(signal) => fetch(a, { signal }), (signal) => fetch(b, { signal })]))
 * } finally {
 *   scope.cancel()
 * }
 * ```
 */
export function createScope(options?: ScopeOptions): Scope {
  const { deadline, signal, now } = readScopeOptions('createScope()', options)
  const parent = signal === undefined ? undefined : (signal as TaggedSignal)[kScopeOfSignal]
  if (parent !== undefined) return Scope.create(parent, deadline, undefined, undefined, now)
  return Scope.create(undefined, deadline, signal, undefined, now)
}

/**
 * The scope of the code that is running, set by {@link Scope.run} (the adapters run every
 * request's middleware, hooks and handler inside its scope); `undefined` outside any scope.
 */
export function currentScope(): Scope | undefined {
  return storage.getStore()
}

/**
 * Calls `fn(...args)` with `scope` current: what {@link Scope.run} does, without a closure, for
 * the paths that start tasks by the million.
 *
 * Where Node keeps the async context in frames (AsyncContextFrame: Node 24 on), `storage.run()`
 * builds two frames a call, one to enter and one to leave: it leaves through `enterWith(prior)`,
 * which copies the current frame again (lib/internal/async_local_storage/async_context_frame.js),
 * about 150 ns a request. An `AsyncResource` remembers the caller's frame and `runInAsyncScope()`
 * puts that very frame back, so only the entering frame is built: about 50 ns. On Node 22's
 * async_hooks storage, `run()` is the cheaper way (about 8 ns). Either way `fn` runs in the
 * caller's context plus the scope, and the caller's context is whole again once it returns or
 * throws. The resource ('tether.scope') is what async_hooks see, and `executionAsyncId()` reads,
 * while `fn` runs synchronously.
 *
 * @internal
 */
export function runInScope<A extends unknown[], R>(scope: Scope, fn: (...args: A) => R, ...args: A): R {
  if (!contextFrames) return storage.run(scope, fn, ...args)
  if (storage.getStore() === scope) return fn(...args)
  return new AsyncResource('tether.scope').runInAsyncScope(enterAndApply, undefined, scope, fn, args) as R
}

function enterAndApply<A extends unknown[], R>(scope: Scope, fn: (...args: A) => R, args: A): R {
  storage.enterWith(scope)
  return fn(...args)
}

// Node 24 keeps the async context in frames unless started with --no-async-context-frame; Node 22
// does with --experimental-async-context-frame. Only the cost depends on it (see runInScope).
const nodeFlags = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`
const contextFrames =
  nodeFlags.includes('--experimental-async-context-frame') ||
  (Number(process.versions.node.split('.')[0]) >= 24 && !nodeFlags.includes('--no-async-context-frame'))
