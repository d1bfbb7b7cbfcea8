// What one request costs tether, counted rather than timed: a shared machine cannot time, but it
// can count exactly. For each pair (a bare app and the same app with tether, in this one process),
// the same keep-alive client sends the same requests, and everything below is counted while they
// run; the difference per request is tether's:
//
// - `listeners`: listeners added to EventEmitters (req, res, sockets) and EventTargets (signals);
// - `async`: async resources created (promises, timers, immediates: async_hooks' init events);
// - `controllers`: AbortControllers constructed;
// - `timers`: setTimeout/setInterval/setImmediate calls.
//
//   node bench/hot-path.mjs            prints a table
//   node bench/hot-path.mjs --json     prints the figures as JSON (test/hot-path.test.ts reads them)
//
// Uses the built packages (pnpm build).
import { createHook } from 'node:async_hooks'
import { EventEmitter } from 'node:events'
import http from 'node:http'
import { all, hardenServer } from '@tether/core'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'

const WARMUP = 300
const MEASURED = 500
const TIMEOUT_MS = 10_000
const hello = { hello: 'world' }
const task = async () => 1
const three = [task, task, task]

// ---- counting ---------------------------------------------------------------------------------
const counts = { listeners: 0, async: 0, controllers: 0, timers: 0 }
let counting = false

for (const name of ['on', 'addListener', 'prependListener']) {
  const original = EventEmitter.prototype[name]
  EventEmitter.prototype[name] = function (...args) {
    if (counting) counts.listeners++
    return original.apply(this, args)
  }
}
const addEventListener = EventTarget.prototype.addEventListener
EventTarget.prototype.addEventListener = function (...args) {
  if (counting) counts.listeners++
  return addEventListener.apply(this, args)
}
const Controller = globalThis.AbortController
globalThis.AbortController = class CountedAbortController extends Controller {
  constructor() {
    super()
    if (counting) counts.controllers++
  }
}
for (const name of ['setTimeout', 'setInterval', 'setImmediate']) {
  const original = globalThis[name]
  globalThis[name] = function (...args) {
    if (counting) counts.timers++
    return original.apply(this, args)
  }
}
createHook({
  init() {
    if (counting) counts.async++
  },
}).enable()

// ---- the apps -----------------------------------------------------------------------------------
function expressApp(withTether, { fanout = false } = {}) {
  const app = express()
  if (withTether) app.use(tetherExpress({ timeout: TIMEOUT_MS, logger: false }))
  app.get(
    '/',
    fanout
      ? async (_req, res) => {
          res.json(withTether ? await all(three) : await Promise.all(three.map((t) => t())))
        }
      : (_req, res) => {
          res.json(hello)
        },
  )
  return app
}

async function fastifyApp(withTether, { fanout = false } = {}) {
  const app = Fastify()
  if (withTether) await app.register(tetherFastify, { timeout: TIMEOUT_MS, logger: false })
  app.get('/', fanout ? async () => (withTether ? all(three) : Promise.all(three.map((t) => t()))) : async () => hello)
  return app
}

async function listenExpress(app, harden) {
  const server = http.createServer(app)
  if (harden) hardenServer(server)
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: server.address().port, close: () => new Promise((resolve) => server.close(resolve)) }
}

async function listenFastify(app, harden) {
  await app.listen({ port: 0, host: '127.0.0.1' })
  if (harden) hardenServer(app.server)
  return { port: app.server.address().port, close: () => app.close() }
}

const pairs = {
  express: async (withTether) => listenExpress(expressApp(withTether), false),
  'express, hardenServer()': async (withTether) => listenExpress(expressApp(withTether), withTether),
  'express fan-out: Promise.all vs all()': async (withTether) =>
    listenExpress(expressApp(withTether, { fanout: true }), false),
  fastify: async (withTether) => listenFastify(await fastifyApp(withTether), false),
  'fastify, hardenServer()': async (withTether) => listenFastify(await fastifyApp(withTether), withTether),
  'fastify fan-out: Promise.all vs all()': async (withTether) =>
    listenFastify(await fastifyApp(withTether, { fanout: true }), false),
}

// ---- the client ---------------------------------------------------------------------------------
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })

function get(port) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume()
        res.on('end', resolve)
      })
      .on('error', reject)
  })
}

async function measure(port) {
  for (let i = 0; i < WARMUP; i++) await get(port)
  for (const key of Object.keys(counts)) counts[key] = 0
  counting = true
  for (let i = 0; i < MEASURED; i++) await get(port)
  counting = false
  return Object.fromEntries(Object.entries(counts).map(([key, value]) => [key, value / MEASURED]))
}

const results = {}
for (const [name, start] of Object.entries(pairs)) {
  const bare = await start(false)
  const tethered = await start(true)
  // Interleaved twice, keeping the lower count of each: a stray timer of the machine's own (a
  // keep-alive check, a GC callback) only ever adds.
  const first = { bare: await measure(bare.port), tether: await measure(tethered.port) }
  const second = { tether: await measure(tethered.port), bare: await measure(bare.port) }
  results[name] = Object.fromEntries(
    Object.keys(counts).map((key) => {
      const perBare = Math.min(first.bare[key], second.bare[key])
      const perTether = Math.min(first.tether[key], second.tether[key])
      return [key, Math.round((perTether - perBare) * 100) / 100]
    }),
  )
  await bare.close()
  await tethered.close()
  agent.destroy()
}

if (process.argv.includes('--json')) {
  process.stdout.write(`${JSON.stringify(results)}\n`)
} else {
  console.log('what tether adds per request (tether minus bare), counted:')
  console.log(`| pair | ${Object.keys(counts).join(' | ')} |`)
  console.log(
    `| --- | ${Object.keys(counts)
      .map(() => '---')
      .join(' | ')} |`,
  )
  for (const [name, row] of Object.entries(results)) {
    console.log(`| ${name} | ${Object.values(row).join(' | ')} |`)
  }
}
