import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'

// `pnpm framework-suites` runs Express's and Fastify's own suites with tether in every app; it is
// too slow for `pnpm test`. These tests keep its two moving parts honest: the preload that puts
// tether first in every app the frameworks create (against the built packages, like the script),
// and the node:test reporter that names Fastify's tests.
const root = fileURLToPath(new URL('..', import.meta.url))
const preload = join(root, 'scripts', 'framework-suites', 'preload.cjs')
const requireHere = createRequire(import.meta.url)
// The framework files the preload replaces, as Node resolves them (pnpm links them from its store).
const expressFactory = realpathSync(requireHere.resolve('express/lib/express.js'))
const fastifyFactory = realpathSync(requireHere.resolve('fastify'))

let scratch: string | undefined
afterEach(() => {
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true })
  scratch = undefined
})

interface ExitReport {
  inflight: unknown[]
  unanswered: number
  stuck: number
  counters: { requests: number }
}

/** Runs `code` in a Node process with the preload, and returns what it printed and its exit reports. */
function runWithPreload(kind: 'express' | 'fastify', code: string, mode = 'tether') {
  scratch = mkdtempSync(join(tmpdir(), 'tether-suites-'))
  const report = join(scratch, 'report.jsonl')
  const stdout = execFileSync(process.execPath, ['--require', preload, '-e', code], {
    cwd: root,
    encoding: 'utf8',
    env: {
      ...process.env,
      TETHER_SUITE_KIND: kind,
      TETHER_SUITE_TARGET: kind === 'express' ? expressFactory : fastifyFactory,
      TETHER_SUITE_MODE: mode,
      TETHER_SUITE_REPORT: report,
    },
  })
  const reports = readFileSync(report, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as ExitReport)
  return { stdout: stdout.trim(), reports }
}

describe('the framework-suites preload', () => {
  it('puts tether first in every express() app, sub-apps included, and reports an empty registry at exit', () => {
    const { stdout, reports } = runWithPreload(
      'express',
      `
      const express = require('express')
      const http = require('node:http')
      const app = express()
      const admin = express()
      admin.get('/', (req, res) => res.send(String(typeof req.scope?.signal)))
      app.use('/admin', admin)
      app.get('/', (req, res) => res.send(String(app.router.stack[0].name)))
      const server = app.listen(0, '127.0.0.1', async () => {
        const base = 'http://127.0.0.1:' + server.address().port
        const first = await (await fetch(base + '/')).text()
        const second = await (await fetch(base + '/admin')).text()
        console.log(first + ' ' + second)
        server.closeAllConnections()
        server.close()
      })
    `,
    )
    expect(stdout).toBe('tetherMiddleware object')
    expect(reports).toHaveLength(1)
    // Two requests, the second through a sub-app with a tether of its own: joined, not counted twice.
    expect(reports[0]).toMatchObject({ inflight: [], unanswered: 0, stuck: 0, counters: { requests: 2 } })
  })

  it('registers @tether/fastify first on every Fastify instance, whichever export made it', () => {
    const { stdout, reports } = runWithPreload(
      'fastify',
      `
      const Fastify = require('fastify')
      async function main() {
        const seen = []
        for (const create of [Fastify, Fastify.fastify, Fastify.default]) {
          const app = create()
          app.get('/', async (request) => typeof request.scope.signal)
          await app.ready()
          seen.push(app.hasPlugin('@tether/fastify') + ':' + (await app.inject('/')).body)
          await app.close()
        }
        console.log(seen.join(' '))
      }
      main()
    `,
    )
    expect(stdout).toBe('true:object true:object true:object')
    expect(reports[0]).toMatchObject({ inflight: [], unanswered: 0, stuck: 0, counters: { requests: 3 } })
  })

  it('counts a request the app never answers as unanswered, not as tether holding on to it', () => {
    const { reports } = runWithPreload(
      'fastify',
      `
      const Fastify = require('fastify')
      const app = Fastify()
      app.get('/', (request, reply) => {})
      app.ready().then(() => { app.inject('/'); setTimeout(() => {}, 50) })
    `,
    )
    expect(reports[0]).toMatchObject({ unanswered: 1, stuck: 0, counters: { requests: 1 } })
    expect(reports[0]?.inflight).toHaveLength(1)
  })

  it('puts a do-nothing plugin where tether would go in noop mode', () => {
    const { stdout, reports } = runWithPreload(
      'fastify',
      `
      const app = require('fastify')()
      app.ready().then(() => console.log(app.hasPlugin('noop-plugin') + ' ' + app.hasPlugin('@tether/fastify')))
    `,
      'noop',
    )
    expect(stdout).toBe('true false')
    expect(reports[0]?.counters.requests).toBe(0)
  })
})

describe('the framework-suites node:test reporter', () => {
  type Event = { type: string; data: Record<string, unknown> }
  async function report(
    events: Event[],
  ): Promise<Array<{ file: string; title: string; status: string; message: string }>> {
    const url = pathToFileURL(join(root, 'scripts', 'framework-suites', 'node-test-reporter.mjs')).href
    const { default: reporter } = (await import(url)) as {
      default: (source: AsyncIterable<Event>) => AsyncIterable<string>
    }
    async function* source() {
      yield* events
    }
    const lines: string[] = []
    for await (const line of reporter(source())) lines.push(line)
    return lines.map((line) => JSON.parse(line))
  }
  const file = join(root, 'test', 'x.test.js')

  it('names each test with its enclosing tests, and a failing parent only for a failure of its own', async () => {
    const results = await report([
      { type: 'test:pass', data: { file, nesting: 1, name: 'first' } },
      {
        type: 'test:fail',
        data: { file, nesting: 1, name: 'second', details: { error: { cause: new Error('boom') } } },
      },
      {
        type: 'test:fail',
        data: { file, nesting: 0, name: 'group', details: { error: { failureType: 'subtestsFailed' } } },
      },
      { type: 'test:pass', data: { file, nesting: 0, name: 'alone', skip: true } },
    ])
    expect(results).toEqual([
      { file: 'test/x.test.js', title: 'group > first', status: 'pass', message: '' },
      { file: 'test/x.test.js', title: 'group > second', status: 'fail', message: 'boom' },
      { file: 'test/x.test.js', title: 'alone', status: 'skip', message: '' },
    ])
  })

  it('reports a test file that failed outside its tests with the error node:test printed for it', async () => {
    const results = await report([
      { type: 'test:pass', data: { file, nesting: 0, name: 'fine' } },
      { type: 'test:diagnostic', data: { nesting: 0, message: 'Error: Test hook "after" ... TypeError: nope' } },
      { type: 'test:diagnostic', data: { nesting: 0, message: 'tests 1' } },
      { type: 'test:fail', data: { file, nesting: 0, name: file, details: { error: new Error('test failed') } } },
    ])
    expect(results[1]).toEqual({
      file: 'test/x.test.js',
      title: '(the test file itself)',
      status: 'fail',
      message: 'test failed: Error: Test hook "after" ... TypeError: nope',
    })
  })
})
