// The apps every HTTP benchmark compares, by name: the bare frameworks, tether, and the references
// (a no-op middleware, the contract's floor, the frameworks' own timeouts). bench/http-server.mjs
// serves them over sockets; bench/in-process.mjs calls them directly, without sockets.
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks'
import { pathToFileURL } from 'node:url'
import connectTimeout from 'connect-timeout'
import express from 'express'
import Fastify from 'fastify'

const TIMEOUT_MS = 10_000 // never reached: the benchmark measures the cost of having a deadline
const hello = { hello: 'world' }
const task = async () => 1
const three = [task, task, task]

/**
 * The tether the apps are built with: this checkout's packages, or those of the checkout named by
 * TETHER_BUILD (bench/versus.mjs: another commit, built). One build per process: a process that
 * loads two copies of the package runs the second one's request path measurably slower.
 */
async function loadBuild(root) {
  const load = (name) =>
    root === undefined
      ? import(`@tether/${name}`)
      : import(pathToFileURL(`${root}/packages/${name}/dist/index.js`).href)
  const [core, expressAdapter, fastifyAdapter] = await Promise.all([load('core'), load('express'), load('fastify')])
  return {
    all: core.all,
    hardenServer: core.hardenServer,
    tetherExpress: expressAdapter.tether,
    tetherFastify: fastifyAdapter.tether,
  }
}
export const build = await loadBuild(process.env.TETHER_BUILD)
const { all, tetherExpress, tetherFastify } = build

// The contract's floor (see the contenders below): an AsyncLocalStorage of its own, entered for the
// rest of the chain the cheapest way Node has, as tether's runInScope() does: on Node 24 and later
// (AsyncContextFrame) through an AsyncResource that puts the caller's context back unrebuilt,
// where run() would build it again; on Node 22, run().
const floorStorage = new AsyncLocalStorage()
const floorStore = {}
const ignore = () => {}
function enterAndCall(storage, store, fn, first, second) {
  storage.enterWith(store)
  return fn(first, second)
}
const runInFloor =
  Number(process.versions.node.split('.')[0]) >= 24
    ? (storage, store, fn, first, second) =>
        new AsyncResource('floor').runInAsyncScope(enterAndCall, undefined, storage, store, fn, first, second)
    : (storage, store, fn, first, second) => storage.run(store, fn, first, second)

// The fan-out route: all() in the tether apps; Promise.all in the bare ones and in the tether apps
// marked `promiseAll`, which isolate what all() itself costs beside the middleware.
const fanOut = (useAll) => (useAll ? all(three) : Promise.all(three.map((t) => t())))

// The fan-out's floor, for the floor apps: the least any fan-out under the contract does beside
// Promise.all. Each task receives a signal (an AbortController per fan-out), runs in a context of
// the fan-out's own (one AsyncLocalStorage entry for all of them), and the signal aborts once they
// have settled, so that whatever a task left holding it is told to stop.
const fanOutStorage = new AsyncLocalStorage()
const fanOutDone = new Error('fan-out finished')
function startEach(tasks, signal) {
  const started = new Array(tasks.length)
  for (let index = 0; index < tasks.length; index++) started[index] = tasks[index](signal)
  return started
}
function fanOutFloor(tasks) {
  const controller = new AbortController()
  const started = runInFloor(fanOutStorage, controller, startEach, tasks, controller.signal)
  return Promise.all(started).then((values) => {
    controller.abort(fanOutDone)
    return values
  })
}

// The same statement run per request by one function 200 times, or by 200 copies of it once each
// (the footprint pairs of pairs.mjs). The copies are compiled from source so that each is code of
// its own, as the functions of a library are; both are called through an array of 200.
const COPIES = 200
const step = (index) => new Function('state', `state.n = (state.n * 31 + ${index}) | 0`)
const oneFunction = Array.from({ length: COPIES }, () => step(0))
oneFunction.fill(oneFunction[0])
const distinctFunctions = Array.from({ length: COPIES }, (_, index) => step(index))
const footprintState = { n: 0 }
function runEach(functions) {
  for (let i = 0; i < functions.length; i++) functions[i](footprintState)
}
// Memory instead of code: an array of 150 numbers filled and dropped per request, 1.2 KB of heap,
// about twice what tether allocates beyond the floor.
const allocate = [
  () => {
    const array = new Array(150)
    for (let i = 0; i < array.length; i++) array[i] = i
    footprintState.last = array
  },
]

