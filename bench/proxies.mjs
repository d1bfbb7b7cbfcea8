// Life behind a proxy, measured through real nginx and haproxy on 127.0.0.1 (Debian packages,
// installed with apt-get when missing and the script runs as root). Two scenarios, each with
// steady GET and POST load from keep-alive clients, and each printing failed requests:
//
// 1. Rolling restart: two upstreams (bench/proxy-upstream.mjs) behind the proxy; SIGTERM one,
//    start it again once it has exited, then the other. Per upstream shutdown: naive
//    `server.close()`, tether's `shutdown()` with its default drain (0), with `drain: 1000`.
// 2. The same rolling restart behind a proxy that retries 503 (nginx `proxy_next_upstream error
//    timeout http_503`, haproxy `retry-on conn-failure empty-response 503`), with one request in
//    ten answered by its 200 ms deadline (tether's default status): tether's defaults, and the
//    production guide's recipe (`drain: 1000`).
// 3. Deadline answers behind a proxy that retries 503: one request in ten never answers, so its
//    200 ms deadline does, with tether's default status or `status: 503`. Failed = a normal
//    request that did not get its 200; "runs" = how many times the upstreams started the slow
//    requests.
// 4. Hang-ups: a client sends a request that never answers and hangs up 100 ms later; does the
//    upstream's scope learn of it (tether's clientClosed) within a second, long before its 5 s
//    deadline? nginx by default, haproxy by default and with `option abortonclose`.
//
//   node bench/proxies.mjs [--rounds N] [--only restarts|retrying|deadlines|hangups] [--json]
//   (KEEP_PROXY_DIR=1 keeps each temporary directory, with the proxy's config and error log)
//
// Everything is bounded: each load phase has a fixed duration, every request a 10 s timeout,
// every process is stopped by its PID, and the configs live in a temporary directory.
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { aptInstall, has } from './lib.mjs'

const upstreamScript = fileURLToPath(new URL('proxy-upstream.mjs', import.meta.url))
const CONCURRENCY = 16
const REQUEST_TIMEOUT_MS = 10_000

function ensureProxies() {
  const missing = ['nginx', 'haproxy'].filter((name) => !has(name) && !has(`/usr/sbin/${name}`))
  if (missing.length === 0) return
  if (!aptInstall(missing)) {
    throw new Error(`bench/proxies.mjs needs ${missing.join(' and ')} (apt-get install -y nginx haproxy)`)
  }
}

function bin(name) {
  return has(name) ? name : `/usr/sbin/${name}`
}

/** A free port on 127.0.0.1 (asked of the kernel, then released). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function nginxConfig(dir, listen, upstreams, { retry503 = false } = {}) {
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(dir, sub), { recursive: true })
  return `worker_processes 1;
user root;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log error;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app {
${upstreams.map((port) => `    server 127.0.0.1:${port};`).join('\n')}
    keepalive 32;
  }
  server {
    listen 127.0.0.1:${listen};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${retry503 ? '      proxy_next_upstream error timeout http_503;\n' : ''}    }
  }
}
`
}

function haproxyConfig(_dir, listen, upstreams, { retry503 = false, abortOnClose = false } = {}) {
  return `global
  maxconn 1024
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch
frontend fe
  bind 127.0.0.1:${listen}
  default_backend be
backend be
  balance roundrobin
${retry503 ? '  retry-on conn-failure empty-response 503\n' : ''}${abortOnClose ? '  option abortonclose\n' : ''}${upstreams.map((port, i) => `  server u${i} 127.0.0.1:${port} check`).join('\n')}
`
}

const proxies = {
  nginx: {
    config: nginxConfig,
    start: (file) => spawn(bin('nginx'), ['-c', file, '-p', path.dirname(file)], { stdio: 'ignore' }),
  },
  haproxy: {
    config: haproxyConfig,
    start: (file) => spawn(bin('haproxy'), ['-f', file, '-db'], { stdio: 'ignore' }),
  },
}

/** Starts an upstream and resolves once it listens; without `status`, tether's default answers deadlines. */
function startUpstream(port, mode, status, timeout = 200) {
  const args = ['--port', String(port), '--mode', mode, '--timeout', String(timeout)]
  if (status !== undefined) args.push('--status', status)
  const child = spawn(process.execPath, [upstreamScript, ...args], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const ready = new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`upstream on ${port} exited with ${code} before it was ready`)))
  })
  return { child, ready }
}

function stopByPid(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  const exited = new Promise((resolve) => child.once('exit', resolve))
  process.kill(child.pid, signal)
  return exited
}

