import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { context, SpanKind, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base'
import { createPool, inspect, isPoolOverloaded, shutdown } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { tether as tetherExpress } from '@tether/express'
import express from 'express'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { eventually, hangUpWhen, inRoute, loopbackServers, send } from './support/http.js'

// examples/otel.mjs, the lifecycle channels turned into OpenTelemetry spans, checked with the SDK's
// in-memory exporter against a real Express server.

type Instrument = (options: { tracer: Tracer }) => () => void
const EXAMPLE = new URL('../examples/otel.mjs', import.meta.url).href

const servers = loopbackServers()
let exporter: InMemorySpanExporter
let provider: BasicTracerProvider
let stop: () => void
let release: () => void = () => {}
const pool = createPool({ concurrency: 1, maxQueue: 0 })

beforeEach(async () => {
  const { instrumentTether } = (await import(EXAMPLE)) as { instrumentTether: Instrument }
  exporter = new InMemorySpanExporter()
  provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  stop = instrumentTether({ tracer: provider.getTracer('tether-test') })
})

afterEach(async () => {
  stop()
  release()
  await servers.closeAll()
  await provider.shutdown()
})

async function start(): Promise<{ url: string; server: http.Server }> {
  const app = express()
  app.use(tetherExpress({ timeout: 200, status: 504, logger: false }))
  app.get('/fine', (_req, res) => {
    res.json({ ok: true })
  })
  app.get('/broken', (_req, res) => {
    res.status(500).json({ ok: false })
  })
  app.get('/wait', () => {
    // Never answers: tether does, at the deadline or at shutdown, unless the client goes first.
  })
  app.get('/pool', async (_req, res) => {
    const outcome = await pool
      .run(() => new Promise<void>((resolve) => (release = resolve)))
      .then(
        () => 'ran',
        (error: unknown) => (isPoolOverloaded(error) ? 'shed' : 'failed'),
      )
    res.json({ outcome })
  })
  app.get('/linger', (req, res) => {
    void req.scope.track(sleep(40))
    res.json({ ok: true })
  })
  const server = http.createServer(app)
  return { url: await servers.listen(server), server }
}

const spanNamed = (name: string): ReadableSpan | undefined =>
  exporter.getFinishedSpans().find((span) => span.name === name)

async function finished(name: string): Promise<ReadableSpan> {
  await eventually(() => spanNamed(name) !== undefined, 2_000, `the span ${name}`)
  return spanNamed(name) as ReadableSpan
}

describe('examples/otel.mjs: tether lifecycle events as OpenTelemetry spans', () => {
  it('records a finished request as a SERVER span with its route, and no error', async () => {
    const { url } = await start()
    await send(`${url}/fine`)
    const span = await finished('GET /fine')
    expect(span.kind).toBe(SpanKind.SERVER)
    expect(span.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.route': '/fine',
      'http.response.status_code': 200,
      'tether.request.end_reason': 'finished',
    })
    expect(span.attributes['tether.deadline.budget_ms']).toBeGreaterThan(150)
    expect(span.attributes['error.type']).toBeUndefined()
    expect(span.status.code).toBe(SpanStatusCode.UNSET)
  })

  it('marks a 5xx answer as an error, with the status code as error.type', async () => {
    const { url } = await start()
    await send(`${url}/broken`)
    const span = await finished('GET /broken')
    expect(span.attributes['error.type']).toBe('500')
    expect(span.status.code).toBe(SpanStatusCode.ERROR)
  })

  it('records a missed deadline as error.type `timeout`, status ERROR, with a deadline event', async () => {
    const { url } = await start()
    expect((await send(`${url}/wait`)).status).toBe(504)
    const span = await finished('GET /wait')
    expect(span.attributes).toMatchObject({ 'error.type': 'timeout', 'tether.request.end_reason': 'deadline' })
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'deadline exceeded' })
    expect(span.events.map((event) => [event.name, event.attributes])).toEqual([
      ['tether.deadline', { 'tether.deadline.scope': 'request' }],
    ])
  })

  it('records a client hang-up as a cancellation: an event, no error.type, status left unset', async () => {
    const { url } = await start()
    await hangUpWhen(`${url}/wait`, inRoute('/wait'), 'the request to reach /wait')
    const span = await finished('GET /wait')
    expect(span.attributes['tether.request.end_reason']).toBe('hang-up')
    expect(span.attributes['error.type']).toBeUndefined()
    expect(span.status.code).toBe(SpanStatusCode.UNSET)
    expect(span.events.map((event) => event.name)).toEqual(['tether.request.canceled'])
  })

  it('records a request aborted by shutdown as error.type `ShutdownError`', async () => {
    const { url, server } = await start()
    const pending = send(`${url}/wait`).catch(() => undefined)
    await eventually(() => inspect().inflight.length === 1, 2_000, 'the request in flight')
    await shutdown(server, { grace: 20 })
    await pending
    const span = await finished('GET /wait')
    expect(span.attributes).toMatchObject({ 'error.type': 'ShutdownError', 'tether.request.end_reason': 'shutdown' })
    expect(span.status.code).toBe(SpanStatusCode.ERROR)
  })

  it('adds a shed to the span of the request whose call was refused', async () => {
    const { url } = await start()
    const first = send(`${url}/pool`)
    await eventually(() => pool.active === 1, 2_000, 'the first pool task')
    expect(JSON.parse((await send(`${url}/pool`)).body)).toEqual({ outcome: 'shed' })
    release()
    await first
    await eventually(() => exporter.getFinishedSpans().length === 2, 2_000, 'both spans')
    const shed = exporter.getFinishedSpans().find((span) => span.events.some((event) => event.name === 'tether.shed'))
    expect(shed?.events.find((event) => event.name === 'tether.shed')?.attributes).toEqual({
      'tether.shed.source': 'pool',
      'exception.message': 'pool overloaded: queue is full',
    })
    expect(exporter.getFinishedSpans().filter((span) => span !== shed)[0]?.events).toEqual([])
  })

  it('annotates the server span an HTTP instrumentation made, when one is active, instead of starting its own', async () => {
    // What an HTTP instrumentation does: a SERVER span, active while the request is handled, ended
    // when the response is finished.
    const manager = new AsyncLocalStorageContextManager().enable()
    context.setGlobalContextManager(manager)
    try {
      const instrumentation = provider.getTracer('http-instrumentation')
      const app = express()
      app.use(tetherExpress({ timeout: 100, status: 504, logger: false }))
      app.get('/wait', () => {})
      const server = http.createServer((req, res) => {
        const span = instrumentation.startSpan(`${req.method}`, { kind: SpanKind.SERVER })
        res.on('finish', () => span.end())
        context.with(trace.setSpan(context.active(), span), () => app(req, res))
      })
      const url = await servers.listen(server)
      expect((await send(`${url}/wait`)).status).toBe(504)
      const span = await finished('GET')
      expect(span.instrumentationScope.name).toBe('http-instrumentation')
      expect(span.attributes).toMatchObject({
        'http.route': '/wait',
        'error.type': 'timeout',
        'tether.request.end_reason': 'deadline',
      })
      expect(span.status.code).toBe(SpanStatusCode.ERROR)
      expect(span.events.map((event) => event.name)).toEqual(['tether.deadline'])
      expect(exporter.getFinishedSpans()).toHaveLength(1) // no span of the example's own
    } finally {
      context.disable()
      manager.disable()
    }
  })

  it("records a task that outlived its request as a span linked to the request's span", async () => {
    const { url } = await start()
    await send(`${url}/linger`)
    const request = await finished('GET /linger')
    const lingering = await finished('tether.task.lingering')
    expect(lingering.kind).toBe(SpanKind.INTERNAL)
    expect(lingering.attributes).toMatchObject({ 'tether.task.kind': 'track', 'http.route': '/linger' })
    expect(lingering.links.map((link) => link.context.spanId)).toEqual([request.spanContext().spanId])
    await assertNoLingering()
  })
})
