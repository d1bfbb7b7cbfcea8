// Preloaded (`--require`) into every process of a framework's own test suite, so that every app the
// suite creates has tether first: each `express()` app (sub-apps included) does `app.use(tether())`
// and each Fastify instance does `register(tether)` before anything else. It replaces the
// framework's factory in the module cache before any test loads it: CommonJS `require` returns the
// cached exports, and so does an ES module's `import` of a CommonJS file already in the cache (its
// named exports are read from the cached object), so no loader hook is needed.
//
// TETHER_SUITE_TARGET  absolute path of the file exporting the factory (Express's lib/express.js,
//                      Fastify's fastify.js)
// TETHER_SUITE_KIND    express | fastify
// TETHER_SUITE_MODE    tether (default) | noop: the same wiring with a middleware or plugin that does
//                      nothing, to tell tether's effects from those of having anything mounted first
//                      | hooks (Fastify): a plugin adding tether's decorator and hooks, each doing
//                      nothing, to tell tether's effects from those of the hooks' mere presence
// TETHER_SUITE_REPORT  file to which each process appends, at exit, a line of JSON with tether's
//                      `inspect()` (requests still in flight, lingering tasks, counters)
'use strict'

const { appendFileSync } = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..', '..')
const target = process.env.TETHER_SUITE_TARGET
const kind = process.env.TETHER_SUITE_KIND
const mode = process.env.TETHER_SUITE_MODE || 'tether'
const report = process.env.TETHER_SUITE_REPORT

if (!target || (kind !== 'express' && kind !== 'fastify')) {
  throw new Error('preload.cjs needs TETHER_SUITE_TARGET and TETHER_SUITE_KIND (express or fastify)')
}

const core = require(path.join(root, 'packages/core/dist/index.js'))
const adapter = require(path.join(root, 'packages/core/dist/adapter.js'))

function copyStatics(from, to) {
  for (const key of Reflect.ownKeys(from)) {
    if (key === 'length' || key === 'name' || key === 'prototype') continue
    Object.defineProperty(to, key, Object.getOwnPropertyDescriptor(from, key))
  }
}

function wrapExpress(createApplication) {
  const { tether } = require(path.join(root, 'packages/express/dist/index.js'))
  function noop(_req, _res, next) {
    next()
  }
  function express(...args) {
    const app = createApplication.apply(this, args)
    // A fresh middleware per app, as a user would write it.
    app.use(mode === 'tether' ? tether() : noop)
    return app
  }
  copyStatics(createApplication, express)
  return express
}

function appendHook(existing, hook) {
  if (existing === undefined) return [hook]
  return Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}

function passThrough(_request, _reply, done) {
  done()
}

// tether's footprint on an instance without its behaviour: the same decorator and the same hooks,
// each doing nothing. A test that fails with this as well counts hooks, not what tether does.
async function hooksPlugin(app) {
  app.decorateRequest('scope', null)
  app.addHook('onRequest', passThrough)
  app.addHook('preClose', async () => {})
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    if (methods.some((method) => method !== 'GET' && method !== 'HEAD' && method !== 'TRACE')) {
      route.preValidation = appendHook(route.preValidation, passThrough)
    }
    route.preHandler = appendHook(route.preHandler, passThrough)
  })
}

function wrapFastify(original) {
  const fp = require(require.resolve('fastify-plugin', { paths: [path.join(root, 'packages/fastify')] }))
  const plugin =
    mode === 'noop'
      ? fp(async function noopPlugin() {}, { fastify: '5.x', name: 'noop-plugin' })
      : mode === 'hooks'
        ? fp(hooksPlugin, { fastify: '5.x', name: 'hooks-plugin' })
        : require(path.join(root, 'packages/fastify/dist/index.js')).default
  function fastify(...args) {
    const app = original.apply(this, args)
    app.register(plugin)
    return app
  }
  copyStatics(original, fastify)
  // fastify.js exports the factory as itself, `.fastify` and `.default`.
  fastify.fastify = fastify
  fastify.default = fastify
  return fastify
}

const original = require(target)
require.cache[target].exports = kind === 'express' ? wrapExpress(original) : wrapFastify(original)

// Every response tether binds, with its scope: at exit, a response still open is one the suite
// never answered (tether rightly lists it in flight); a response that is over while its scope has
// not ended is one tether failed to let go of.
const attached = []
if (report && mode === 'tether') {
  const attach = adapter.Tether.prototype.attach
  adapter.Tether.prototype.attach = function attachAndRecord(req, res, source) {
    const scope = attach.call(this, req, res, source)
    attached.push({ res, scope })
    return scope
  }
}

if (report) {
  process.on('exit', () => {
    const snapshot = core.inspect()
    let unanswered = 0
    let stuck = 0
    for (const { res, scope } of attached) {
      const over = res.writableFinished || res.destroyed
      if (!over) unanswered++
      else if (!scope.signal.aborted) stuck++
    }
    const line = {
      pid: process.pid,
      argv: process.argv.slice(1),
      inflight: snapshot.inflight,
      unanswered,
      stuck,
      lingering: snapshot.lingering.length,
      counters: snapshot.counters,
    }
    appendFileSync(report, `${JSON.stringify(line)}\n`)
  })
}
