// @tether/core, in layers. Each folder is one layer; its index.ts is its face to the layers above.
//
//   observability/  inspect(), Prometheus metrics, the testing assertions (reads every layer below)
//   workers/        createWorkerPool: tasks in worker threads, on the pool's overload policy
//   outbound/       scopedFetch and the outbound connection pool (undici)
//   request/        a request's scope (Tether), the deadline header, the concurrency limit
//   server/         Node's servers: hardening, connection tracking, delivery, idle, shutdown
//   primitives/     scopes, timers, TaskGroup, the pool, errors, validation, task tracking
//
// Rules (test/layers.test.ts enforces them): a file imports only from its own folder or from a
// layer below it, and from a layer below only through that layer's index.ts. Primitives know no
// HTTP, and nothing here imports a framework.
// This file only re-exports: what users may import. What only adapters need is in adapter.ts
// (`@tether/core/adapter`); the test assertions are in testing.ts (`@tether/core/testing`).

export {
  type InflightRequest,
  inspect,
  type LingeringTask,
  type MetricsOptions,
  type MetricsRegistry,
  registerMetrics,
  type Snapshot,
  type TetherMetrics,
} from './observability/index.js'
export type { OutboundDispatcher, OutboundOptions, OutboundOrigin } from './outbound/index.js'
export { createScopedFetch, type ScopedFetch, type ScopedFetchOptions, scopedFetch } from './outbound/index.js'
export {
  all,
  allSettled,
  CanceledError,
  type Counters,
  createPool,
  createScope,
  currentScope,
  DEADLINE_CHANNEL,
  DEFAULT_DEADLINE_STATUS,
  DeadlineExceededError,
  type DeadlineMessage,
  isCanceled,
  isDeadlineExceeded,
  isPoolOverloaded,
  isShutdown,
  LEAK_CHANNEL,
  type LeakReport,
  LINGERING_CHANNEL,
  type Logger,
  onLeak,
  type Pool,
  type PoolOptions,
  PoolOverloadedError,
  type PoolRunOptions,
  Scope,
  type ScopeOptions,
  type Settled,
  SHED_CHANNEL,
  type ShedMessage,
  type ShedSource,
  ShutdownError,
  type Task,
  TaskGroup,
  type TaskGroupOptions,
  type TaskMessage,
  TetherError,
  type TetherErrorOptions,
} from './primitives/index.js'
export {
  CONNECT_TIMEOUT_HEADER,
  type Concurrency,
  type ConcurrencySnapshot,
  createTether,
  DEFAULT_DEADLINE_HEADER,
  ENVOY_TIMEOUT_HEADER,
  formatBudget,
  GRPC_TIMEOUT_HEADER,
  MESH_DEADLINE_HEADERS,
  parseBudget,
  REQUEST_END_CHANNEL,
  REQUEST_START_CHANNEL,
  type RequestEndMessage,
  type RequestEndReason,
  type RequestStartMessage,
  type TetherOptions,
  tightenDeadline,
} from './request/index.js'
export type { DeliveryOptions, DeliverySettings } from './server/index.js'
export {
  type HardenedTimeouts,
  type HardenOptions,
  hardenServer,
  onShutdown,
  type ShutdownNotice,
  type ShutdownOptions,
  type ShutdownReport,
  shutdown,
  trackConnections,
} from './server/index.js'
export {
  createWorkerPool,
  type WorkerPool,
  type WorkerPoolOptions,
  type WorkerPoolState,
  type WorkerRunOptions,
} from './workers/index.js'
