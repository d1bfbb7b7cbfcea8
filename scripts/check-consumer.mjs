// Compiles a consumer app against the packed packages, the way a user's strict TypeScript project
// sees them: `skipLibCheck: false` (TypeScript's default), `strict`, `NodeNext`, an ES module
// (app.mts) and a CommonJS one (app.cts), first without the optional peer prom-client installed,
// then with it, under TypeScript 5.9 and 7. publint and arethetypeswrong do not catch a
// declaration that names something the shipped .d.ts files lack; only a real compile does.
//
// Run after `pnpm build`, through pnpm (`pnpm lint:consumer`): it packs with pnpm, which turns
// `workspace:^` into real versions, and installs the tarballs with npm into .cache/consumer.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const work = join(root, '.cache', 'consumer')
const tarballs = join(work, 'tarballs')
const app = join(work, 'app')
rmSync(work, { recursive: true, force: true })
mkdirSync(tarballs, { recursive: true })
mkdirSync(app, { recursive: true })

const run = (command, args, cwd) => execFileSync(command, args, { cwd, stdio: 'pipe', encoding: 'utf8' })
// pnpm runs this script with npm_execpath pointing at itself.
const pnpm = process.env.npm_execpath
if (!pnpm) throw new Error('run this through pnpm: pnpm lint:consumer')

const packed = {}
for (const name of readdirSync(join(root, 'packages'))) {
  run(process.execPath, [pnpm, 'pack', '--pack-destination', tarballs], join(root, 'packages', name))
}
for (const file of readdirSync(tarballs)) {
  const name = `@tether/${file.replace(/^tether-/, '').replace(/-\d.*$/, '')}`
  packed[name] = `file:${join(tarballs, file)}`
}

// The frameworks and types at the versions the workspace tests against.
const workspace = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).devDependencies
const versionOf = (name) => workspace[name]
writeFileSync(
  join(app, 'package.json'),
  JSON.stringify(
    {
      name: 'tether-consumer',
      private: true,
      dependencies: {
        ...packed,
        express: versionOf('express'),
        fastify: versionOf('fastify'),
        '@types/express': versionOf('@types/express'),
        '@types/node': versionOf('@types/node'),
        typescript: versionOf('typescript'),
        ts7: 'npm:typescript@^7.0.2',
      },
      // The adapters depend on @tether/core by version: resolve it to the packed one, never the registry.
      overrides: { '@tether/core': packed['@tether/core'] },
    },
    null,
    2,
  ),
)
writeFileSync(
  join(app, 'tsconfig.json'),
  JSON.stringify(
    {
      compilerOptions: {
        strict: true,
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        types: ['node'],
        skipLibCheck: false,
        noEmit: true,
      },
      files: ['app.mts', 'app.cts'],
    },
    null,
    2,
  ),
)