/** Waits until the proxy answers a GET with 200 (its upstreams are up and checked). */
async function proxyReady(port) {
  const until = Date.now() + 15_000
  while (Date.now() < until) {
    const status = await request(port, 'GET', '/', new http.Agent()).catch(() => 0)
    if (status === 200) return
    await sleep(100)
  }
  throw new Error(`the proxy on ${port} did not answer in 15 s`)
}

function request(port, method, pathname, agent) {
  return new Promise((resolve, reject) => {
    const body = method === 'POST' ? JSON.stringify({ hello: 'world' }) : undefined
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: pathname,
        agent,
        timeout: REQUEST_TIMEOUT_MS,
        headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode))
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * Runs CONCURRENCY keep-alive clients against the proxy until `stop()` is called, alternating GET
 * and POST; every `slowEvery`-th request of a client goes to /slow instead.
 */
function load(port, slowEvery = 0) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  const tally = { GET: { sent: 0, failed: 0 }, POST: { sent: 0, failed: 0 }, slow: { sent: 0, statuses: {} } }
  const errors = {}
  let running = true
  const client = async (id) => {
    for (let i = 0; running; i++) {
      const slow = slowEvery > 0 && (i + id) % slowEvery === 0
      const method = slow ? 'GET' : i % 2 === 0 ? 'GET' : 'POST'
      let status
      try {
        status = await request(port, method, slow ? '/slow' : '/', agent)
      } catch (error) {
        status = error.code ?? error.message
        errors[status] = (errors[status] ?? 0) + 1
      }
      if (slow) {
        tally.slow.sent++
        tally.slow.statuses[status] = (tally.slow.statuses[status] ?? 0) + 1
      } else {
        tally[method].sent++
        if (status !== 200) {
          tally[method].failed++
          if (typeof status === 'number') errors[status] = (errors[status] ?? 0) + 1
        }
      }
    }
  }
  const clients = Array.from({ length: CONCURRENCY }, (_, id) => client(id))
  return {
    async stop() {
      running = false
      await Promise.all(clients)
      agent.destroy()
      return { ...tally, errors }
    },
  }
}

async function withProxy(kind, settings, upstreamPorts, body) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `tether-${kind}-`))
  const port = await freePort()
  const file = path.join(dir, `${kind}.conf`)
  writeFileSync(file, proxies[kind].config(dir, port, upstreamPorts, settings))
  const proxy = proxies[kind].start(file)
  try {
    await proxyReady(port)
    return await body(port)
  } finally {
    await stopByPid(proxy, 'SIGTERM')
    if (process.env.KEEP_PROXY_DIR) console.error(dir)
    else rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Restarts the two upstreams one after the other under load. `settings` are the proxy's;
 * `slowEvery` > 0 sends every slowEvery-th request of a client to /slow, answered by its deadline.
 */
async function rollingRestart(kind, mode, settings = {}, slowEvery = 0) {
  const ports = [await freePort(), await freePort()]
  const upstreams = ports.map((port) => startUpstream(port, mode))
  await Promise.all(upstreams.map((u) => u.ready))
  try {
    return await withProxy(kind, settings, ports, async (proxyPort) => {
      const running = load(proxyPort, slowEvery)
      await sleep(1_000)
      let stalled = 0
      for (let i = 0; i < 2; i++) {
        await stopByPid(upstreams[i].child)
        upstreams[i] = startUpstream(ports[i], mode)
        await upstreams[i].ready
        // As a rolling restart does, wait until the proxy routes to the restarted upstream again
        // before restarting the next one: nginx retries an upstream it marked failed only after
        // fail_timeout (10 s), haproxy once its health check (every 2 s) passes.
        if (!(await proxyRoutesTo(ports[i]))) stalled++
      }
      return { ...(await running.stop()), stalled }
    })
  } finally {
    await Promise.all(upstreams.map((u) => stopByPid(u.child, 'SIGKILL')))
  }
}

/**
 * Waits until the upstream on `port` has received 100 requests; false if the proxy did not route
 * that many to it within 25 s (a proxy that keeps marking its upstreams failed), and the restart
 * goes on.
 */
async function proxyRoutesTo(port) {
  const until = Date.now() + 25_000
  while (Date.now() < until) {
    const { served } = await stats(port)
    if (served >= 100) return true
    await sleep(100)
  }
  return false
}

function stats(port) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/stats', agent: false }, (res) => {
        let text = ''
        res.on('data', (chunk) => {
          text += chunk
        })
        res.on('end', () => resolve(JSON.parse(text)))
        res.on('error', reject)
      })
      .on('error', reject)
  })
}

