// Runs Fastify's and Express's own test suites twice, bare and with tether mounted or registered
// first in every app they create, and reports the differences: the tests that pass bare and fail
// with tether, and the requests left in tether's registry when each test process exits. A test
// that differs is then run once more with a middleware or plugin that does nothing mounted the same
// way, which tells the failures that come from having anything first (the suite counts plugins,
// middleware layers or hooks) from the ones tether causes.
//
// Run through pnpm (`pnpm framework-suites`), not part of `pnpm test`: a run takes minutes.
//
//   Fastify: the tarball of the installed version (`npm pack`) ships its tests; it is unpacked into
//            .cache/framework-suites/ and its devDependencies installed there with npm, once.
//   Express: its tarball ships no tests: set EXPRESS_SRC to a checkout of Express's repository at
//            the installed version (its devDependencies are installed there with npm if missing).
//            Without EXPRESS_SRC the Express suite is skipped.
//
// Flags: --only=fastify|express, --concurrency=N (test files at once; default 1, the machine is
// shared), --no-build. Exits 1 when a test passes bare and fails with tether for a reason the no-op
// run does not share, or when requests are left in tether's registry.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'

const root = new URL('..', import.meta.url).pathname
const cache = join(root, '.cache', 'framework-suites')
const preload = join(root, 'scripts', 'framework-suites', 'preload.cjs')
const nodeTestReporter = join(root, 'scripts', 'framework-suites', 'node-test-reporter.mjs')
// A whole suite takes a few minutes on a busy two-core machine; a run that exceeds this is stuck.
const RUN_TIMEOUT_MS = 30 * 60_000
const INSTALL_TIMEOUT_MS = 15 * 60_000

const { values: flags } = parseArgs({
  options: {
    only: { type: 'string' },
    concurrency: { type: 'string', default: '1' },
    'no-build': { type: 'boolean', default: false },
  },
})
const concurrency = Number(flags.concurrency)
if (!Number.isInteger(concurrency) || concurrency < 1) {
  throw new RangeError(`\`--concurrency\` must be an integer >= 1, received ${flags.concurrency}`)
}
if (flags.only !== undefined && flags.only !== 'fastify' && flags.only !== 'express') {
  throw new TypeError(`\`--only\` must be fastify or express, received ${flags.only}`)
}

function log(text) {
  process.stderr.write(`${text}\n`)
}

function run(command, args, options) {
  return execFileSync(command, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...options })
}

function installedVersion(name) {
  return JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version
}

function npmInstall(dir) {
  log(`installing the devDependencies of ${dir} with npm`)
  run('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'], {
    cwd: dir,
    timeout: INSTALL_TIMEOUT_MS,
  })
}

function readLines(file) {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line))
}

// Results keyed by file and title; a title repeated in one file (shared helpers define the same
// tests for several methods) is numbered in order of appearance.
function keyed(results) {
  const seen = new Map()
  const map = new Map()
  for (const result of results) {
    const base = `${result.file} :: ${result.title}`
    const n = (seen.get(base) ?? 0) + 1
    seen.set(base, n)
    map.set(n === 1 ? base : `${base} #${n}`, result)
  }
  return map
}

function tally(results) {
  const counts = { tests: 0, passed: 0, failed: 0, skipped: 0 }
  for (const result of results.values()) {
    counts.tests++
    if (result.status === 'pass') counts.passed++
    else if (result.status === 'fail') counts.failed++
    else counts.skipped++
  }
  return counts
}

// Each test process appends what tether's registry held when it exited.
function registrySummary(lines) {
  const summary = { processes: lines.length, requests: 0, inflight: [], unanswered: 0, stuck: 0, lingering: 0 }
  for (const line of lines) {
    summary.requests += line.counters.requests
    summary.lingering += line.lingering
    summary.unanswered += line.unanswered
    summary.stuck += line.stuck
    for (const request of line.inflight) summary.inflight.push({ process: line.argv.at(-1), ...request })
  }
  return summary
}

function suiteEnv(suite, mode, report) {
  if (mode === 'bare') return { ...process.env }
  const options = [process.env.NODE_OPTIONS, `--require ${preload}`].filter(Boolean).join(' ')
  return {
    ...process.env,
    NODE_OPTIONS: options,
    TETHER_SUITE_KIND: suite.kind,
    TETHER_SUITE_TARGET: suite.target,
    TETHER_SUITE_MODE: mode,
    TETHER_SUITE_REPORT: report,
  }
}

