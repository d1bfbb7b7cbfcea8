import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import net from 'node:net'
import { describe, expectTypeOf, it } from 'vitest'
import {
  all,
  allSettled,
  type CanceledError,
  type ConcurrencySnapshot,
  createPool,
  createScope,
  createScopedFetch,
  createTether,
  createWorkerPool,
  currentScope,
  type DeadlineExceededError,
  hardenServer,
  inspect,
  isCanceled,
  isDeadlineExceeded,
  type OutboundOrigin,
  type Pool,
  type RequestEndMessage,
  type RequestEndReason,
  type Scope,
  type ScopedFetch,
  type Settled,
  type ShutdownReport,
  scopedFetch,
  shutdown,
  TaskGroup,
  type TaskMessage,
  trackConnections,
  type WorkerPool,
} from '../src/index.js'

describe('public types', () => {
  it('types all() results as a tuple, awaited, in order', () => {
    const results = all([() => 1, async () => 'two', (signal: AbortSignal) => signal.aborted])
    expectTypeOf(results).resolves.toEqualTypeOf<[number, string, boolean]>()
  })

  it('types allSettled() outcomes per task', () => {
    const results = allSettled([() => 1, async () => 'two'])
    expectTypeOf(results).resolves.toEqualTypeOf<[Settled<number>, Settled<string>]>()
  })

  it('gives tasks an AbortSignal and pools the task result type', () => {
    const pool: Pool = createPool({ concurrency: 2 })
    expectTypeOf(pool.run((signal) => signal)).resolves.toEqualTypeOf<AbortSignal>()
    expectTypeOf(pool.run(async () => ({ id: 1 }))).resolves.toEqualTypeOf<{ id: number }>()
    expectTypeOf(pool.active).toEqualTypeOf<number>()
    expectTypeOf(pool.serviceTime).toEqualTypeOf<number>()
    createPool({ concurrency: 1, deadlineAware: false })
    // @ts-expect-error deadlineAware is a boolean
    createPool({ concurrency: 1, deadlineAware: 'off' })
    // @ts-expect-error concurrency is required
    createPool({})
  })

  it('types worker-pool results by the caller, and requires a filename', () => {
    const workers: WorkerPool = createWorkerPool({ filename: new URL('file:///app/render.mjs'), concurrency: 2 })
    expectTypeOf(workers.run({ template: 'x' })).resolves.toEqualTypeOf<unknown>()
    expectTypeOf(workers.run<string>({ template: 'x' }, { name: 'render' })).resolves.toEqualTypeOf<string>()
    expectTypeOf(workers.threads).toEqualTypeOf<number>()
    expectTypeOf(workers.close()).resolves.toEqualTypeOf<void>()
    createWorkerPool({ filename: '/app/render.mjs', workerData: { region: 'eu' } })
    // @ts-expect-error filename is required
    createWorkerPool({ concurrency: 2 })
    // @ts-expect-error name is a string
    workers.run(1, { name: 1 })
  })

  it('types the lifecycle messages', () => {
    expectTypeOf<RequestEndMessage['reason']>().toEqualTypeOf<RequestEndReason>()
    expectTypeOf<RequestEndReason>().toEqualTypeOf<'finished' | 'deadline' | 'hang-up' | 'shutdown' | 'canceled'>()
    expectTypeOf<RequestEndMessage['scope']>().toEqualTypeOf<Scope>()
    expectTypeOf<TaskMessage['requestScope']>().toEqualTypeOf<Scope | undefined>()
  })

  it('exposes the scope contract', () => {
    const scope = createScope({ timeout: 1 })
    expectTypeOf(scope.signal).toEqualTypeOf<AbortSignal>()
    expectTypeOf(scope.deadline).toEqualTypeOf<number | undefined>()
    expectTypeOf(scope.remaining()).toEqualTypeOf<number>()
    expectTypeOf(scope.child()).toEqualTypeOf<Scope>()
    expectTypeOf(scope.run(() => 1)).toEqualTypeOf<number>()
    expectTypeOf(scope.track(Promise.resolve('x'))).resolves.toEqualTypeOf<string>()
    expectTypeOf(currentScope()).toEqualTypeOf<Scope | undefined>()
    // @ts-expect-error scopes are made by createScope() or child()
    ;new (createScope().constructor as typeof Scope)()
  })

  it('narrows errors with the guards and keeps literal names', () => {
    const error: unknown = new Error()
    if (isDeadlineExceeded(error)) {
      expectTypeOf(error).toEqualTypeOf<DeadlineExceededError>()
      expectTypeOf(error.name).toEqualTypeOf<'DeadlineExceededError'>()
      expectTypeOf(error.code).toEqualTypeOf<'TETHER_DEADLINE_EXCEEDED'>()
    }
    if (isCanceled(error)) expectTypeOf(error).toEqualTypeOf<CanceledError>()
  })

  it('types TaskGroup', () => {
    const group = new TaskGroup({ limit: 2 })
    expectTypeOf(group.go).parameter(0).parameter(0).toEqualTypeOf<AbortSignal>()
    expectTypeOf(group.tryGo(() => 1)).toEqualTypeOf<boolean>()
    expectTypeOf(group.wait()).resolves.toBeVoid()
  })

  it('types a scoped fetch as fetch, with its transport, and inspect().outbound', () => {
    const call = createScopedFetch({ connections: 8, maxQueue: 100, keepAliveTimeout: 2_000 })
    expectTypeOf(call).toExtend<typeof fetch>()
    expectTypeOf(scopedFetch).toEqualTypeOf<ScopedFetch>()
    expectTypeOf(call('http://127.0.0.1:1/')).resolves.toEqualTypeOf<Response>()
    expectTypeOf(call.close()).resolves.toBeVoid()
    expectTypeOf(inspect().outbound).toEqualTypeOf<OutboundOrigin[]>()
    expectTypeOf<OutboundOrigin['queued']>().toEqualTypeOf<number>()
    // @ts-expect-error the transport options are numbers
    createScopedFetch({ connections: '8' })
  })

  it('types concurrency as a number or auto, and inspect().concurrency', () => {
    expectTypeOf(createTether({ concurrency: 'auto' }).concurrency).toEqualTypeOf<number | 'auto' | undefined>()
    expectTypeOf(inspect().concurrency).toEqualTypeOf<ConcurrencySnapshot[]>()
    expectTypeOf<ConcurrencySnapshot['baselineMs']>().toEqualTypeOf<number | null>()
    // @ts-expect-error concurrency is a number or 'auto'
    createTether({ concurrency: 'max' })
  })

  it('takes node:http, node:https and node:http2 servers and requests without casts', () => {
    const binding = createTether()
    http.createServer((req, res) => expectTypeOf(binding.attach(req, res)).toEqualTypeOf<Scope>())
    http2.createServer((req, res) => expectTypeOf(binding.attach(req, res)).toEqualTypeOf<Scope>())
    http2.createSecureServer({}, (req, res) => binding.attach(req, res))
    const cleartext = http2.createServer()
    const secure = http2.createSecureServer({})
    expectTypeOf(hardenServer(cleartext)).toEqualTypeOf<http2.Http2Server>()
    expectTypeOf(hardenServer(secure, { maxConcurrentStreams: 50 })).toEqualTypeOf<http2.Http2SecureServer>()
    expectTypeOf(hardenServer(https.createServer())).toEqualTypeOf<https.Server>()
    expectTypeOf(trackConnections(cleartext)).toEqualTypeOf<http2.Http2Server>()
    expectTypeOf(shutdown(secure)).resolves.toEqualTypeOf<ShutdownReport>()
    expectTypeOf(shutdown(http.createServer(), { grace: 1 })).resolves.toEqualTypeOf<ShutdownReport>()
    // @ts-expect-error a net.Server is not an HTTP server
    hardenServer(new net.Server())
  })
})