async function retriedDeadlines(kind, status) {
  const ports = [await freePort(), await freePort()]
  const upstreams = ports.map((port) => startUpstream(port, 'tether', status === 'default' ? undefined : status))
  await Promise.all(upstreams.map((u) => u.ready))
  try {
    const result = await withProxy(kind, { retry503: true }, ports, async (proxyPort) => {
      const running = load(proxyPort, 10)
      await sleep(4_000)
      return running.stop()
    })
    let started = 0
    for (const port of ports) started += (await stats(port)).slowStarted
    return { ...result, slowStarted: started }
  } finally {
    await Promise.all(upstreams.map((u) => stopByPid(u.child, 'SIGKILL')))
  }
}

/** Hang-ups through the proxy: does the upstream's scope learn of them? */
async function hangups(kind, settings, count = 10) {
  const port = await freePort()
  const upstream = startUpstream(port, 'tether', undefined, 5_000)
  await upstream.ready
  try {
    return await withProxy(kind, settings, [port], async (proxyPort) => {
      const before = (await stats(port)).clientClosed
      for (let i = 0; i < count; i++) {
        await new Promise((resolve) => {
          const req = http.get({ host: '127.0.0.1', port: proxyPort, path: '/slow', agent: false })
          req.on('error', () => resolve())
          setTimeout(() => {
            req.destroy()
            resolve()
          }, 100)
        })
      }
      // Long enough for any proxy to pass the hang-up on, far shorter than the 5 s deadline.
      await sleep(1_000)
      return { hangups: count, seen: (await stats(port)).clientClosed - before }
    })
  } finally {
    await stopByPid(upstream.child, 'SIGKILL')
  }
}

function add(total, result) {
  if (total === undefined) return structuredClone(result)
  for (const method of ['GET', 'POST']) {
    total[method].sent += result[method].sent
    total[method].failed += result[method].failed
  }
  total.slow.sent += result.slow.sent
  for (const [status, n] of Object.entries(result.slow.statuses)) {
    total.slow.statuses[status] = (total.slow.statuses[status] ?? 0) + n
  }
  for (const [code, n] of Object.entries(result.errors)) total.errors[code] = (total.errors[code] ?? 0) + n
  if (result.slowStarted !== undefined) total.slowStarted += result.slowStarted
  if (result.stalled !== undefined) total.stalled += result.stalled
  return total
}

export async function runProxies(rounds, only) {
  ensureProxies()
  const restarts = []
  const retrying = []
  const deadlines = []
  for (const kind of ['nginx', 'haproxy']) {
    for (const mode of only === undefined || only === 'restarts' ? ['naive', 'nodrain', 'tether'] : []) {
      let total
      for (let round = 0; round < rounds; round++) {
        console.error(`> rolling restart through ${kind}, upstream shutdown: ${mode} (round ${round + 1}/${rounds})`)
        total = add(total, await rollingRestart(kind, mode))
      }
      restarts.push({ proxy: kind, mode, ...total })
    }
    for (const mode of only === undefined || only === 'retrying' ? ['nodrain', 'tether'] : []) {
      let total
      for (let round = 0; round < rounds; round++) {
        console.error(
          `> rolling restart through ${kind} retrying 503, deadline answers in the load, upstream shutdown: ${mode} (round ${round + 1}/${rounds})`,
        )
        total = add(total, await rollingRestart(kind, mode, { retry503: true }, 10))
      }
      retrying.push({ proxy: kind, mode, ...total })
    }
    for (const status of only === undefined || only === 'deadlines' ? ['default', '503'] : []) {
      let total
      for (let round = 0; round < rounds; round++) {
        console.error(`> deadline answers ${status} through ${kind} retrying 503 (round ${round + 1}/${rounds})`)
        total = add(total, await retriedDeadlines(kind, status))
      }
      deadlines.push({ proxy: kind, status, ...total })
    }
  }
  const hangupRows = []
  if (only === undefined || only === 'hangups') {
    for (const [kind, setting, settings] of [
      ['nginx', 'defaults', {}],
      ['haproxy', 'defaults', {}],
      ['haproxy', '`option abortonclose`', { abortOnClose: true }],
    ]) {
      console.error(`> hang-ups through ${kind}, ${setting}`)
      hangupRows.push({ proxy: kind, setting, ...(await hangups(kind, settings, 10 * rounds)) })
    }
  }
  return { node: process.version, rounds, concurrency: CONCURRENCY, restarts, retrying, deadlines, hangups: hangupRows }
}

const MODE = {
  naive: 'naive `server.close()`',
  nodrain: 'tether `shutdown()`, default `drain` (0)',
  tether: 'tether `shutdown()`, `drain: 1000`',
}

