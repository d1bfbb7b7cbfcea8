import { checkHeaderName, type Logger, received } from '../primitives/index.js'
import { MESH_DEADLINE_HEADERS } from './deadline-header.js'

/** Options shared by {@link createTether} and both adapters. All optional. */
export interface TetherOptions {
  /**
   * The request's deadline, in milliseconds from its arrival: a finite number > 0. At the
   * deadline the scope's signal aborts with `DeadlineExceededError` and, if nothing has been sent
   * yet, the client is answered with `status`. Route-level timeouts can only make it shorter.
   * @default undefined (no deadline: the scope still ends when the client hangs up or the
   *   response is finished)
   */
  readonly timeout?: number
  /**
   * The HTTP status a missed deadline is answered with, if nothing was sent yet: 500–599. The
   * same status answers a `DeadlineExceededError` that escapes a handler (from `scopedFetch`, a
   * pool, the outbound queue), whichever timer noticed first. 504, without `Retry-After`, means
   * "ran out of time": proxies neither retry it nor count it against the server. 503 (with
   * `Retry-After`) stays for work refused before it started: a shed pool caller, a request
   * during shutdown.
   * @default 504
   */
  readonly status?: number
  /**
   * tether's own budget header: the caller's remaining budget in integer milliseconds
   * (`grpc-timeout` is read and written in gRPC's own format). It is trusted inbound (unless
   * `trustHeaders` says otherwise) and is the header `scopedFetch` sends the remaining budget in
   * (unless `propagateHeader` says otherwise). `false`: it is neither read nor sent, and, unless
   * `trustHeaders` or `propagateHeader` is given, no incoming budget is trusted and none is sent.
   * @default 'x-request-timeout-ms'
   */
  readonly deadlineHeader?: string | false
  /**
   * The incoming headers whose budget is trusted (inbound): the smallest budget among them
   * counts, and the server's own `timeout` always caps it, so a header can only shorten a
   * request's deadline. Absent and malformed values are ignored (malformed ones are counted as
   * `ignoredDeadlineHeaders`). `grpc-timeout` is read in gRPC's format, every other header as
   * integer milliseconds. `false` or `[]`: no incoming budget is trusted.
   * @default [deadlineHeader, 'x-envoy-expected-rq-timeout-ms', 'grpc-timeout', 'connect-timeout-ms']
   *   (none when `deadlineHeader` is `false`)
   */
  readonly trustHeaders?: readonly string[] | false
  /**
   * The header `scopedFetch` and `createScopedFetch()` send the remaining budget in (outbound),
   * for calls made inside this binding's requests; `false` sends none. A scoped fetch's own
   * `header` option overrides it.
   * @default deadlineHeader
   */
  readonly propagateHeader?: string | false
  /**
   * Milliseconds after its request ended that a still-pending task is reported as leaked.
   * @default 10000
   */
  readonly leakAfter?: number
  /**
   * Record where each tracked task was started, for lingering and leak reports. Costs a stack
   * trace per task: for debugging, not for production traffic.
   * @default false
   */
  readonly captureStacks?: boolean
  /**
   * Where leak reports go: anything with a pino- or console-style `warn(object, message)`.
   * `false` reports only through `onLeak()` and the diagnostics channel.
   * @default process warnings (`process.emitWarning`, type `TetherLeakWarning`); the Fastify
   *   plugin uses the request's logger
   */
  readonly logger?: Logger | false
  /**
   * A path at which the adapter serves `inspect()` as JSON (GET), for debugging. Off unless set.
   * It lists in-flight requests and lingering tasks with their routes and, with `captureStacks`,
   * source locations: never expose it publicly.
   * @default undefined (no debug route)
   */
  readonly debugRoute?: string
  /**
   * How many requests may run their handlers at once: an integer ≥ 1, or `'auto'` to let tether
   * find the number from the latencies it measures (a gradient limit, as Envoy's adaptive
   * concurrency computes it). The others wait inside the process under the pool's overload policy:
   * a request that cannot finish before its deadline is answered 503 with `Retry-After` at once,
   * and while a queue stands the newest are served first. A handler holds its slot until its
   * response is finished or closed. Routes that stream or long-poll can opt out (Express's
   * `unlimited()`, Fastify's route `config: { tether: { concurrency: false } }`).
   * @default undefined (no limit)
   */
  readonly concurrency?: number | 'auto'
}

/**
 * What an adapter tells the core about its requests. Every method is optional; `source` is
 * whatever the adapter passed to {@link Tether.attach} (Express's `req`, Fastify's `reply`).
 */
export interface TetherAdapter<Source = unknown> {
  /** How option errors name the entry point, e.g. `tether()`. */
  readonly name?: string
  /** Option keys the adapter reads itself, accepted beside the core's {@link TETHER_OPTIONS}. */
  readonly options?: readonly string[]
  /** The route pattern of a request (`/users/:id`), for snapshots and reports. */
  route?(source: Source): string | undefined
  /** The logger for leak reports of this request's tasks. */
  logger?(source: Source): Logger | undefined
  /**
   * Whether the framework has handed the response to the user (Fastify's `reply.hijack()`): tether
   * then never answers, cuts or seals it. Its scope still aborts at the deadline, so work is told.
   */
  owned?(source: Source): boolean
  /**
   * Called once tether has answered or cut the response (and sealed the raw response): neutralise
   * the framework's own ways of writing, typically with {@link swallowLateWrites}.
   */
  seal?(source: Source): void
}

/**
 * The option keys the core reads: any other key is refused unless the adapter reads it. The
 * debug route is validated here but only an adapter can serve it, so only adapters accept it.
 */
export const TETHER_OPTIONS: readonly string[] = [
  'timeout',
  'status',
  'deadlineHeader',
  'trustHeaders',
  'propagateHeader',
  'leakAfter',
  'captureStacks',
  'logger',
  'concurrency',
]

/**
 * @internal The inbound headers to trust: the `trustHeaders` option, validated, or tether's own
 * header and the mesh's. `false` for `deadlineHeader` keeps what it meant before the two directions
 * had options of their own: no incoming budget at all, unless `trustHeaders` names some.
 */
export function resolveTrustHeaders(option: unknown, deadlineHeader: string | false): readonly string[] {
  if (option === undefined) {
    if (deadlineHeader === false) return Object.freeze([])
    return Object.freeze([deadlineHeader, ...MESH_DEADLINE_HEADERS.filter((name) => name !== deadlineHeader)])
  }
  if (option === false) return Object.freeze([])
  if (!Array.isArray(option)) {
    throw new TypeError(`\`trustHeaders\` must be an array of header names, or false, received ${received(option)}`)
  }
  // Array.from visits holes too: `[, 'x']` is refused, not read as one name.
  const names = Array.from(option as unknown[], (name, index) => checkHeaderName(`trustHeaders[${index}]`, name))
  // A header named twice is read once: its malformed value is counted once.
  return Object.freeze([...new Set(names)])
}
