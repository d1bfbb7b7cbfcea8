/**
 * `@tether/core/adapter`: what the framework adapters (`@tether/express`, `@tether/fastify`) are
 * built from, and what an adapter for another framework would use. Not for applications: these
 * are the seams between core and a framework (binding a request, a route's timeout or
 * concurrency exemption, the framework's late writers, shutdown before the framework's own
 * close, options resolved once), and they change with the adapters. Applications import
 * `@tether/core`.
 *
 * @packageDocumentation
 */

export {
  exemptFromConcurrency,
  routeConcurrency,
  routeTimeout,
  scopeOfResponse,
  Tether,
  type TetherAdapter,
} from './request/index.js'
export { resolveHardening, resolveShutdown, shutdownBeforeFrameworkClose, swallowLateWrites } from './server/index.js'