function runSuite(suite, mode, files) {
  const tag = files === undefined ? mode : `${mode}-rerun`
  const output = join(cache, `${suite.kind}-${tag}.jsonl`)
  const report = join(cache, `${suite.kind}-${tag}-registry.jsonl`)
  rmSync(output, { force: true })
  rmSync(report, { force: true })
  const started = Date.now()
  const { command, args, env } = suite.command(output, files)
  log(`${suite.kind}: running ${files === undefined ? 'the suite' : `${files.length} file(s)`} ${mode}`)
  const child = spawnSync(command, args, {
    cwd: suite.dir,
    env: { ...suiteEnv(suite, mode, report), ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
    timeout: RUN_TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
  })
  if (child.error) throw child.error
  const results = keyed(suite.parse(output))
  if (results.size === 0) {
    throw new Error(`${suite.kind} ${mode}: no test results; the runner said:\n${child.stderr.slice(-4000)}`)
  }
  return { results, registry: registrySummary(readLines(report)), seconds: (Date.now() - started) / 1000 }
}

function fastifySuite() {
  const version = installedVersion('fastify')
  const dir = join(cache, `fastify-${version}`)
  if (!existsSync(join(dir, 'node_modules', '.bin', 'borp'))) {
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    log(`fetching fastify@${version}`)
    const tarball = run('npm', ['pack', `fastify@${version}`, '--silent', '--pack-destination', cache], {
      cwd: cache,
    }).trim()
    run('tar', ['xzf', join(cache, tarball), '-C', dir, '--strip-components=1'])
    npmInstall(dir)
  }
  return {
    kind: 'fastify',
    version,
    dir,
    target: join(dir, 'fastify.js'),
    // Fastify's `unit` script: borp over .borp.yaml's globs (its lint and type tests are left out).
    command(output, files) {
      const args = [join(dir, 'node_modules', 'borp', 'borp.js'), `--concurrency=${concurrency}`]
      args.push(`--reporter=${nodeTestReporter}:${output}`)
      // borp appends .borp.yaml's globs to any files given; pointing it at no config runs just these.
      if (files === undefined) return { command: process.execPath, args, env: {} }
      return { command: process.execPath, args: [...args, ...files], env: { BORP_CONF_FILE: join(dir, 'none') } }
    },
    parse: readLines,
  }
}

function expressSuite() {
  const source = process.env.EXPRESS_SRC
  if (!source) {
    log('EXPRESS_SRC is not set: skipping the Express suite (its npm tarball ships no tests)')
    return undefined
  }
  const dir = resolve(source)
  // `send` (behind res.sendFile) refuses any path with a dot-segment: under such a directory sixty
  // of Express's own tests answer 404 and the run never exits.
  if (dir.split('/').some((segment) => segment.startsWith('.'))) {
    throw new Error(`EXPRESS_SRC must not be inside a directory whose name starts with a dot, received ${dir}`)
  }
  const version = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version
  const installed = installedVersion('express')
  if (version !== installed) log(`warning: EXPRESS_SRC is express ${version}, the workspace has ${installed}`)
  if (!existsSync(join(dir, 'node_modules', 'mocha'))) npmInstall(dir)
  return {
    kind: 'express',
    version,
    dir,
    // index.js re-exports lib/express.js: wrapping the latter covers `require('express')`, `require('..')`
    // and the examples the acceptance tests load.
    target: join(dir, 'lib', 'express.js'),
    // Express's `test` script, with the JSON reporter.
    command(output, files) {
      const args = [join(dir, 'node_modules', 'mocha', 'bin', 'mocha.js'), '--require', 'test/support/env']
      args.push('--reporter', 'json', '--reporter-option', `output=${output}`, '--check-leaks')
      args.push(...(files ?? ['test/', 'test/acceptance/']))
      return { command: process.execPath, args, env: {} }
    },
    parse(output) {
      if (!existsSync(output)) return []
      const json = JSON.parse(readFileSync(output, 'utf8'))
      const id = (test) => `${test.file}\0${test.fullTitle}`
      const failed = new Set(json.failures.map(id))
      const pending = new Set(json.pending.map(id))
      const listed = new Set(json.tests.map(id))
      // A failing hook is a failure of its own, not one of the tests.
      const hooks = json.failures.filter((test) => !listed.has(id(test)))
      return [...json.tests, ...hooks].map((test) => ({
        file: (test.file ?? '').slice(dir.length + 1),
        title: test.fullTitle,
        status: failed.has(id(test)) ? 'fail' : pending.has(id(test)) ? 'skip' : 'pass',
        message: test.err?.message ? String(test.err.message).split('\n').slice(0, 6).join('\n') : '',
      }))
    },
  }
}

function compare(suite) {
  const bare = runSuite(suite, 'bare')
  const tethered = runSuite(suite, 'tether')
  const regressions = []
  for (const [key, result] of tethered.results) {
    if (result.status !== 'fail') continue
    const before = bare.results.get(key)
    // Absent bare: a test file whose process failed only with tether (see the reporter).
    if (before === undefined || before.status === 'pass')
      regressions.push({ key, file: result.file, message: result.message })
  }
  const missing = [...bare.results.keys()].filter((key) => !tethered.results.has(key))
  // The same files once more with a do-nothing middleware or plugin in tether's place, then (Fastify)
  // with a plugin that adds tether's hooks, each doing nothing.
  const controls = suite.kind === 'fastify' ? ['noop', 'hooks'] : ['noop']
  let pending = regressions
  for (const control of controls) {
    if (pending.length === 0) break
    const rerun = runSuite(suite, control, [...new Set(pending.map((r) => r.file))])
    for (const regression of pending) regression[control] = rerun.results.get(regression.key)?.status ?? 'missing'
    pending = pending.filter((r) => r[control] !== 'fail')
  }
  for (const regression of regressions) {
    regression.class = regression.noop === 'fail' ? 'any-plugin' : regression.hooks === 'fail' ? 'hooks' : 'tether'
  }
  return { suite, bare, tethered, regressions, missing }
}

function print({ suite, bare, tethered, regressions, missing }) {
  const b = tally(bare.results)
  const t = tally(tethered.results)
  const lines = [
    `\n${suite.kind} ${suite.version}`,
    `  bare:   ${b.tests} tests, ${b.passed} passed, ${b.failed} failed, ${b.skipped} skipped (${bare.seconds.toFixed(0)} s)`,
    `  tether: ${t.tests} tests, ${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped (${tethered.seconds.toFixed(0)} s)`,
  ]
  const real = regressions.filter((r) => r.class === 'tether')
  const label = { tether: 'TETHER', hooks: 'SAME-HOOKS', 'any-plugin': 'ANY-PLUGIN' }
  lines.push(
    `  pass bare, fail with tether: ${regressions.length} (fail the same with a no-op first: ${regressions.filter((r) => r.class === 'any-plugin').length}; with no-op hooks: ${regressions.filter((r) => r.class === 'hooks').length}; with tether only: ${real.length})`,
  )
  const order = ['tether', 'hooks', 'any-plugin']
  const sorted = [...regressions].sort((a, b) => order.indexOf(a.class) - order.indexOf(b.class))
  for (const r of sorted) lines.push(`    ${label[r.class]} ${r.key}\n      ${r.message.replaceAll('\n', '\n      ')}`)
  if (missing.length > 0) {
    lines.push(`  reported bare but not with tether: ${missing.length}`)
    for (const key of missing.slice(0, 20)) lines.push(`    ${key}`)
  }
  const registry = tethered.registry
  // A request the suite itself never answers is rightly in flight at exit; one whose response is
  // over while its scope has not ended, or more in flight than unanswered, is tether's leak.
  const leaked = registry.stuck + Math.max(0, registry.inflight.length - registry.unanswered)
  lines.push(
    `  tether's registry: ${registry.requests} requests over ${registry.processes} process(es); in flight at exit: ${registry.inflight.length} (responses the suite never ended: ${registry.unanswered}); ended responses whose scope did not end: ${registry.stuck}; lingering tasks: ${registry.lingering}`,
  )
  if (leaked > 0) for (const request of registry.inflight.slice(0, 20)) lines.push(`    ${JSON.stringify(request)}`)
  console.log(lines.join('\n'))
  return real.length === 0 && missing.length === 0 && leaked === 0
}

mkdirSync(cache, { recursive: true })
if (!flags['no-build']) {
  // pnpm runs this script with npm_execpath pointing at itself.
  const pnpm = process.env.npm_execpath
  if (!pnpm) throw new Error('run this through pnpm (pnpm framework-suites), or pass --no-build after building')
  run(process.execPath, [pnpm, 'build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
}

const suites = []
if (flags.only !== 'express') suites.push(fastifySuite())
if (flags.only !== 'fastify') {
  const express = expressSuite()
  if (express !== undefined) suites.push(express)
}

let clean = true
const summary = []
for (const suite of suites) {
  const outcome = compare(suite)
  clean = print(outcome) && clean
  summary.push({
    suite: suite.kind,
    version: suite.version,
    bare: tally(outcome.bare.results),
    tether: tally(outcome.tethered.results),
    regressions: outcome.regressions,
    missing: outcome.missing,
    registry: outcome.tethered.registry,
  })
}
writeFileSync(join(cache, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`)
process.exitCode = clean ? 0 : 1
