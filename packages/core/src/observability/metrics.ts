import type { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { outboundOrigins } from '../outbound/index.js'
import {
  type Counters,
  checkOptionsObject,
  counters,
  inflightRequests,
  lingeringCount,
  observeLingeringSettled,
  optional,
  received,
} from '../primitives/index.js'
import type { ConcurrencySnapshot } from '../request/index.js'
import { concurrencyLimits, concurrencyShed } from '../request/index.js'
import { workerPools } from '../workers/index.js'

/**
 * What tether needs of a prom-client `Registry`. Declared here rather than imported, so that the
 * declarations compile without prom-client installed (it is an optional peer dependency).
 */
export interface MetricsRegistry {
  registerMetric(metric: never): void
  removeSingleMetric(name: string): void
}

/** Options of {@link registerMetrics}. All optional. */
export interface MetricsOptions {
  /**
   * The prom-client registry to register on (any `Registry` of prom-client).
   * @default prom-client's default registry (`client.register`)
   */
  readonly register?: MetricsRegistry
  /**
   * Prefix of every metric name.
   * @default 'tether_'
   */
  readonly prefix?: string
  /**
   * Buckets, in seconds, of `tether_lingering_duration_seconds`.
   * @default [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300]
   */
  readonly buckets?: readonly number[]
}

const METRICS_OPTIONS = ['register', 'prefix', 'buckets']

/** What {@link registerMetrics} registered. */
export interface TetherMetrics {
  /** The metric names registered, prefix included. */
  readonly names: readonly string[]
  /** Removes the metrics from the registry and stops observing. */
  unregister(): void
}

// Counter name (after the prefix) → help text → which cumulative counter it reads.
const COUNTERS: ReadonlyArray<readonly [string, string, keyof Counters]> = [
  ['requests_total', 'Requests that went through a tether adapter.', 'requests'],
  ['requests_deadline_exceeded_total', 'Requests whose deadline passed before they finished.', 'deadlineExceeded'],
  ['requests_client_closed_total', 'Requests whose client hung up before the response was finished.', 'clientClosed'],
  ['late_writes_total', 'Writes, sends and throws swallowed after tether answered or cut a response.', 'lateWrites'],
  ['tasks_lingered_total', 'Tasks still pending when their request ended.', 'lingering'],
  ['tasks_leaked_total', 'Lingering tasks still pending leakAfter ms after their request ended.', 'leaked'],
  ['pool_shed_total', 'Pool tasks refused because the queue was full.', 'shed'],
  [
    'deadline_headers_ignored_total',
    'Incoming deadline headers that were malformed and ignored.',
    'ignoredDeadlineHeaders',
  ],
  ['shutdown_refused_total', 'Requests answered 503 because their server was shutting down.', 'refusedDuringShutdown'],
  [
    'shutdown_aborted_total',
    'In-flight requests aborted because the shutdown grace period ran out.',
    'abortedByShutdown',
  ],
  ['outbound_shed_total', "Outbound calls refused because their origin's wait queue was full.", 'outboundShed'],
  [
    'write_timeouts_total',
    'Connections cut because a finished response was not delivered within writeTimeout.',
    'writeTimeouts',
  ],
  ['slow_readers_total', 'Connections cut because their client read slower than minResponseRate.', 'slowReaders'],
  [
    'idle_evicted_total',
    'Idle keep-alive connections closed because the server held more than maxIdleConnections.',
    'idleEvicted',
  ],
  ['worker_pool_shed_total', 'Worker-pool tasks refused under overload.', 'workerShed'],
  [
    'worker_tasks_aborted_total',
    "Worker-pool tasks stopped because their caller's signal aborted (a running task's thread is stopped).",
    'workerAborted',
  ],
]

// Gauge name (after the prefix) → help text → which field of a worker pool's state it reads.
const WORKER_GAUGES: ReadonlyArray<readonly [string, string, 'threads' | 'active' | 'queued']> = [
  ['worker_pool_threads', 'Worker threads alive, per worker file.', 'threads'],
  ['worker_pool_active', 'Worker-pool tasks running, per worker file.', 'active'],
  ['worker_pool_queued', 'Worker-pool tasks waiting for a thread, per worker file.', 'queued'],
]

type PromClient = typeof import('prom-client')

function loadPromClient(): PromClient {
  try {
    // prom-client is an optional peer dependency: loaded only when metrics are asked for.
    return require('prom-client') as PromClient
  } catch (error) {
    throw new Error('registerMetrics() needs prom-client: install it next to @tether/core (npm i prom-client)', {
      cause: error,
    })
  }
}

const registered = new WeakMap<object, TetherMetrics>()

/**
 * Exposes tether's counters and gauges as Prometheus metrics through prom-client (an optional peer
 * dependency). Values are read when Prometheus scrapes, so requests pay nothing for them.
 *
 * Registered (with the default prefix): one counter per `inspect().counters` entry
 * (`tether_requests_total`, `tether_requests_deadline_exceeded_total`,
 * `tether_requests_client_closed_total`, `tether_late_writes_total`, `tether_tasks_lingered_total`,
 * `tether_tasks_leaked_total`, `tether_pool_shed_total`, `tether_deadline_headers_ignored_total`,
 * `tether_shutdown_refused_total`, `tether_shutdown_aborted_total`, `tether_outbound_shed_total`,
 * `tether_worker_pool_shed_total`, `tether_worker_tasks_aborted_total`, ...);
 * the gauges `tether_requests_in_flight`, `tether_tasks_lingering`,
 * `tether_outbound_connections{origin,state}` (state `open`, `idle` or `busy`),
 * `tether_outbound_queued{origin}` and `tether_worker_pool_threads{filename}`,
 * `tether_worker_pool_active{filename}`, `tether_worker_pool_queued{filename}`; the request-path
 * concurrency limit (`tether({ concurrency })`, summed over the middleware and plugins that set
 * one): the gauges `tether_concurrency_limit`, `tether_concurrency_active` and
 * `tether_concurrency_queued`, and the counter `tether_concurrency_shed_total`; and the histogram
 * `tether_lingering_duration_seconds` of how long lingering tasks ran past their request's end.
 *
 * Registering again on the same registry returns the same metrics.
 *
 * @param options - `register` (default: prom-client's default registry), `prefix`, `buckets`
 * @throws if prom-client is not installed; TypeError for invalid options
 *
 * @example
 * ```ts
 * import client from 'prom-client'
 * registerMetrics({ register: client.register })
 * app.get('/metrics', async (_req, res) => res.type(client.register.contentType).send(await client.register.metrics()))
 * ```
 */
export function registerMetrics(options?: MetricsOptions): TetherMetrics {
  checkOptionsObject('registerMetrics()', options, METRICS_OPTIONS)
  const prefix = optional(options?.prefix, 'tether_')
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) {
    throw new TypeError(`\`prefix\` must be a valid Prometheus metric name prefix, received ${received(prefix)}`)
  }
  const buckets = optional(options?.buckets, [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300])
  if (!Array.isArray(buckets) || buckets.some((bucket) => typeof bucket !== 'number' || !Number.isFinite(bucket))) {
    throw new TypeError(`\`buckets\` must be an array of finite numbers (seconds), received ${received(buckets)}`)
  }
  const register = options?.register
  if (register !== undefined && typeof (register as Partial<MetricsRegistry> | null)?.registerMetric !== 'function') {
    throw new TypeError(`\`register\` must be a prom-client Registry, received ${received(register)}`)
  }
  const client = loadPromClient()
  const registry = (register as Registry | undefined) ?? client.register
  const existing = registered.get(registry)
  if (existing !== undefined) return existing

  const registers = [registry]
  const metrics: Array<Counter | Gauge | Histogram> = []
  for (const [name, help, key] of COUNTERS) {
    metrics.push(
      new client.Counter({
        name: `${prefix}${name}`,
        help,
        registers,
        collect() {
          this.reset()
          this.inc(counters[key])
        },
      }),
    )
  }
  metrics.push(
    new client.Gauge({
      name: `${prefix}requests_in_flight`,
      help: 'Requests in progress.',
      registers,
      collect() {
        this.set(inflightRequests().length)
      },
    }),
    new client.Gauge({
      name: `${prefix}tasks_lingering`,
      help: 'Tasks pending past the end of their request.',
      registers,
      collect() {
        this.set(lingeringCount())
      },
    }),
  )
  metrics.push(
    new client.Gauge({
      name: `${prefix}outbound_connections`,
      help: 'Sockets of the outbound pools, per origin and state (open, idle, busy).',
      labelNames: ['origin', 'state'],
      registers,
      collect() {
        // Reset first: an origin whose sockets have all closed disappears instead of staying at
        // its last value.
        this.reset()
        for (const { origin, open, idle, busy } of outboundOrigins()) {
          this.set({ origin, state: 'open' }, open)
          this.set({ origin, state: 'idle' }, idle)
          this.set({ origin, state: 'busy' }, busy)
        }
      },
    }),
    new client.Gauge({
      name: `${prefix}outbound_queued`,
      help: 'Outbound calls waiting for a socket, per origin.',
      labelNames: ['origin'],
      registers,
      collect() {
        this.reset()
        for (const { origin, queued } of outboundOrigins()) this.set({ origin }, queued)
      },
    }),
  )
  for (const [name, help, field] of WORKER_GAUGES) {
    metrics.push(
      new client.Gauge({
        name: `${prefix}${name}`,
        help,
        labelNames: ['filename'],
        registers,
        collect() {
          this.reset()
          // Two pools of one file are one series: their sum.
          const sums = new Map<string, number>()
          for (const pool of workerPools()) sums.set(pool.filename, (sums.get(pool.filename) ?? 0) + pool[field])
          for (const [filename, value] of sums) this.set({ filename }, value)
        },
      }),
    )
  }
  // One limit in almost every app; several (an app and a sub-app, two servers) are summed, as the
  // outbound pools of one origin are.
  const concurrencyGauge = (name: string, help: string, read: (limit: ConcurrencySnapshot) => number) =>
    new client.Gauge({
      name: `${prefix}${name}`,
      help,
      registers,
      collect() {
        let total = 0
        for (const limit of concurrencyLimits()) total += read(limit)
        this.set(total)
      },
    })
  metrics.push(
    concurrencyGauge(
      'concurrency_limit',
      "Handlers the request path's concurrency limit lets run at once (with 'auto', what it has learnt).",
      (limit) => limit.limit,
    ),
    concurrencyGauge('concurrency_active', 'Handlers running under the concurrency limit.', (limit) => limit.active),
    concurrencyGauge(
      'concurrency_queued',
      'Requests waiting for a slot of the concurrency limit.',
      (limit) => limit.queued,
    ),
    new client.Counter({
      name: `${prefix}concurrency_shed_total`,
      help: 'Requests answered 503 with Retry-After by the concurrency limit because they could not finish in time.',
      registers,
      collect() {
        this.reset()
        this.inc(concurrencyShed())
      },
    }),
  )
  const histogram = new client.Histogram({
    name: `${prefix}lingering_duration_seconds`,
    help: 'How long lingering tasks ran past the end of their request, observed when they settled.',
    buckets: [...buckets],
    registers,
  })
  metrics.push(histogram)
  const stopObserving = observeLingeringSettled((pastEndMs) => histogram.observe(pastEndMs / 1_000))

  const names = metrics.map((metric) => (metric as unknown as { name: string }).name)
  const handle: TetherMetrics = {
    names,
    unregister() {
      stopObserving()
      for (const name of names) registry.removeSingleMetric(name)
      registered.delete(registry)
    },
  }
  registered.set(registry, handle)
  return handle
}
