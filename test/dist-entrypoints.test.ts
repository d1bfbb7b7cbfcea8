import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// The rest of the suite runs against the sources; this file checks what users get: the built
// packages, loaded by a plain Node process with `require` and with `import`.
const root = fileURLToPath(new URL('..', import.meta.url))

const contract: Record<string, string[]> = {
  '@tether/core': [
    'createScope',
    'currentScope',
    'Scope',
    'DeadlineExceededError',
    'CanceledError',
    'isDeadlineExceeded',
    'isCanceled',
    'TaskGroup',
    'all',
    'allSettled',
    'createPool',
    'PoolOverloadedError',
    'inspect',
    'createTether',
    'hardenServer',
    'shutdown',
    'scopedFetch',
    'ShutdownError',
  ],
  '@tether/core/testing': ['assertNoLingering', 'LingeringTasksError'],
  '@tether/core/adapter': [
    'Tether',
    'routeTimeout',
    'swallowLateWrites',
    'shutdownBeforeFrameworkClose',
    'resolveHardening',
    'resolveShutdown',
    'exemptFromConcurrency',
    'routeConcurrency',
  ],
  '@tether/express': ['tether', 'timeout'],
  '@tether/fastify': ['tether'],
}

function runNode(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim()
}

describe('built packages', () => {
  it('have been built (run `pnpm build`, which `pnpm test` does first)', () => {
    for (const name of ['core', 'express', 'fastify']) {
      expect(existsSync(`${root}/packages/${name}/dist/index.js`), name).toBe(true)
      expect(existsSync(`${root}/packages/${name}/dist/index.mjs`), name).toBe(true)
    }
  })

  for (const [name, exports] of Object.entries(contract)) {
    it(`${name} loads with require() and exports the contract`, () => {
      const names = JSON.parse(runNode(['-e', `console.log(JSON.stringify(Object.keys(require('${name}'))))`]))
      expect(names).toEqual(expect.arrayContaining(exports))
    })

    it(`${name} loads with import and exports the contract`, () => {
      const script = `const m = await import('${name}'); console.log(JSON.stringify(Object.keys(m)))`
      const names = JSON.parse(runNode(['--input-type=module', '-e', script]))
      expect(names).toEqual(expect.arrayContaining(exports))
    })
  }

  it("@tether/core keeps the adapters' internals out of its main entry (they are in @tether/core/adapter)", () => {
    const names = JSON.parse(runNode(['-e', `console.log(JSON.stringify(Object.keys(require('@tether/core'))))`]))
    for (const internal of contract['@tether/core/adapter'] ?? []) expect(names, internal).not.toContain(internal)
  })

  it('@tether/fastify is a fastify plugin as the default export, from import and from require', () => {
    const script = `
      import { createRequire } from 'node:module'
      const esm = await import('@tether/fastify')
      const cjs = createRequire(import.meta.url)('@tether/fastify')
      const name = Symbol.for('fastify.display-name')
      console.log(JSON.stringify({ esmDefault: esm.default === esm.tether, sameAsCjs: esm.tether === cjs.tether, cjsDefault: cjs.default === cjs.tether, name: esm.default[name] }))
    `
    expect(JSON.parse(runNode(['--input-type=module', '-e', script]))).toEqual({
      esmDefault: true,
      sameAsCjs: true,
      cjsDefault: true,
      name: '@tether/fastify',
    })
  })

  it('gives import and require one shared core, so a scope entered by one is seen by the other', () => {
    const script = `
      import { createRequire } from 'node:module'
      const esm = await import('@tether/core')
      const cjs = createRequire(import.meta.url)('@tether/core')
      const scope = esm.createScope()
      const seen = scope.run(() => cjs.currentScope())
      console.log(JSON.stringify({ same: seen === scope, sameClass: esm.Scope === cjs.Scope }))
    `
    expect(JSON.parse(runNode(['--input-type=module', '-e', script]))).toEqual({ same: true, sameClass: true })
  })
})

describe('the adapters and @tether/core', () => {
  // A peer, not a dependency: the app's own @tether/core is the one the adapter uses, so npm
  // installs one copy instead of nesting a second whose requests the app's copy cannot see.
  for (const name of ['express', 'fastify']) {
    it(`@tether/${name} takes @tether/core as a peer dependency (a dev dependency in the workspace)`, () => {
      const manifest = JSON.parse(readFileSync(`${root}/packages/${name}/package.json`, 'utf8'))
      expect(manifest.dependencies?.['@tether/core']).toBeUndefined()
      expect(manifest.peerDependencies?.['@tether/core']).toBe('workspace:^')
      expect(manifest.devDependencies?.['@tether/core']).toBe('workspace:*')
    })
  }
})
