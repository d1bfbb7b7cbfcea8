export {
  type Concurrency,
  type ConcurrencySnapshot,
  exemptFromConcurrency,
  routeConcurrency,
} from './concurrency.js'
export { trackConnections } from './connections.js'
export { DEFAULT_DEADLINE_HEADER, formatBudget, GRPC_TIMEOUT_HEADER, parseBudget } from './deadline-header.js'
export type { DeliveryOptions, DeliverySettings } from './delivery.js'
export {
  CanceledError,
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
