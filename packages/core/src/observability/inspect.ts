import { type OutboundOrigin, outboundOrigins } from '../outbound/index.js'
import {
  type Counters,
  counters,
  describeTask,
  inflightRequests,
  type LeakReport,
  listedLingering,
} from '../primitives/index.js'
import { type ConcurrencySnapshot, concurrencyLimits } from '../request/index.js'
import { type WorkerPoolState, workerPools } from '../workers/index.js'

/** A request in progress, as listed by {@link inspect}. */
export interface InflightRequest {
  readonly method: string
  /** The route pattern (`/users/:id`), or `null` when the framework has not matched one yet. */
  readonly route: string | null
  /** Milliseconds since the request started. */
  readonly ageMs: number
  /** Milliseconds before its deadline, or `null` without one. */
  readonly remainingMs: number | null
}

/** A task pending past the end of its request, as listed by {@link inspect}. */
export interface LingeringTask extends LeakReport {
  /** Reported as leaked: still pending `leakAfter` ms after its request ended. */
  readonly leaked: boolean
}

/** What {@link inspect} returns: plain data, safe to `JSON.stringify`. */
export interface Snapshot {
  readonly inflight: InflightRequest[]
  /**
   * Tasks pending past the end of their request: those not leaked yet, then the latest 1,000
   * leaked ones (a task that never settles is not kept forever; the counters count every one).
   */
  readonly lingering: LingeringTask[]
  readonly counters: Counters
  /**
   * The outbound connection pools of scoped fetches, one entry per origin: sockets `open`,
   * `idle` and `busy`, and calls `queued` for a socket. A body nobody reads keeps its socket busy:
   * a leak of Go's forgotten `resp.Body.Close()` shows here as a number.
   */
  readonly outbound: OutboundOrigin[]
  /** The open worker pools (`createWorkerPool`): threads alive, tasks `active` and `queued`. */
  readonly workerPools: WorkerPoolState[]
  /**
   * The request-path concurrency limits (`tether({ concurrency })`), one per middleware or plugin
   * that sets one, oldest first: the `limit` now (with `'auto'`, what it has learnt), handlers
   * `active` under it, requests `queued` for a slot, requests `shed` (503 with `Retry-After`), and
   * with `'auto'` the `baselineMs` it is measured against. Empty without `concurrency`.
   */
  readonly concurrency: ConcurrencySnapshot[]
}

/**
 * A snapshot of the process's request work, in the spirit of pprof's goroutine dump: the
 * requests in flight, the tasks that outlived their request, cumulative counters, the outbound
 * connections per origin, the worker pools' threads and tasks, and the request-path concurrency limits.
 *
 * @returns a JSON-serialisable snapshot
 *
 * @example
 * ```ts
 * process.on('SIGUSR2', () => console.log(JSON.stringify(inspect(), null, 2)))
 * ```
 */
export function inspect(): Snapshot {
  const now = Date.now()
  const requests: InflightRequest[] = []
  for (const request of inflightRequests()) {
    // Answered, and only being delivered: the handler is done with it.
    if (request.ended?.() === true) continue
    const remaining = request.remaining()
    requests.push({
      method: request.method,
      route: request.route() ?? null,
      ageMs: now - request.startedAt,
      remainingMs: Number.isFinite(remaining) ? Math.round(remaining) : null,
    })
  }
  const tasks: LingeringTask[] = []
  for (const task of listedLingering()) tasks.push({ ...describeTask(task, now), leaked: task.leaked })
  return {
    inflight: requests,
    lingering: tasks,
    counters: { ...counters },
    outbound: outboundOrigins(),
    workerPools: workerPools(),
    concurrency: concurrencyLimits(),
  }
}
