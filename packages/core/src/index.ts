export {
  type Concurrency,
  type ConcurrencySnapshot,
  exemptFromConcurrency,
  routeConcurrency,
} from './concurrency.js'
export { onShutdown, type ShutdownNotice, trackConnections } from './connections.js'
export {
  CONNECT_TIMEOUT_HEADER,
  DEFAULT_DEADLINE_HEADER,
  ENVOY_TIMEOUT_HEADER,
  formatBudget,
  GRPC_TIMEOUT_HEADER,
  MESH_DEADLINE_HEADERS,
  parseBudget,
} from './deadline-header.js'
export type { DeliveryOptions, DeliverySettings } from './delivery.js'
export {
  DEADLINE_CHANNEL,
  type DeadlineMessage,
  LINGERING_CHANNEL,
  REQUEST_END_CHANNEL,
  REQUEST_START_CHANNEL,
  type RequestEndMessage,
  type RequestEndReason,
  type RequestStartMessage,
  SHED_CHANNEL,
  type ShedMessage,
  type ShedSource,
  type TaskMessage,
} from './diagnostics.js'
export {
  CanceledError,
  DEFAULT_DEADLINE_STATUS,
  DeadlineExceededError,
  isCanceled,
  isDeadlineExceeded,
  isPoolOverloaded,
  isShutdown,
  PoolOverloadedError,
  ShutdownError,
  TetherError,
  type TetherErrorOptions,
} from './errors.js'
export { createScopedFetch, type ScopedFetch, type ScopedFetchOptions, scopedFetch } from './fetch.js'
export { all, allSettled, type Settled, type Task, TaskGroup, type TaskGroupOptions } from './group.js'
export { type HardenedTimeouts, type HardenOptions, hardenServer, resolveHardening } from './harden.js'
export { type InflightRequest, inspect, type LingeringTask, type Snapshot } from './inspect.js'
export { type MetricsOptions, type MetricsRegistry, registerMetrics, type TetherMetrics } from './metrics.js'
export type { OutboundDispatcher, OutboundOptions, OutboundOrigin } from './outbound.js'
export { createPool, type Pool, type PoolOptions, type PoolRunOptions } from './pool.js'
export { type Counters, LEAK_CHANNEL, type LeakReport, type Logger, onLeak } from './registry.js'
export { createScope, currentScope, Scope, type ScopeOptions } from './scope.js'
export {
  resolveShutdown,
  type ShutdownOptions,
  type ShutdownReport,
  shutdown,
  shutdownBeforeFrameworkClose,
} from './shutdown.js'
export {
  createTether,
  routeTimeout,
  swallowLateWrites,
  Tether,
  type TetherAdapter,
  type TetherOptions,
  tightenDeadline,
} from './tether.js'
export {
  createWorkerPool,
  type WorkerPool,
  type WorkerPoolOptions,
  type WorkerPoolState,
  type WorkerRunOptions,
} from './worker-pool.js'