function expressApp(kind, promiseAll = false) {
  const app = express()
  if (kind === 'tether') app.use(tetherExpress({ timeout: TIMEOUT_MS, logger: false }))
  if (kind === 'connect-timeout') app.use(connectTimeout(`${TIMEOUT_MS}ms`))
  if (kind === 'noop') app.use((_req, _res, next) => next())
  if (kind === 'floor') {
    app.use((_req, res, next) => {
      res.on('close', ignore)
      runInFloor(floorStorage, floorStore, next)
    })
  }
  app.get('/', (_req, res) => {
    res.json(hello)
  })
  app.get('/fanout', async (_req, res) => {
    res.json(await (kind === 'floor' ? fanOutFloor(three) : fanOut(kind === 'tether' && !promiseAll)))
  })
  return app
}

async function fastifyApp(kind, http2 = false, promiseAll = false, extra = undefined) {
  const app = Fastify(kind === 'handlerTimeout' ? { handlerTimeout: TIMEOUT_MS } : http2 ? { http2: true } : {})
  if (kind === 'tether') await app.register(tetherFastify, { timeout: TIMEOUT_MS, logger: false })
  if (kind === 'noop') app.addHook('onRequest', (_request, _reply, done) => done())
  if (kind === 'floor') {
    app.addHook('onRequest', (_request, reply, done) => {
      reply.raw.on('close', ignore)
      if (extra !== undefined) runEach(extra)
      runInFloor(floorStorage, floorStore, done)
    })
  }
  app.get('/', async () => hello)
  app.get('/fanout', async () => (kind === 'floor' ? fanOutFloor(three) : fanOut(kind === 'tether' && !promiseAll)))
  return app
}

export const contenders = {
  'express bare': () => expressApp('bare'),
  'express bare (2nd copy)': () => expressApp('bare'),
  'express + tether': () => expressApp('tether'),
  // What the production guide tells users to run: the middleware and a hardened server.
  'express + tether + hardenServer()': () => expressApp('tether'),
  'express + connect-timeout': () => expressApp('connect-timeout'),
  // What any per-request middleware or hook costs: one that does nothing.
  'express + a no-op middleware': () => expressApp('noop'),
  // The least any integration of tether's contract does per request: enter AsyncLocalStorage for
  // the handler and listen for the response's close; on /fanout, the fan-out's floor besides.
  "express + the contract's floor": () => expressApp('floor'),
  'express + tether, Promise.all': () => expressApp('tether', true),
  'fastify bare': () => fastifyApp('bare'),
  'fastify bare (2nd copy)': () => fastifyApp('bare'),
  'fastify + tether': () => fastifyApp('tether'),
  'fastify + tether + hardenServer()': () => fastifyApp('tether'),
  'fastify + handlerTimeout': () => fastifyApp('handlerTimeout'),
  'fastify + a no-op onRequest hook': () => fastifyApp('noop'),
  "fastify + the contract's floor": () => fastifyApp('floor'),
  "fastify + the contract's floor + 200 calls of one function": () => fastifyApp('floor', false, false, oneFunction),
  "fastify + the contract's floor + 200 distinct functions": () => fastifyApp('floor', false, false, distinctFunctions),
  "fastify + the contract's floor + 1.2 KB allocated": () => fastifyApp('floor', false, false, allocate),
  'fastify + tether, Promise.all': () => fastifyApp('tether', false, true),
  // HTTP/2 cleartext (h2c), for bench/http2.mjs.
  'fastify h2 bare': () => fastifyApp('bare', true),
  'fastify h2 bare (2nd copy)': () => fastifyApp('bare', true),
  'fastify h2 + tether': () => fastifyApp('tether', true),
}
