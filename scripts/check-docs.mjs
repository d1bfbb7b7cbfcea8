// Checks the documentation the way a reader uses it, so that it cannot drift from the API:
//
// 1. Every ```js, ```mjs and ```ts block of README.md, CONTRIBUTING.md, CHANGELOG.md, BENCHMARKS.md,
//    docs/**/*.md and packages/*/README.md is written as a module of its own into
//    .cache/doc-samples/ (inside the repository, so `@tether/*`, express, fastify, ws and
//    prom-client resolve through the workspace's node_modules, to the built packages' declarations)
//    and all of them are type-checked in one TypeScript run: strict, `checkJs`, NodeNext. Blocks
//    that are not meant to compile use other fences (```sh, ```text, ```json); a fence without a
//    language is refused, so no code hides from the check.
// 2. Every relative link and `#anchor` between those documents resolves: the file exists, and the
//    anchor is a heading of the target (GitHub's slugs) or an explicit `id`. Links to this
//    repository on GitHub (what the package READMEs use, since npm shows them) are checked the same
//    way against the local files.
//
// A sample that continues an app declares it with an HTML comment on the line before its fence:
//
//   <!-- sample: after express-app -->
//
// which prepends an import of the named setup below (`app`, `server`). Keep these few and real. A
// sample may import one of the repository's examples by its file name (`./otel.mjs`).
//
// Run after `pnpm build` (the samples see the packages as users do, through their built
// declarations): `pnpm lint:docs`. Fails with file:line for every problem found.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, normalize, relative, resolve } from 'node:path'

const root = resolve(dirname(new URL(import.meta.url).pathname), '..')
const out = join(root, '.cache', 'doc-samples')
const REPOSITORY = 'https://github.com/tether-js/tether'

/**
 * The setups a fragment may continue, by name. Each becomes a module of its own in the samples'
 * folder; a sample that names it imports what it exports.
 */
const PRELUDES = {
  'express-app': {
    exports: ['app'],
    source: `import express from 'express'
import { tether } from '@tether/express'

/** An Express app with tether mounted before its routes. */
export const app = express()
app.use(tether({ timeout: 5_000 }))
`,
  },
  'express-server': {
    exports: ['app', 'server'],
    source: `import { app } from './prelude-express-app.mjs'

export { app }
/** The server Express's app.listen() returns. */
export const server = app.listen(3000)
`,
  },
  'fastify-app': {
    exports: ['app'],
    source: `import Fastify from 'fastify'
import tether from '@tether/fastify'

/** A Fastify app with the plugin registered before its routes. */
export const app = Fastify()
await app.register(tether, { timeout: 5_000 })
`,
  },
}

// Fence languages that are type-checked, and the extension each is written with.
const CHECKED = { js: '.mjs', javascript: '.mjs', mjs: '.mjs', ts: '.mts', typescript: '.mts', mts: '.mts' }
// Fence languages that are documentation only: shell, output, data, configuration.
const UNCHECKED = new Set(['sh', 'bash', 'shell', 'text', 'json', 'jsonc', 'yaml', 'yml', 'nginx', 'haproxy', 'diff'])

/** The documents: the root ones that exist, docs/**\/*.md, and the package READMEs. */
function documents() {
  const found = ['README.md', 'CONTRIBUTING.md', 'CHANGELOG.md', 'BENCHMARKS.md'].filter((file) =>
    existsSync(join(root, file)),
  )
  const walk = (dir) => {
    if (!existsSync(join(root, dir))) return
    for (const entry of readdirSync(join(root, dir)).sort()) {
      const path = `${dir}/${entry}`
      if (statSync(join(root, path)).isDirectory()) walk(path)
      else if (entry.endsWith('.md')) found.push(path)
    }
  }
  walk('docs')
  for (const name of readdirSync(join(root, 'packages')).sort()) {
    if (existsSync(join(root, 'packages', name, 'README.md'))) found.push(`packages/${name}/README.md`)
  }
  return found
}

const problems = []
const problem = (file, line, message) => problems.push({ file, line, message })

/**
 * Splits a document into its fenced blocks and its prose lines (fences and inline code removed
 * from the prose, since neither holds links nor headings).
 */