const statuses = (counts) =>
  Object.entries(counts)
    .map(([status, n]) => `${status} ×${n}`)
    .join(', ') || 'none'

/** The BENCHMARKS.md section for these results. */
export function proxiesSection(results) {
  const errors = (r) =>
    Object.entries(r.errors)
      .map(([code, n]) => `${code} ×${n}`)
      .join(', ') || 'none'
  const restartRows = results.restarts.map(
    (r) =>
      `| ${r.proxy} | ${MODE[r.mode]} | ${r.GET.failed} / ${r.GET.sent} | ${r.POST.failed} / ${r.POST.sent} | ${errors(r)} |`,
  )
  const retryingRows = (results.retrying ?? []).map(
    (r) =>
      `| ${r.proxy} | ${MODE[r.mode]} | ${r.GET.failed} / ${r.GET.sent} | ${r.POST.failed} / ${r.POST.sent} | ${errors(r)} | ${statuses(r.slow.statuses)} | ${r.stalled} |`,
  )
  const deadlineRows = results.deadlines.map(
    (r) =>
      `| ${r.proxy} | ${r.status === 'default' ? "tether's default" : r.status} | ${r.GET.failed + r.POST.failed} / ${r.GET.sent + r.POST.sent} | ${r.slow.sent} | ${r.slowStarted} (${(r.slowStarted / Math.max(r.slow.sent, 1)).toFixed(2)}×) | ${statuses(r.slow.statuses)} |`,
  )
  return `## Behind nginx and haproxy

\`node bench/proxies.mjs --rounds ${results.rounds}\` (Node ${results.node}${results.when === undefined ? '' : `, ${results.when}`}; nginx and haproxy from Debian, default
settings but for those named; ${results.concurrency} keep-alive clients alternating GET and POST through the proxy; sums
over ${results.rounds} round${results.rounds === 1 ? '' : 's'}). Upstreams: Express with tether and \`hardenServer()\`'s defaults.

**Rolling restart**: two upstreams; SIGTERM one, start it again, wait until the proxy routes to it
again, then the same for the other, under load.
nginx: \`keepalive 32\` upstream, HTTP/1.1, default \`proxy_next_upstream\`. haproxy: \`check\`,
default \`http-reuse safe\`, \`retries 3\`, \`option redispatch\`. Failed = anything but a 200.

| proxy | upstream shutdown | GET failed / sent | POST failed / sent | what the failed got |
| --- | --- | --- | --- | --- |
${restartRows.join('\n')}
${
  retryingRows.length === 0
    ? ''
    : `
**Rolling restart behind a proxy that retries 503**: the same restart, with nginx
\`proxy_next_upstream error timeout http_503\` and haproxy \`retry-on conn-failure empty-response 503\`,
and one request in ten answered by its 200 ms deadline with tether's default status. "Not routed
again" counts restarted upstreams the proxy sent fewer than 100 requests within 25 s.${
        results.retryingRounds === undefined ? '' : `\nSums over ${results.retryingRounds} rounds.`
      }

| proxy | upstream shutdown | GET failed / sent | POST failed / sent | what the failed got | what the deadline answers got | not routed again |
| --- | --- | --- | --- | --- | --- | --- |
${retryingRows.join('\n')}
`
}
**Deadline answers behind a proxy that retries 503**: nginx \`proxy_next_upstream error timeout
http_503\`, haproxy \`retry-on conn-failure empty-response 503\`. One request in ten never answers,
so its 200 ms deadline does. Failed = a normal request that did not get its 200; runs = how many
times the upstreams started the slow requests (1.00× means none was retried).

| proxy | deadline status | normal requests failed / sent | slow requests | runs of slow requests | what the slow requests got |
| --- | --- | --- | --- | --- | --- |
${deadlineRows.join('\n')}
${
  (results.hangups ?? []).length === 0
    ? ''
    : `
**Hang-ups through the proxy**: a client sends a request the upstream never answers and hangs up
100 ms later; counted is how many of those the upstream's tether saw as hang-ups (\`clientClosed\`)
within a second, long before the request's 5 s deadline.

| proxy | setting | hang-ups | seen by the upstream within 1 s |
| --- | --- | --- | --- |
${results.hangups.map((r) => `| ${r.proxy} | ${r.setting} | ${r.hangups} | ${r.seen} |`).join('\n')}
`
}`
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: { rounds: { type: 'string', default: '1' }, only: { type: 'string' }, json: { type: 'boolean' } },
  })
  const results = await runProxies(Number(values.rounds), values.only)
  if (values.json) console.log(JSON.stringify(results))
  else console.log(proxiesSection(results))
}
