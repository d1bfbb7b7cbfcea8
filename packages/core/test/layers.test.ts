import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// The layers of packages/core/src, lowest first (the comment at the top of src/index.ts says why).
const LAYERS = ['primitives', 'server', 'request', 'outbound', 'workers', 'observability'] as const
const src = fileURLToPath(new URL('../src/', import.meta.url))

interface Edge {
  readonly file: string
  readonly specifier: string
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  )
}

/** Every relative import or re-export (static, type-only or `import()`) of a file under src. */
function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const found: string[] = []
  for (const match of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) found.push(match[1] as string)
  return found
}

/** The import rule broken by `specifier` in `file` (both relative to src), or undefined. */
function violation(file: string, specifier: string): string | undefined {
  const parts = file.split('/')
  if (parts.length === 1) return undefined // the entry points at the root re-export every layer
  const own = LAYERS.indexOf(parts[0] as (typeof LAYERS)[number])
  if (own === -1) return `${file} is in no layer (${LAYERS.join(', ')})`
  const target = join(parts[0] as string, specifier).split('/')
  if (target.length === 1) return `${file} imports ${specifier}, outside every layer`
  if (target[0] === parts[0]) return undefined
  const other = LAYERS.indexOf(target[0] as (typeof LAYERS)[number])
  if (other === -1) return `${file} imports ${specifier}, outside every layer`
  if (other > own) return `${file} imports ${specifier}: ${parts[0]} may not import from ${target[0]}, a layer above it`
  if (target.length !== 2 || target[1] !== 'index.js') {
    return `${file} imports ${specifier}: another layer is reached through its index.ts only`
  }
  return undefined
}

describe('the layers of packages/core/src', () => {
  const edges: Edge[] = sources(src).flatMap((path) => {
    const file = relative(src, path).split('\\').join('/')
    return relativeImports(path).map((specifier) => ({ file, specifier }))
  })

  it('finds the imports it checks (a parser that found none would pass anything)', () => {
    expect(edges.length).toBeGreaterThan(50)
    expect(edges).toContainEqual({ file: 'server/protocol.ts', specifier: '../primitives/index.js' })
  })

  it('has every source file in a layer folder, besides the entry points', () => {
    const roots = sources(src)
      .map((path) => relative(src, path))
      .filter((file) => !file.includes('/') && !file.includes('\\'))
    expect(roots.sort()).toEqual(['adapter.ts', 'index.ts', 'testing.ts'])
  })

  it('imports only downwards, and another layer only through its index.ts', () => {
    const broken = edges.map(({ file, specifier }) => violation(file, specifier)).filter((v) => v !== undefined)
    expect(broken).toEqual([])
  })

  it('refuses an import upwards, and one into another layer’s internals', () => {
    expect(violation('primitives/scope.ts', '../server/index.js')).toMatch(/a layer above it/)
    expect(violation('request/tether.ts', '../server/connections.js')).toMatch(/through its index\.ts only/)
    expect(violation('request/tether.ts', '../server/index.js')).toBeUndefined()
    expect(violation('request/tether.ts', './limit.js')).toBeUndefined()
  })

  it('has no source file over 450 lines (split by concern past that)', () => {
    const long = sources(src)
      .map((path) => ({ file: relative(src, path), lines: readFileSync(path, 'utf8').split('\n').length - 1 }))
      .filter(({ lines }) => lines > 450)
    expect(long).toEqual([])
  })

  it('keeps the primitives free of HTTP and every layer free of frameworks', () => {
    for (const path of sources(src)) {
      const file = relative(src, path)
      const text = readFileSync(path, 'utf8')
      expect(text, file).not.toMatch(/from '(express|fastify)['/]/)
      if (file.startsWith('primitives')) expect(text, file).not.toMatch(/from 'node:(http|http2|https|net)'/)
    }
  })
})