function parse(file, text) {
  const lines = text.split('\n')
  const blocks = []
  const prose = [] // [line number, text]
  let fence
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]
    const number = index + 1
    if (fence === undefined) {
      const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)\s*(.*)$/.exec(line)
      if (open) {
        let directive
        for (let back = index - 1; back >= 0; back--) {
          if (lines[back].trim() === '') continue
          const comment = /^\s*<!--\s*sample:\s*(.*?)\s*-->\s*$/.exec(lines[back])
          if (comment) directive = { text: comment[1], line: back + 1 }
          break
        }
        fence = {
          marker: open[2],
          indent: open[1].length,
          lang: open[3].toLowerCase(),
          line: number,
          body: [],
          directive,
        }
        continue
      }
      prose.push([number, line])
    } else if (line.trim().startsWith(fence.marker) && line.trim().replace(/[`~]/g, '') === '') {
      blocks.push(fence)
      fence = undefined
    } else {
      // Blocks inside list items are indented: strip the fence's own indentation.
      fence.body.push(line.slice(Math.min(fence.indent, line.length - line.trimStart().length)))
    }
  }
  if (fence !== undefined) problem(file, fence.line, 'code fence is never closed')
  return { blocks, prose }
}

// ---------------------------------------------------------------------------------------------
// 1. Samples

mkdirSync(out, { recursive: true })
for (const entry of readdirSync(out)) rmSync(join(out, entry), { recursive: true, force: true })
writeFileSync(join(out, 'package.json'), `${JSON.stringify({ type: 'module', private: true }, null, 2)}\n`)
for (const [name, prelude] of Object.entries(PRELUDES)) writeFileSync(join(out, `prelude-${name}.mjs`), prelude.source)

const samples = new Map() // file written -> { doc, firstLine, offset }
const parsed = new Map()
for (const doc of documents()) {
  const text = readFileSync(join(root, doc), 'utf8')
  const { blocks, prose } = parse(doc, text)
  parsed.set(doc, { text, prose })
  for (const block of blocks) {
    if (block.lang === '') {
      problem(
        doc,
        block.line,
        'code fence without a language: use ```js or ```ts (type-checked), or ```sh, ```text, ```json',
      )
      continue
    }
    const ext = CHECKED[block.lang]
    if (ext === undefined) {
      if (!UNCHECKED.has(block.lang)) {
        problem(doc, block.line, `unknown fence language \`${block.lang}\`: use js, ts, sh, text or json`)
      }
      if (block.directive) problem(doc, block.directive.line, 'a `sample:` comment before a block that is not checked')
      continue
    }
    const header = []
    if (block.directive) {
      const match = /^after\s+(.+)$/.exec(block.directive.text)
      const names = match ? match[1].split(/[\s,]+/).filter(Boolean) : []
      if (names.length === 0) {
        problem(
          doc,
          block.directive.line,
          `unreadable sample comment \`${block.directive.text}\`: write <!-- sample: after express-app -->`,
        )
      }
      for (const name of names) {
        const prelude = PRELUDES[name]
        if (prelude === undefined) {
          problem(doc, block.directive.line, `unknown setup \`${name}\` (known: ${Object.keys(PRELUDES).join(', ')})`)
          continue
        }
        header.push(`import { ${prelude.exports.join(', ')} } from './prelude-${name}.mjs'`)
      }
    }
    // A sample that imports one of the repository's examples by its file name (`./otel.mjs`, as
    // a user who copied it would) gets a copy of it beside it, not checked itself.
    for (const [, file] of block.body.join('\n').matchAll(/from '\.\/([\w.-]+\.mjs)'/g)) {
      const example = join(root, 'examples', file)
      if (existsSync(example)) writeFileSync(join(out, file), `// @ts-nocheck\n${readFileSync(example, 'utf8')}`)
    }
    const name = `${doc.replace(/[/.]/g, '_')}-L${block.line}${ext}`
    writeFileSync(join(out, name), `${[...header, ...block.body].join('\n')}\n`)
    samples.set(name, { doc, firstLine: block.line + 1, offset: header.length })
  }
}

writeFileSync(
  join(out, 'tsconfig.json'),
  `${JSON.stringify(
    {
      compilerOptions: {
        allowJs: true,
        checkJs: true,
        strict: true,
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        lib: ['ES2023'],
        types: ['node'],
        noEmit: true,
        skipLibCheck: true,
        // The samples are read one by one: an unused import or variable in one is not a defect.
        noUnusedLocals: false,
      },
      include: ['*.mjs', '*.mts'],
    },
    null,
    2,
  )}\n`,
)

if (!existsSync(join(root, 'packages', 'core', 'dist', 'index.d.mts'))) {
  console.error('check-docs: the packages are not built; run `pnpm build` first (the samples compile against dist/)')
  process.exit(1)
}

const tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc')
let output = ''
try {
  execFileSync(process.execPath, [tsc, '-p', join(out, 'tsconfig.json'), '--pretty', 'false'], {
    cwd: out,
    encoding: 'utf8',
    stdio: 'pipe',
  })
} catch (error) {
  output = `${error.stdout ?? ''}${error.stderr ?? ''}`
  if (output.trim() === '') throw error
}
let pending
for (const line of output.split('\n')) {
  const match = /^(.+?)\((\d+),(\d+)\): error (TS\d+): (.*)$/.exec(line)
  if (match) {
    const sample = samples.get(match[1])
    if (sample === undefined) {
      pending = {
        file: relative(root, join(out, match[1])),
        line: Number(match[2]),
        message: `${match[4]} ${match[5]}`,
      }
    } else {
      const inSample = Number(match[2]) - sample.offset
      pending =
        inSample < 1
          ? { file: sample.doc, line: sample.firstLine - 1, message: `${match[4]} in the sample's setup: ${match[5]}` }
          : { file: sample.doc, line: sample.firstLine + inSample - 1, message: `${match[4]} ${match[5]}` }
      pending.column = Number(match[3])
    }
    problems.push(pending)
  } else if (pending !== undefined && /^\s+/.test(line) && line.trim() !== '') {
    pending.message += `\n      ${line.trim()}`
  } else if (line.trim() !== '') {
    problems.push({ file: 'tsc', line: 0, message: line })
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Links and anchors

/** GitHub's heading slug (github-slugger): lowercase, punctuation dropped, spaces to hyphens. */
function slug(heading) {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // links and images: their text
    .replace(/<[^>]+>/g, '') // inline HTML
    .replace(/[*`]/g, '')
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '')
    .replace(/ /g, '-')
}

const anchorCache = new Map()
/** The anchors of a document: its headings' slugs (numbered when repeated) and explicit ids. */
function anchorsOf(doc) {
  let anchors = anchorCache.get(doc)
  if (anchors !== undefined) return anchors
  anchors = new Set()
  const seen = new Map()
  const { prose } = parsed.get(doc) ?? parse(doc, readFileSync(join(root, doc), 'utf8'))
  for (const [, line] of prose) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (heading) {
      const base = slug(heading[1])
      const count = seen.get(base) ?? 0
      seen.set(base, count + 1)
      anchors.add(count === 0 ? base : `${base}-${count}`)
    }
    for (const id of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(id[1])
  }
  anchorCache.set(doc, anchors)
  return anchors
}

/** Where a link to this repository on GitHub points in the working tree, or undefined. */
function localTarget(url) {
  if (url === REPOSITORY || url.startsWith(`${REPOSITORY}#`)) {
    return `README.md${url.slice(REPOSITORY.length).replace(/^#readme$/, '')}`
  }
  const match = new RegExp(`^${REPOSITORY.replace(/[.]/g, '\\.')}/(?:blob|tree)/main/(.*)$`).exec(url)
  return match ? match[1] : undefined
}

for (const [doc, { prose }] of parsed) {
  for (const [number, raw] of prose) {
    const line = raw.replace(/`[^`]*`/g, '``') // no links inside inline code
    const targets = [
      ...[...line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]),
      ...[...line.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/g)].map((m) => m[1]),
      ...[...line.matchAll(/<(?:a|img)\s[^>]*(?:href|src)="([^"]+)"/g)].map((m) => m[1]),
    ]
    for (const target of targets) {
      let path
      let anchor
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) {
        const local = localTarget(target)
        if (local === undefined) continue // another site: not checked (no network)
        ;[path, anchor] = local.split('#')
        path = path.replace(/\/$/, '')
      } else {
        const [file, hash] = target.split('#')
        anchor = hash
        path = file === '' ? doc : normalize(join(dirname(doc), decodeURIComponent(file)))
        if (file !== '' && doc.startsWith('packages/')) {
          problem(
            doc,
            number,
            `relative link \`${target}\` in a package README: npm shows it without the repository; link to ${REPOSITORY}/blob/main/...`,
          )
          continue
        }
      }
      if (path.startsWith('..') || !existsSync(join(root, path))) {
        problem(doc, number, `broken link \`${target}\`: no file ${path}`)
        continue
      }
      if (anchor !== undefined && anchor !== '') {
        if (!path.endsWith('.md')) {
          problem(doc, number, `link \`${target}\`: an anchor into a file that is not Markdown`)
        } else if (!anchorsOf(path).has(anchor)) {
          problem(doc, number, `broken anchor \`${target}\`: ${path} has no heading whose anchor is #${anchor}`)
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

if (problems.length > 0) {
  problems.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line)
  for (const p of problems) {
    console.error(`${p.file}:${p.line}${p.column ? `:${p.column}` : ''}: ${p.message}`)
  }
  console.error(
    `\ncheck-docs: ${problems.length} problem(s) in the documentation (samples are in ${relative(root, out)}/)`,
  )
  process.exit(1)
}
console.log(`check-docs: ${samples.size} samples type-check, links and anchors of ${parsed.size} documents resolve`)
