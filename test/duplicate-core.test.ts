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

function runApp(secondCopyPath: string): { seen: Record<string, unknown>; stderr: string } {
  const script = join(sandbox, 'app.cjs')
  writeFileSync(script, APP)
  const { stdout, stderr } = node([script], { ROOT: root, SECOND_COPY: secondCopyPath })
  return { seen: JSON.parse(stdout.trim().split('\n').pop() ?? '{}'), stderr }
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

  it('warns loudly at load time when the copies cannot share requests', () => {
    const path = secondCopy('other-protocol', (dir) => {
      const file = join(dir, 'dist', 'primitives', 'shared.js')
      const source = readFileSync(file, 'utf8')
      const edited = source.replace(/PROTOCOL = 1\b/, 'PROTOCOL = 2')
      expect(edited).not.toBe(source) // the copy really speaks another protocol
      writeFileSync(file, edited)
    })
    const first = JSON.stringify(join(root, 'packages', 'core', 'dist', 'index.js'))
    const { stderr } = node(['-e', `require(${first}); require(${JSON.stringify(path)})`])
    expect(stderr).toContain('TetherDuplicateWarning')
    expect(stderr).toContain('protocol 1 at')
    expect(stderr).toContain('protocol 2 at')
  })
})
