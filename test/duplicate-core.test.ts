import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

// npm nests a second copy of @tether/core when an app and an adapter ask for different versions.
// These tests put a real second copy on disk (the built package, copied), load the Express adapter
// (bound to the workspace's copy) and the app's own copy side by side in a plain Node process, and
// check that work started through the app's copy is bound to the request the adapter entered.
const root = fileURLToPath(new URL('..', import.meta.url))
const sandbox = join(root, '.cache', 'duplicate-core')

function secondCopy(name: string, edit?: (file: string) => void): string {
  const dir = join(sandbox, name, 'node_modules', '@tether', 'core')
  rmSync(join(sandbox, name), { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  cpSync(join(root, 'packages', 'core', 'package.json'), join(dir, 'package.json'))
  cpSync(join(root, 'packages', 'core', 'dist'), join(dir, 'dist'), { recursive: true })
  edit?.(dir)
  return join(dir, 'dist', 'index.js')
}

// Runs in a child process: the adapter's core and the app's core are two module instances.
const APP = `
const { createRequire } = require('node:module')
const requireFromRoot = createRequire(process.env.ROOT + '/package.json')
const express = requireFromRoot('express')
const { tether } = require(process.env.ROOT + '/packages/express/dist/index.js')
const adapterCore = require(process.env.ROOT + '/packages/express/node_modules/@tether/core')
const appCore = require(process.env.SECOND_COPY)
const { setTimeout: sleep } = require('node:timers/promises')

const seen = { distinctCopies: adapterCore !== appCore && adapterCore.all !== appCore.all }
const pool = appCore.createPool({ concurrency: 1 })
const app = express()
app.use(tether({ timeout: 150, logger: false }))
app.get('/work', async (req, res) => {
  seen.currentScopeIsRequest = appCore.currentScope() === req.scope
  seen.budget = appCore.currentScope()?.deadline === req.scope.deadline
  try {
    await appCore.all([
      (signal) => sleep(10_000, undefined, { signal }),
      (signal) => pool.run((poolSignal) => sleep(10_000, undefined, { signal: poolSignal })),
    ])
  } catch (error) {
    seen.fanOutStoppedBy = error.name
    seen.fanOutDeadline = appCore.isDeadlineExceeded(error)
  }
  res.json({ late: true })
})
const server = app.listen(0, '127.0.0.1', async () => {
  const response = await fetch('http://127.0.0.1:' + server.address().port + '/work')
  seen.status = response.status
  await response.text()
  for (let i = 0; i < 200 && seen.fanOutStoppedBy === undefined; i++) await sleep(10)
  seen.poolIdle = pool.active === 0 && pool.queued === 0
  seen.inflight = appCore.inspect().inflight.length
  server.close()
  console.log(JSON.stringify(seen))
})
`

function node(args: string[], env: Record<string, string> = {}): { stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env, NODE_OPTIONS: '' },
    encoding: 'utf8',
    timeout: 30_000,
  })
  if (result.status !== 0) throw new Error(`node exited with ${result.status}: ${result.stderr}`)
  return { stdout: result.stdout, stderr: result.stderr }
}

// Runs in a child process: one copy tracks an HTTP/2 server's connections (as the adapter's copy
// does at the first request, or the app's with onShutdown()), the other hardens it (the app's
// hardenServer(), or the Fastify plugin's `harden`). A raw client completes a request on stream 1,
// then stalls the header block of stream 3: only the stream the tracking copy saw opened tells
// the hardening copy's check that a header block is pending (headersTimeout) rather than the
// session idle (keepAliveTimeout).
const H2_APP = `
const http2 = require('node:http2')
const net = require('node:net')
const { setTimeout: sleep } = require('node:timers/promises')
const workspaceCore = require(process.env.ROOT + '/packages/core/dist/index.js')
const secondCore = require(process.env.SECOND_COPY)
const [tracking, hardening] = process.env.ORDER === 'workspace-tracks' ? [workspaceCore, secondCore] : [secondCore, workspaceCore]
let served = 0
const server = http2.createServer((req, res) => {
  served++
  res.end('hello')
})
tracking.trackConnections(server)
hardening.hardenServer(server, { headersTimeout: 300, keepAliveTimeout: 60_000, checkInterval: 50 })
server.listen(0, '127.0.0.1', async () => {
  const seen = { distinctCopies: workspaceCore.hardenServer !== secondCore.hardenServer }
  const socket = net.connect(server.address().port, '127.0.0.1')
  socket.on('error', () => undefined)
  socket.resume()
  const closed = new Promise((resolve) => socket.on('close', resolve))
  socket.write('PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n')
  socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]))
  // A complete GET / on stream 1 (END_STREAM | END_HEADERS).
  socket.write(Buffer.from([0, 0, 6, 1, 0x05, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 0x01, 0x61]))
  for (let i = 0; i < 200 && served === 0; i++) await sleep(10)
  seen.served = served
  await sleep(100)
  // Stream 3's HEADERS without END_HEADERS, then silence.
  const started = Date.now()
  socket.write(Buffer.from([0, 0, 1, 1, 0, 0, 0, 0, 3, 0x82]))
  const timedOut = sleep(3_000, undefined, { ref: false }).then(() => 'still open')
  const outcome = await Promise.race([closed.then(() => 'closed'), timedOut])
  seen.outcome = outcome
  seen.closedAfterMs = Date.now() - started
  socket.destroy()
  server.close()
  console.log(JSON.stringify(seen))
})
`

