// Builds the package in the current directory: TypeScript to CommonJS in dist/, then for every
// entry point an ES module wrapper (.mjs) and its declarations (.d.mts).
//
// Why a wrapper instead of a second, ESM build: @tether/core is stateful (one AsyncLocalStorage,
// one registry of requests and lingering tasks). Two builds would give an app that both imports
// and requires it two copies of that state, and a scope entered by one copy would be invisible to
// the other (Node's "dual package hazard"; its documentation recommends exactly this wrapper).
import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { basename, join, resolve } from 'node:path'

const packageDir = process.cwd()
const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'))
const require = createRequire(join(packageDir, 'package.json'))

rmSync(join(packageDir, 'dist'), { recursive: true, force: true })
try {
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], {
    cwd: packageDir,
    stdio: 'inherit',
  })
} catch {
  process.exit(1) // tsc has printed the errors
}

for (const [subpath, target] of Object.entries(manifest.exports)) {
  if (typeof target === 'string') continue // ./package.json
  const cjsFile = resolve(packageDir, target.require.default)
  const esmFile = resolve(packageDir, target.import.default)
  const esmTypes = resolve(packageDir, target.import.types)
  const from = `./${basename(cjsFile)}`
  const exported = require(cjsFile)
  const names = Object.keys(exported).filter((name) => name !== 'default' && name !== '__esModule')
  // A default export is re-exported under the named export it aliases, which is how TypeScript
  // sees it too (a CommonJS `exports.default` is not an ES default export to the type checker).
  const defaultAlias = 'default' in exported ? names.find((name) => exported[name] === exported.default) : undefined
  if ('default' in exported && defaultAlias === undefined) {
    throw new Error(`${manifest.name}${subpath.slice(1)}: the default export must also be a named export`)
  }

  const esm = [`import cjs from '${from}'`, `export const { ${names.join(', ')} } = cjs`]
  if (defaultAlias) esm.push(`export default cjs.${defaultAlias}`)
  writeFileSync(esmFile, `${esm.join('\n')}\n`)

  const dts = [`export * from '${from}'`]
  if (defaultAlias) dts.push(`export { ${defaultAlias} as default } from '${from}'`)
  writeFileSync(esmTypes, `${dts.join('\n')}\n`)
}
