// Outbound calls: what a call costs the CALLER's process, Node's global fetch vs tether's
// scopedFetch over its tuned pool, against the same downstream.
//
// - the downstream (a bare node:http server answering a small JSON body, keep-alive) runs in its
//   own process, pinned to core 1; the caller runs here, pinned to core 0;
// - the contenders take turns in windows of `--seconds` (A B, B A, ...), each window keeping
//   `--concurrency` calls in flight and reading every body;
// - each window reads this process's own process.cpuUsage(), so what is compared is caller CPU per
//   call; the figure is the median over rounds of baseline CPU/call ÷ candidate CPU/call (≥ 1: the
//   candidate costs no more than the baseline).
//
// Every contender's calls run inside a scope with a 10 s deadline (never reached); only scopedFetch
// reads it, so every one of its calls
// pays for what a call from a request handler pays: a child scope, the budget header, the
// budget-capped timeouts and the per-origin queue. "undici fetch" is the same undici as
// scopedFetch's, over an untuned Agent: the difference to it is tether's own layer.
//
//   node bench/outbound.mjs [--rounds 8] [--seconds 1] [--concurrency 32] [--json]
import http from 'node:http'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createScope, createScopedFetch } from '@tether/core'
import { median, onCore, pinned, startServer } from './lib.mjs'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '32' },
    json: { type: 'boolean' },
    serve: { type: 'boolean' },
  },
})

if (values.serve) {
  // The downstream process.
  const body = JSON.stringify({ value: 42 })
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port, node: process.version }))
  process.on('message', (message) => message === 'exit' && process.exit(0))
  process.on('disconnect', () => process.exit(0))
} else {
  await main()
}

async function main() {
  // The caller pins itself to core 0, where it was not started pinned by a parent.
  if (pinned && process.env.TETHER_BENCH_PINNED !== '1') {
    const { spawnSync } = await import('node:child_process')
    const argv = onCore(0, [process.execPath, fileURLToPath(import.meta.url), ...process.argv.slice(2)])
    const child = spawnSync(argv[0], argv.slice(1), {
      stdio: 'inherit',
      env: { ...process.env, TETHER_BENCH_PINNED: '1' },
    })
    process.exit(child.status ?? 1)
  }
  const rounds = Number(values.rounds)
  const seconds = Number(values.seconds)
  const concurrency = Number(values.concurrency)

  // The downstream on core 1 (startServer pins to core 0: wrap it so it lands on core 1 instead).
  const script = fileURLToPath(import.meta.url)
  const downstream = startServer(script, ['--serve'], [])
  if (pinned) {
    const { execFileSync } = await import('node:child_process')
    execFileSync('taskset', ['-pc', '1', String(downstream.child.pid)], { stdio: 'ignore' })
  }
  const { port } = await downstream.ask()
  const url = `http://127.0.0.1:${port}/`

  const undici = createRequire(new URL('../packages/core/package.json', import.meta.url))('undici')
  const plainAgent = new undici.Agent()
  const scoped = createScopedFetch()

  const contenders = {
    fetch: (u) => globalThis.fetch(u),
    'undici fetch': (u) => undici.fetch(u, { dispatcher: plainAgent }),
    scopedFetch: (u) => scoped(u),
  }

  async function window(name) {
    const call = contenders[name]
    let calls = 0
    let running = true
    const worker = async () => {
      while (running) {
        const response = await call(url)
        await response.json()
        calls++
      }
    }
    const started = process.cpuUsage()
    const t0 = performance.now()
    const stop = new Promise((resolve) => setTimeout(resolve, seconds * 1_000))
    // A fresh scope per window: its 10 s deadline is never reached within one.
    const scope = createScope({ timeout: 10_000 })
    const workers = scope.run(() => Array.from({ length: concurrency }, worker))
    await stop
    running = false
    await Promise.all(workers)
    scope.cancel()
    const used = process.cpuUsage(started)
    const elapsed = (performance.now() - t0) / 1_000
    return { cpuPerCall: (used.user + used.system) / calls, rate: calls / elapsed }
  }

  const pairs = [
    { name: 'outbound: fetch vs scopedFetch (tuned pool)', baseline: 'fetch', candidate: 'scopedFetch' },
    {
      name: 'outbound: undici fetch (untuned Agent) vs scopedFetch',
      baseline: 'undici fetch',
      candidate: 'scopedFetch',
    },
  ]
  // Warm every contender before measuring.
  for (const name of Object.keys(contenders)) await window(name)

  const samples = Object.fromEntries(pairs.map((p) => [p.name, { cpu: [], rate: [], base: [], cand: [] }]))
  for (let round = 0; round < rounds; round++) {
    for (const pair of pairs) {
      const first = round % 2 === 0
      const a = first ? await window(pair.baseline) : undefined
      const b = await window(pair.candidate)
      const base = a ?? (await window(pair.baseline))
      const s = samples[pair.name]
      s.cpu.push(base.cpuPerCall / b.cpuPerCall)
      s.rate.push(b.rate / base.rate)
      s.base.push(base)
      s.cand.push(b)
    }
  }
  await scoped.close()
  await plainAgent.close()
  downstream.stop()

  const results = pairs.map((pair) => {
    const s = samples[pair.name]
    return {
      ...pair,
      cpuRatio: median(s.cpu),
      cpuRatios: s.cpu,
      rateRatio: median(s.rate),
      baselineCpuUs: median(s.base.map((w) => w.cpuPerCall)),
      candidateCpuUs: median(s.cand.map((w) => w.cpuPerCall)),
      baselineRate: median(s.base.map((w) => w.rate)),
      candidateRate: median(s.cand.map((w) => w.rate)),
    }
  })
  const summary = { node: process.version, pinned, rounds, seconds, concurrency, results }
  if (values.json) console.log(JSON.stringify(summary))
  else {
    for (const r of results) {
      console.log(
        `${r.name}: caller CPU/call ${r.baselineCpuUs.toFixed(1)} µs vs ${r.candidateCpuUs.toFixed(1)} µs, ratio ${r.cpuRatio.toFixed(3)}; calls/s ${Math.round(r.baselineRate)} vs ${Math.round(r.candidateRate)} (${r.rateRatio.toFixed(3)})`,
      )
    }
    console.log(
      `node ${process.version}${pinned ? ', caller on core 0, downstream on core 1' : ''}, ${rounds} rounds of ${seconds} s windows, ${concurrency} calls in flight`,
    )
  }
}