// Every public entry point, the request augmentations and the options types, used as a user would.
const body = `
const server = http.createServer()
hardenServer(server, { headersTimeout: 5_000 })
trackConnections(server)
const done: Promise<ShutdownReport> = shutdown(server, { grace: 1_000 })
void done

const scope = createScope({ timeout: 100 })
const remaining: number = scope.remaining()
void remaining
const pool = createPool({ concurrency: 2, maxQueue: 10 })
void pool.run(async (signal: AbortSignal) => signal.aborted)
void all([async () => 1, async () => 'two'] as const).then(([one, two]: readonly [number, string]) => one + two)
const group = new TaskGroup({ limit: 2 })
group.go(async () => undefined)
void group.wait()
const snapshot: Snapshot = inspect()
void snapshot.counters.requests
void scopedFetch
const guard: boolean = isCanceled(new Error()) || isDeadlineExceeded(undefined) || isShutdown(null)
void guard
void assertNoLingering({ timeout: 100 })
const metricsOptions: MetricsOptions = { prefix: 'app_' }
void metricsOptions
const workers = createWorkerPool({ filename: new URL('file:///app/render.mjs'), concurrency: 2 })
void workers.run<string>({ template: 'x' }, { name: 'render' }).then((html: string) => html.length)
void workers.close()
const channels: string[] = [REQUEST_START_CHANNEL, REQUEST_END_CHANNEL, DEADLINE_CHANNEL, SHED_CHANNEL, LINGERING_CHANNEL, LEAK_CHANNEL]
void channels
// The adapters' entry point, as an adapter for another framework would use it.
const frameworkAdapter: TetherAdapter<{ url?: string }> = { name: 'myFramework()', route: (source) => source.url }
const binding: Tether = new Tether({ timeout: 1_000 }, frameworkAdapter as TetherAdapter)
const tighten: (scope: Scope) => void = routeTimeout(100, 'timeout')
void binding
void tighten
const endReason = (message: RequestEndMessage): string => message.reason
void endReason

const expressApp = express()
expressApp.use(expressTether({ timeout: 1_000 }))
expressApp.get('/x', timeout(100), (req, res) => {
  const signal: AbortSignal = req.scope.signal
  res.json({ aborted: signal.aborted })
})

const fastifyApp = Fastify()
void fastifyApp.register(fastifyTether, { timeout: 1_000, harden: true })
fastifyApp.get('/x', { config: { tether: { timeout: 100 } } }, async (request) => {
  const current: Scope = request.scope
  return { remaining: current.remaining() }
})
`
writeFileSync(
  join(app, 'app.mts'),
  `import http from 'node:http'
import { all, createPool, createScope, createWorkerPool, DEADLINE_CHANNEL, hardenServer, inspect, isCanceled, isDeadlineExceeded, isShutdown, LEAK_CHANNEL, LINGERING_CHANNEL, type MetricsOptions, REQUEST_END_CHANNEL, REQUEST_START_CHANNEL, type RequestEndMessage, type Scope, SHED_CHANNEL, scopedFetch, type ShutdownReport, shutdown, type Snapshot, TaskGroup, trackConnections } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { routeTimeout, Tether, type TetherAdapter } from '@tether/core/adapter'
import { tether as expressTether, timeout } from '@tether/express'
import fastifyTether from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
${body}`,
)
writeFileSync(
  join(app, 'app.cts'),
  `import http = require('node:http')
import core = require('@tether/core')
import testing = require('@tether/core/testing')
import adapter = require('@tether/core/adapter')
import expressAdapter = require('@tether/express')
import fastifyAdapter = require('@tether/fastify')
import express = require('express')
import fastify = require('fastify')
const { all, createPool, createScope, createWorkerPool, DEADLINE_CHANNEL, hardenServer, inspect, isCanceled, isDeadlineExceeded, isShutdown, LEAK_CHANNEL, LINGERING_CHANNEL, REQUEST_END_CHANNEL, REQUEST_START_CHANNEL, SHED_CHANNEL, scopedFetch, shutdown, TaskGroup, trackConnections } = core
type MetricsOptions = core.MetricsOptions
type RequestEndMessage = core.RequestEndMessage
type Scope = core.Scope
type ShutdownReport = core.ShutdownReport
type Snapshot = core.Snapshot
const { assertNoLingering } = testing
const { routeTimeout } = adapter
const Tether = adapter.Tether
type Tether = adapter.Tether
type TetherAdapter<Source = unknown> = adapter.TetherAdapter<Source>
const { tether: expressTether, timeout } = expressAdapter
const fastifyTether = fastifyAdapter.tether
const Fastify = fastify.fastify
${body}`,
)

let failed = false
const npm = (args) => run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], app)
const compilers = [
  ['typescript', join(app, 'node_modules', 'typescript', 'bin', 'tsc')],
  ['typescript 7', join(app, 'node_modules', 'ts7', 'bin', 'tsc')],
]
function compileAll(label) {
  for (const [compiler, tsc] of compilers) {
    const version = run(process.execPath, [tsc, '--version'], app).trim()
    try {
      run(process.execPath, [tsc, '-p', 'tsconfig.json'], app)
      console.log(`ok  consumer app (ESM and CJS, skipLibCheck false, strict, NodeNext), ${label}, ${version}`)
    } catch (error) {
      failed = true
      console.error(`FAIL consumer app, ${label}, ${compiler} ${version}\n${error.stdout ?? ''}${error.stderr ?? ''}`)
    }
  }
}

npm(['install'])
// What a user sees on the registry: each tarball carries its README and points back at the project.
for (const name of Object.keys(packed)) {
  const dir = join(app, 'node_modules', ...name.split('/'))
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  const missing = ['repository', 'homepage', 'bugs', 'publishConfig'].filter((key) => manifest[key] === undefined)
  if (!existsSync(join(dir, 'README.md'))) missing.push('README.md')
  if (manifest.publishConfig?.access !== 'public') missing.push('publishConfig.access: public')
  if (missing.length > 0) {
    failed = true
    console.error(`FAIL ${name} tarball lacks ${missing.join(', ')}`)
  } else console.log(`ok  ${name} tarball has its README, repository, homepage, bugs and public access`)
}
compileAll('without prom-client')
npm(['install', 'prom-client@^15'])
compileAll('with prom-client')
process.exit(failed ? 1 : 0)
