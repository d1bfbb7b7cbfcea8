// How much machine code a request runs through: the size of the code V8 optimized while serving a
// pair of bench/pairs.mjs without sockets, tether's own functions apart from the rest (the
// framework's, Node's, the other contender's and the harness's). Over sockets, code run once per
// request costs several times what it costs in a loop (the footprint pairs: `bench/http.mjs --only
// footprint`), so these bytes say what tether's path costs in a server better than its time in a
// loop does: the 200 distinct functions of the footprint pairs are about 40 KB of such code, and
// cost 3.8 µs more per request over sockets than without them.
//
//   node bench/code-size.mjs [--pair 'fastify: bare vs tether'] [--top 15] [--json]
//
// Uses the built packages (pnpm build). V8 prints each optimized function with its source and
// the size of its instructions (--print-opt-code); a function is tether's when its source is in a
// file of packages/*/dist. A callee inlined into its caller is counted in both when V8 also
// optimized it on its own, and what V8 has optimized by the end of the run varies a little from one
// run to the next (by a function or two), so compare figures of several runs.
import { execFileSync } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    pair: { type: 'string', default: 'fastify: bare vs tether' },
    top: { type: 'string', default: '15' },
    json: { type: 'boolean' },
  },
})
const root = fileURLToPath(new URL('..', import.meta.url))

/** The text of every .js file under `dir`, recursively, joined. */
function sources(dir) {
  let text = ''
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.js')) text += readFileSync(`${entry.parentPath}/${entry.name}`, 'utf8')
  }
  return text
}
const tetherSource = ['core', 'express', 'fastify'].map((name) => sources(`${root}packages/${name}/dist`)).join('')

/** The optimized functions of one in-process run of the pair: { name, source, bytes }, last version of each. */
function optimizedFunctions() {
  const script = fileURLToPath(new URL('in-process.mjs', import.meta.url))
  // Into a file, not a pipe: read through a pipe, V8's printout arrived cut short.
  const dir = mkdtempSync(join(tmpdir(), 'tether-code-size-'))
  const file = join(dir, 'opt-code.txt')
  const out = openSync(file, 'w')
  try {
    execFileSync(process.execPath, ['--print-opt-code', script, '--pair', values.pair, '--rounds', '6'], {
      stdio: ['ignore', out, 'inherit'],
    })
  } finally {
    closeSync(out)
  }
  const lines = readFileSync(file, 'utf8').split('\n')
  rmSync(dir, { recursive: true })
  const functions = new Map()
  let section = 'none'
  let source = []
  let name = ''
  for (const line of lines) {
    if (line === '--- Raw source ---') {
      section = 'source'
      source = []
      name = '(anonymous)' // V8 prints no name for an anonymous function
    } else if (line === '--- Optimized code ---') section = 'code'
    else if (section === 'source') source.push(line)
    else if (line.startsWith('name = ')) name = line.slice('name = '.length)
    else if (line.startsWith('Instructions (size = ')) {
      const bytes = Number(line.slice('Instructions (size = '.length, -1))
      const text = source.join('\n').trim()
      // Re-optimized after a deopt: the last code is the one that runs.
      functions.set(`${name}\n${text}`, { name, source: text, bytes })
    }
  }
  return [...functions.values()]
}

const tether = []
let rest = 0
for (const fn of optimizedFunctions()) {
  // V8 prints a function's source from its parameter list on; the whole of it is in the file.
  if (tetherSource.includes(fn.source)) tether.push({ name: fn.name, bytes: fn.bytes })
  else rest += fn.bytes
}
tether.sort((a, b) => b.bytes - a.bytes)
const total = tether.reduce((sum, fn) => sum + fn.bytes, 0)
if (values.json) {
  process.stdout.write(
    `${JSON.stringify({ node: process.version, pair: values.pair, tether: total, rest, functions: tether })}\n`,
  )
} else {
  console.log(`Node ${process.version}, ${values.pair}: bytes of optimized instructions`)
  console.log(`tether ${total} in ${tether.length} functions; the rest ${rest}`)
  for (const fn of tether.slice(0, Number(values.top))) console.log(`  ${String(fn.bytes).padStart(6)}  ${fn.name}`)
}
