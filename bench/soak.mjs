// Memory soak: a million requests against each adapter, a third past their deadline and a fifth
// hung up by the client, the rest finishing at once (half of those fanning out with all()). The
// server's heap after a full GC is read after the first 10,000 requests and at the end: it must
// stay within a few MB, with no MaxListenersExceededWarning and nothing in flight at the end.
//
//   node bench/soak.mjs [--requests 1000000] [--concurrency 128] [--adapter express|fastify] [--json]
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startServer } from './lib.mjs'

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '1000000' },
    concurrency: { type: 'string', default: '128' },
    deadline: { type: 'string', default: '10' },
    adapter: { type: 'string' },
    json: { type: 'boolean' },
  },
})
const total = Number(values.requests)
const concurrency = Number(values.concurrency)
const BASELINE_AT = 10_000

/** What request number `i` does: 1/3 time out, 1/5 hang up, the rest finish (half fan out). */
function kind(i) {
  const slot = i % 15
  if (slot < 5) return 'slow'
  if (slot < 8) return 'hangup'
  return slot % 2 === 0 ? 'fast' : 'fanout'
}

function get(agent, port, path) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode))
      res.on('error', () => resolve(0))
    })
    req.on('error', () => resolve(0))
  })
}

/** A client that gives up: a fresh connection, destroyed a moment after the request is sent. */
function hangUp(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/hang', agent: false })
    req.on('error', () => resolve(0))
    req.on('response', (res) => res.resume())
    setTimeout(() => {
      req.destroy()
      resolve(-1)
    }, 2)
  })
}

async function soak(adapter) {
  const server = startServer(
    fileURLToPath(new URL('./soak-server.mjs', import.meta.url)),
    [adapter, values.deadline],
    ['--expose-gc'],
  )
  const { ask } = server
  const { port, node } = await ask()
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
  const statuses = new Map()
  let next = 0
  let baseline
  const started = Date.now()

  async function worker() {
    for (;;) {
      const i = next++
      if (i >= total) return
      const what = kind(i)
      const status = what === 'hangup' ? await hangUp(port) : await get(agent, port, `/${what}`)
      const key = `${what} ${status}`
      statuses.set(key, (statuses.get(key) ?? 0) + 1)
      if (i === BASELINE_AT) baseline = await ask('heap')
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const end = await ask('heap')
  agent.destroy()
  server.stop()
  const mb = (bytes) => Math.round((bytes / 1024 / 1024) * 100) / 100
  return {
    adapter,
    node,
    requests: total,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    heapAfter10kMB: mb(baseline.heapUsed),
    heapAtEndMB: mb(end.heapUsed),
    growthMB: mb(end.heapUsed - baseline.heapUsed),
    maxListenersWarnings: end.warnings.filter((warning) => warning.startsWith('MaxListenersExceededWarning')).length,
    warnings: end.warnings,
    inflightAtEnd: end.inflight,
    lingeringAtEnd: end.lingering,
    counters: end.counters,
    statuses: Object.fromEntries([...statuses].sort()),
  }
}

const adapters = values.adapter ? [values.adapter] : ['express', 'fastify']
const results = []
for (const adapter of adapters) {
  const result = await soak(adapter)
  results.push(result)
  if (!values.json) {
    console.log(
      `${adapter}: ${result.requests} requests in ${result.seconds} s; heap after GC ${result.heapAfter10kMB} MB after 10k, ${result.heapAtEndMB} MB at the end (${result.growthMB >= 0 ? '+' : ''}${result.growthMB} MB); MaxListenersExceededWarning: ${result.maxListenersWarnings}; in flight at the end: ${result.inflightAtEnd}; lingering: ${result.lingeringAtEnd}`,
    )
    console.log(`  ${JSON.stringify(result.statuses)}`)
  }
}
if (values.json) console.log(JSON.stringify(results))
