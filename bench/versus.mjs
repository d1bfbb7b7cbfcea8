// This checkout against an earlier commit, on the pairs that have targets (bench/pairs.mjs): each
// pair is measured with tether as that commit built it and with this checkout's, in alternation
// (REV, this, this, REV, ...), and each build's figure is the median of its runs' ratios. The question it
// answers is the one a regression raises: did this change make the request path dearer, on this
// machine, today?
//
// Each run is a process (or a server process) holding one build only, so the two builds are not
// compared inside one process: a process that has loaded two copies of the package runs the second
// one's request path measurably slower (about 12% on Fastify's, without sockets), which would
// count against whichever build is loaded second.
//
//   node bench/versus.mjs REV [--runs 3] [--only fastify] [--sockets] [--json]
//
// Without sockets (bench/in-process.mjs) by default: a minute or two, and tenths of a microsecond
// show. --sockets measures over sockets instead (bench/http.mjs, one server process of 4 rounds a
// run), as BENCHMARKS.md's main table does: about 20 s a run. The build of REV is made once, in a
// git worktree in the system's temporary folder, with the package manager of that commit.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { buildAt, median } from './lib.mjs'
import { PAIRS } from './pairs.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '3' },
    only: { type: 'string' },
    sockets: { type: 'boolean' },
    json: { type: 'boolean' },
  },
})
const runs = Number(values.runs)
if (!Number.isInteger(runs) || runs < 1) throw new RangeError(`--runs must be a whole number ≥ 1, got ${values.runs}`)
if (positionals.length !== 1)
  throw new TypeError('usage: node bench/versus.mjs REV [--runs 3] [--only NAME] [--sockets]')

/**
 * One run of one pair with one build (`dir`, or this checkout's when undefined): its ratios, one
 * per round over sockets, the median of its rounds without.
 */
function runPair(pair, dir) {
  const env = { ...process.env }
  if (dir === undefined) delete env.TETHER_BUILD
  else env.TETHER_BUILD = dir
  const [script, args] = values.sockets
    ? ['http.mjs', ['--pair', pair.name, '--processes', '1', '--rounds', '4', '--json']]
    : ['in-process.mjs', ['--pair', pair.name]]
  const out = execFileSync(process.execPath, [fileURLToPath(new URL(script, import.meta.url)), ...args], {
    cwd: root,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const result = JSON.parse(out.trim().split('\n').pop())
  return values.sockets ? result.results[0].cpuRatios : [result.ratio]
}

const ref = positionals[0]
const { sha, dir } = buildAt(ref)
const pairs = PAIRS.filter((pair) => pair.target !== undefined && pair.name.includes(values.only ?? ''))
const results = []
for (const pair of pairs) {
  const ratios = { atRef: [], here: [] }
  for (let run = 0; run < runs; run++) {
    // Alternating which build goes first, so neither always runs on a machine the other warmed.
    const order = run % 2 === 0 ? ['atRef', 'here'] : ['here', 'atRef']
    for (const which of order) ratios[which].push(...runPair(pair, which === 'atRef' ? dir : undefined))
  }
  const atRef = median(ratios.atRef)
  const here = median(ratios.here)
  results.push({ name: pair.name, path: pair.path, atRef, here, change: here / atRef, ratios })
  if (!values.json) {
    console.log(
      `${pair.name} ${pair.path}: ${atRef.toFixed(3)} at ${ref}, ${here.toFixed(3)} here (${(here / atRef).toFixed(3)})`,
    )
  }
}
const summary = { node: process.version, ref, sha, sockets: values.sockets === true, runs, results }
if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`)
