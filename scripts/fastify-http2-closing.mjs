// Runs Fastify's own HTTP/2 closing tests (test/http2/closing.test.js from its npm tarball) twice:
// bare, and with @tether/fastify registered in every instance the tests create, and reports the
// tests whose outcome differs. The tarball is fetched with `npm pack` into .cache (never committed).
//
//   pnpm build && node scripts/fastify-http2-closing.mjs
//
// The tests `require('../..')` (Fastify itself) and `require('../../lib/symbols')`; each run gets a
// directory where those resolve to the installed Fastify of the same version, the first through a
// factory that registers the plugin when asked to. Fastify's certificate helper needs node-forge,
// which is not installed here: a stand-in gives the tests the committed test-only certificate.
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(join(root, 'package.json'))
const fastifyMain = require.resolve('fastify')
const fastifyDir = dirname(fastifyMain)
const { version } = JSON.parse(readFileSync(join(fastifyDir, 'package.json'), 'utf8'))
const pluginMain = join(root, 'packages/fastify/dist/index.js')
if (!existsSync(pluginMain)) throw new Error('build the packages first: pnpm build')

const cache = join(root, '.cache', `fastify-${version}`)
const tarball = join(cache, `fastify-${version}.tgz`)
if (!existsSync(tarball)) {
  mkdirSync(cache, { recursive: true })
  execFileSync('npm', ['pack', `fastify@${version}`, '--silent', '--pack-destination', cache], { stdio: 'inherit' })
}
if (!existsSync(join(cache, 'package'))) execFileSync('tar', ['xzf', tarball, '-C', cache])
const tests = join(cache, 'package', 'test')

function prepare(name, withPlugin) {
  const dir = join(cache, name)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(join(dir, 'test', 'http2'), { recursive: true })
  mkdirSync(join(dir, 'lib'), { recursive: true })
  // Fastify's tests are CommonJS; the workspace's package.json says "type": "module".
  writeFileSync(join(dir, 'package.json'), '{ "type": "commonjs" }\n')
  copyFileSync(join(tests, 'http2', 'closing.test.js'), join(dir, 'test', 'http2', 'closing.test.js'))
  copyFileSync(join(tests, 'helper.js'), join(dir, 'test', 'helper.js'))
  const cert = join(root, 'test', 'fixtures')
  writeFileSync(
    join(dir, 'test', 'build-certificate.js'),
    `'use strict'
const { readFileSync } = require('node:fs')
module.exports.buildCertificate = function buildCertificate () {
  global.context = {
    key: readFileSync(${JSON.stringify(join(cert, 'test-only-key.pem'))}),
    cert: readFileSync(${JSON.stringify(join(cert, 'test-only-cert.pem'))})
  }
}
`,
  )
  writeFileSync(
    join(dir, 'lib', 'symbols.js'),
    `module.exports = require(${JSON.stringify(join(fastifyDir, 'lib', 'symbols.js'))})\n`,
  )
  writeFileSync(
    join(dir, 'index.js'),
    withPlugin
      ? `'use strict'
const fastify = require(${JSON.stringify(fastifyMain)})
const { tether } = require(${JSON.stringify(pluginMain)})
function tethered (options) {
  const app = fastify(options)
  app.register(tether, { logger: false })
  return app
}
Object.assign(tethered, fastify)
tethered.fastify = tethered
tethered.default = tethered
module.exports = tethered
`
      : `module.exports = require(${JSON.stringify(fastifyMain)})\n`,
  )
  return dir
}

function escapeRegExp(name) {
  return name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

// One process per test: a test that hangs makes node:test cancel every test after it, which
// would hide what the others do.
function runOne(dir, pattern) {
  const result = spawnSync(
    process.execPath,
    [
      '--test',
      '--test-reporter=tap',
      '--test-timeout=20000',
      ...(pattern === undefined ? [] : [`--test-name-pattern=${pattern}`]),
      join('test', 'http2', 'closing.test.js'),
    ],
    { cwd: dir, encoding: 'utf8', timeout: 60_000 },
  )
  const outcomes = new Map()
  for (const line of result.stdout.split('\n')) {
    const match = /^\s*(not ok|ok) \d+ - (.*?)(\s+#\s*(SKIP|TODO)(.*))?$/.exec(line)
    if (!match) continue
    if (match[3] && /does not match pattern/.test(match[5] ?? '')) continue
    outcomes.set(match[2], match[3] ? 'skip' : match[1] === 'ok' ? 'pass' : 'FAIL')
  }
  return { outcomes, output: result.stdout + result.stderr }
}

function run(dir, names) {
  const started = Date.now()
  const outcomes = new Map()
  let output = ''
  for (const name of names) {
    const one = runOne(dir, `^${escapeRegExp(name)}$`)
    outcomes.set(name, one.outcomes.get(name) ?? 'FAIL')
    output += one.output
  }
  return { outcomes, ms: Date.now() - started, output }
}

const bareDir = prepare('closing-bare', false)
const names = [...runOne(bareDir, undefined).outcomes.keys()]
const bare = run(bareDir, names)
const tethered = run(prepare('closing-tethered', true), names)
const count = (outcomes, what) => [...outcomes.values()].filter((value) => value === what).length
console.log(`Fastify ${version}, Node ${process.versions.node}: test/http2/closing.test.js`)
for (const [name, result] of [
  ['bare', bare],
  ['with @tether/fastify', tethered],
]) {
  const o = result.outcomes
  console.log(
    `  ${name.padEnd(22)} ${count(o, 'pass')} passed, ${count(o, 'FAIL')} failed, ${count(o, 'skip')} skipped (${result.ms} ms)`,
  )
}
let differences = 0
for (const [test, outcome] of bare.outcomes) {
  const other = tethered.outcomes.get(test) ?? 'missing'
  if (other !== outcome) {
    differences++
    console.log(`  differs: ${test}: bare ${outcome}, with the plugin ${other}`)
  }
}
if (differences === 0) console.log('  no differences')
if (process.env.VERBOSE) console.log(tethered.output)
process.exitCode = differences === 0 && count(tethered.outcomes, 'FAIL') === 0 ? 0 : 1