function runApp(secondCopyPath: string, app = APP, env: Record<string, string> = {}) {
  const script = join(sandbox, 'app.cjs')
  writeFileSync(script, app)
  const { stdout, stderr } = node([script], { ...env, ROOT: root, SECOND_COPY: secondCopyPath })
  return { seen: JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>, stderr }
}

// The protocol number of the built package: the tests below load copies that speak another one.
function builtProtocol(): number {
  const source = readFileSync(join(root, 'packages', 'core', 'dist', 'primitives', 'shared.js'), 'utf8')
  const found = /exports\.PROTOCOL = (\d+);/.exec(source)
  if (found === null) throw new Error('no `exports.PROTOCOL = n;` in the built shared.js')
  return Number(found[1])
}

afterAll(() => rmSync(sandbox, { recursive: true, force: true }))

describe('two copies of @tether/core in one app', () => {
  it("binds work started through the app's copy to the request the adapter's copy entered", () => {
    const { seen, stderr } = runApp(secondCopy('same-protocol'))
    expect(stderr).not.toContain('TetherDuplicateWarning')
    expect(seen).toEqual({
      distinctCopies: true,
      currentScopeIsRequest: true,
      budget: true,
      status: 504,
      fanOutStoppedBy: 'DeadlineExceededError',
      fanOutDeadline: true,
      poolIdle: true,
      inflight: 0,
    })
  })

  it.each([
    ['an older', -1],
    ['a newer', +1],
  ])('warns loudly at load time beside %s copy, which cannot share requests', (_which, step) => {
    const protocol = builtProtocol()
    const other = protocol + step
    const path = secondCopy(`protocol-${other}`, (dir) => {
      const file = join(dir, 'dist', 'primitives', 'shared.js')
      const source = readFileSync(file, 'utf8')
      const edited = source.replace(`exports.PROTOCOL = ${protocol};`, `exports.PROTOCOL = ${other};`)
      expect(edited).not.toBe(source) // the copy really speaks another protocol
      writeFileSync(file, edited)
    })
    const first = JSON.stringify(join(root, 'packages', 'core', 'dist', 'index.js'))
    const { stderr } = node(['-e', `require(${first}); require(${JSON.stringify(path)})`])
    expect(stderr).toContain('TetherDuplicateWarning')
    expect(stderr).toContain(`protocol ${protocol} at`)
    expect(stderr).toContain(`protocol ${other} at`)
  })

  it.each([
    ['the workspace copy tracks', 'workspace-tracks'],
    ['the second copy tracks', 'second-tracks'],
  ])(
    'bounds a stalled header block by headersTimeout when one copy tracks an HTTP/2 server and the other hardens it (%s)',
    (_name, order) => {
      const { seen, stderr } = runApp(secondCopy('http2'), H2_APP, { ORDER: order })
      expect(stderr).not.toContain('TetherDuplicateWarning')
      expect(seen).toMatchObject({ distinctCopies: true, served: 1, outcome: 'closed' })
      // headersTimeout (300 ms) plus check intervals; an idle session would wait keepAliveTimeout (60 s).
      expect(seen.closedAfterMs).toBeGreaterThanOrEqual(300 - 60)
      expect(seen.closedAfterMs).toBeLessThan(300 + 2_000)
    },
  )
})
