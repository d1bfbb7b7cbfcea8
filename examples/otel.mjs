// tether's lifecycle events (node:diagnostics_channel) as OpenTelemetry spans, following the
// semantic conventions: a missed deadline is an error of type `timeout`; a client that hangs up
// cancelled the request, which is not an error of the server (no `error.type`, status left unset).
//
// Import `instrumentTether()` into an app that has an OpenTelemetry SDK set up; or run this file
// (`node examples/otel.mjs` after `pnpm build`) to see the spans of four requests on the console.
import diagnostics from 'node:diagnostics_channel'
import { pathToFileURL } from 'node:url'
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import {
  DEADLINE_CHANNEL,
  LEAK_CHANNEL,
  LINGERING_CHANNEL,
  REQUEST_END_CHANNEL,
  REQUEST_START_CHANNEL,
  SHED_CHANNEL,
} from '@tether/core'

/**
 * Subscribes to tether's channels and records what they say on spans:
 *
 * - each request's span: the HTTP server span an HTTP instrumentation made (it is the active span
 *   when `tether:request:start` is published, synchronously, in the request's context), or else
 *   a SERVER span of its own, ended with the request's scope. Attributes `http.route`,
 *   `tether.request.end_reason` and `tether.deadline.budget_ms`; a missed deadline sets
 *   `error.type` = `timeout` and status ERROR; a shutdown sets `error.type` = `ShutdownError`; a
 *   hang-up or a cancellation is an event (`tether.request.canceled`) and leaves the status unset;
 * - events on that span: `tether.deadline` (a deadline of the request or of a child scope passed)
 *   and `tether.shed` (a pool, worker pool or outbound queue refused a call);
 * - lingering and leaked tasks outlive their request's span, so each becomes a short span of its
 *   own (`tether.task.lingering`, `tether.task.leaked`) linked to the request's span.
 *
 * @param {{ tracer?: import('@opentelemetry/api').Tracer }} [options]
 * @returns {() => void} unsubscribes
 */
export function instrumentTether({ tracer = trace.getTracer('tether') } = {}) {
  // Request scope → its span. Weak: a scope nobody holds any more takes its entry with it.
  const requests = new WeakMap()

  const handlers = {
    [REQUEST_START_CHANNEL]({ scope, method, deadline, request, response }) {
      const active = trace.getActiveSpan()
      const span =
        active ??
        tracer.startSpan(method, {
          kind: SpanKind.SERVER,
          attributes: { 'http.request.method': method, 'url.path': (request.url ?? '/').split('?')[0] },
        })
      if (deadline !== undefined) span.setAttribute('tether.deadline.budget_ms', Math.max(0, deadline - Date.now()))
      requests.set(scope, { span, own: active === undefined, method, response })
    },

    [REQUEST_END_CHANNEL]({ scope, route, reason, error }) {
      const entry = requests.get(scope)
      if (entry === undefined) return
      const { span, own, method, response } = entry
      span.setAttribute('tether.request.end_reason', reason)
      if (route !== null) {
        span.setAttribute('http.route', route)
        if (own) span.updateName(`${method} ${route}`)
      }
      if (reason === 'deadline') {
        span.setAttribute('error.type', 'timeout')
        span.setStatus({ code: SpanStatusCode.ERROR, message: error.message })
      } else if (reason === 'shutdown') {
        span.setAttribute('error.type', error.name)
        span.setStatus({ code: SpanStatusCode.ERROR, message: error.message })
      } else if (reason === 'hang-up' || reason === 'canceled') {
        // A cancellation: the work stopped because nobody wants the answer any more.
        span.addEvent('tether.request.canceled', {
          'tether.request.end_reason': reason,
          'exception.message': error.message,
        })
      } else if (own && response.headersSent) {
        // Finished: the status code is known; the semantic conventions make 5xx an error.
        span.setAttribute('http.response.status_code', response.statusCode)
        if (response.statusCode >= 500) {
          span.setAttribute('error.type', String(response.statusCode))
          span.setStatus({ code: SpanStatusCode.ERROR })
        }
      }
      if (own) span.end()
    },

    [DEADLINE_CHANNEL]({ scope, requestScope }) {
      requests
        .get(requestScope)
        ?.span.addEvent('tether.deadline', { 'tether.deadline.scope': scope === requestScope ? 'request' : 'child' })
    },

    [SHED_CHANNEL]({ source, error, requestScope, origin }) {
      const attributes = { 'tether.shed.source': source, 'exception.message': error.message }
      if (origin !== undefined) attributes['server.address'] = new URL(origin).hostname
      requests.get(requestScope)?.span.addEvent('tether.shed', attributes)
    },

    [LINGERING_CHANNEL]: (message) => taskSpan('tether.task.lingering', message),
    [LEAK_CHANNEL]: (message) => taskSpan('tether.task.leaked', message),
  }

  function taskSpan(name, { kind, tasks, method, route, pastEndMs, startedAt, requestScope }) {
    const request = requests.get(requestScope)
    const attributes = { 'tether.task.kind': kind, 'tether.task.count': tasks, 'tether.task.past_end_ms': pastEndMs }
    if (method !== null) attributes['http.request.method'] = method
    if (route !== null) attributes['http.route'] = route
    if (startedAt !== null) attributes['code.stacktrace'] = startedAt
    const links = request === undefined ? [] : [{ context: request.span.spanContext() }]
    tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes, links }).end()
  }

  for (const [name, handler] of Object.entries(handlers)) diagnostics.subscribe(name, handler)
  return () => {
    for (const [name, handler] of Object.entries(handlers)) diagnostics.unsubscribe(name, handler)
  }
}

// Run directly: an Express app answering four requests (fine, past its deadline, hung up, and one
// that leaves a task behind), its spans printed by the console exporter.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { BasicTracerProvider, ConsoleSpanExporter, SimpleSpanProcessor } = await import(
    '@opentelemetry/sdk-trace-base'
  )
  const { tether } = await import('@tether/express')
  const { default: express } = await import('express')
  const { setTimeout: sleep } = await import('node:timers/promises')
  const http = await import('node:http')

  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())] })
  const stop = instrumentTether({ tracer: provider.getTracer('tether-example') })
  const app = express()
  app.use(tether({ timeout: 200, status: 504, logger: false }))
  app.get('/fine', (_req, res) => {
    res.json({ ok: true })
  })
  app.get('/slow', async (req, res) => {
    // Stops at the deadline (tether has answered by then) or when the client hangs up.
    const stopped = await sleep(1_000, undefined, { signal: req.scope.signal }).then(
      () => false,
      () => true,
    )
    if (!stopped) res.json({ late: true })
  })
  app.get('/linger', (req, res) => {
    req.scope.track(sleep(50))
    res.json({ ok: true })
  })
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const base = `http://127.0.0.1:${server.address().port}`
  await fetch(`${base}/fine`).then((response) => response.text())
  await fetch(`${base}/slow`).then((response) => response.text())
  await fetch(`${base}/linger`).then((response) => response.text())
  await new Promise((resolve) => {
    const request = http.get(`${base}/slow`).on('error', resolve)
    setTimeout(() => request.destroy(), 50)
  })
  await sleep(100)
  stop()
  server.close()
  await provider.shutdown()
}
