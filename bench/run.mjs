// `pnpm bench`: runs the micro-benchmarks, the HTTP overhead comparisons and the memory soak, one
// after the other (never two at once: they would share the two cores), then writes BENCHMARKS.md
// and its chart, bench/chart.svg.
//
//   pnpm bench                      Node 24 (fetched from the npm registry into .cache/)
//   pnpm bench -- --node 26         another Node line (fetched the same way)
//   pnpm bench -- --quick           fewer rounds and a 100,000-request soak, for a first look
//   pnpm bench -- --skip-soak
//   pnpm bench -- --skip-overload   leave out the goodput-under-overload benchmark
//   pnpm bench -- --report-only     rewrite BENCHMARKS.md from bench/results/latest.json
//   pnpm bench -- --profile         only profile each adapter's request path, bare vs tether
//                                   (bench/profile.mjs), print where the CPU goes, and splice
//                                   it into BENCHMARKS.md
//   pnpm bench -- --in-process      only the HTTP pairs without sockets (bench/in-process.mjs), on
//                                   Node 22, 24 and 26, spliced into BENCHMARKS.md
//   pnpm bench -- --versus REV      only this checkout against commit REV on the pairs that have
//                                   targets (bench/versus.mjs): without sockets on Node 22, 24
//                                   and 26, over sockets on 24; spliced into BENCHMARKS.md
//   pnpm bench -- --proxies         also the rolling-restart and retry scenarios through nginx and
//                                   haproxy (bench/proxies.mjs; installs them with apt-get if missing)
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { barChart } from './chart.mjs'
import { inProcessSection } from './in-process-report.mjs'
import { overloadSection } from './overload-report.mjs'
import { proxiesSection } from './proxies.mjs'
import { threadsSection } from './threads-report.mjs'
import { versusSection } from './versus-report.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
// `pnpm bench -- --profile`: pnpm 10 passes the `--` on; it is not an argument of ours.
const args = process.argv.slice(2).filter((arg) => arg !== '--')
const { values } = parseArgs({
  args,
  options: {
    node: { type: 'string', default: '24' },
    quick: { type: 'boolean' },
    'skip-soak': { type: 'boolean' },
    'skip-overload': { type: 'boolean' },
    'report-only': { type: 'boolean' },
    proxies: { type: 'boolean' },
    profile: { type: 'boolean' },
    'in-process': { type: 'boolean' },
    versus: { type: 'string' },
  },
})

// Node 24 is the production line the targets are set for; --node picks another. Re-run this
// script under the line asked for, fetched from the npm registry if it is not the one running.
const major = Number(process.versions.node.split('.')[0])
if (Number(values.node) !== major && !values['report-only']) {
  const rerun = [`${root}scripts/with-node.sh`, values.node, 'node', fileURLToPath(import.meta.url), ...args]
  process.exit(spawnSync('bash', rerun, { stdio: 'inherit' }).status ?? 1)
}

const reportFile = `${root}BENCHMARKS.md`

/** The section of BENCHMARKS.md under `## heading`, up to the next `## `; '' when it has none. */
function sectionOf(report, heading) {
  const start = report.indexOf(`## ${heading}`)
  if (start === -1) return ''
  const next = report.indexOf('\n## ', start)
  return report.slice(start, next === -1 ? report.length : next + 1)
}

/**
 * Puts `section` in place of BENCHMARKS.md's section under `## heading`, or before "Reading the
 * results" when there is none: for the parts of the report that run on their own (--profile,
 * --in-process) and leave the rest of it as the last full run wrote it.
 */
function spliceSection(heading, section) {
  const report = readFileSync(reportFile, 'utf8')
  const old = sectionOf(report, heading)
  const at = old === '' ? report.indexOf('## Reading the results') : report.indexOf(old)
  writeFileSync(reportFile, report.slice(0, at) + section + report.slice(at + old.length))
}

/**
 * Keeps the results of a part of the report that runs on its own in its results file, and puts
 * its section in place in BENCHMARKS.md; returns the section.
 */
function keepSection(file, results, heading, render) {
  mkdirSync(`${root}bench/results`, { recursive: true })
  writeFileSync(file, JSON.stringify(results, null, 2))
  const section = render(results)
  spliceSection(heading, section)
  return section
}

/**
 * A profile's share of samples as a share of the samples in which the server was busy, in percent:
 * a run that kept the server busier has more samples to share out, so only these compare.
 */
const ofBusy = (share, profile) => `${((share / profile.busyShare) * 100).toFixed(2)}%`

/** Runs a benchmark script and returns its JSON; on another Node line (`on`) when given. */
function runJson(script, args, on) {
  console.error(`> ${on === undefined ? '' : `node ${on}: `}node bench/${script} ${args.join(' ')}`)
  const argv = [fileURLToPath(new URL(script, import.meta.url)), ...args, '--json']
  const [file, prefix] =
    on === undefined ? [process.execPath, []] : ['bash', [`${root}scripts/with-node.sh`, on, 'node']]
  const out = execFileSync(file, [...prefix, ...argv], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024,
  })
  return JSON.parse(out.trim().split('\n').pop())
}

// The CPU profiles keep their own results file, like the proxy scenarios, and `--profile` replaces
// their section of BENCHMARKS.md in place (a full run keeps the last ones taken).
const profileFile = `${root}bench/results/profile.json`
if (values.profile) {
  const hello = runJson('profile.mjs', ['--seconds', '6', '--top', '10'])
  const fanOut = runJson('profile.mjs', [
    '--seconds',
    '6',
    '--top',
    '10',
    '--path',
    '/fanout',
    'express + tether',
    'fastify + tether',
  ])
  const profile = { node: process.version, when: new Date().toISOString().slice(0, 10), hello, fanOut }
  keepSection(profileFile, profile, "Where a request's CPU goes", profileSection)
  for (const [name, result] of [
    ...Object.entries(hello),
    ...Object.entries(fanOut).map(([n, r]) => [`${n} /fanout`, r]),
  ]) {
    console.log(
      `\n${name}: ${(result.busyShare * 100).toFixed(1)}% busy, tether's own code ${ofBusy(result.tetherShare, result)} of busy time`,
    )
    for (const { name: fn, share } of result.tetherTop) console.log(`  ${ofBusy(share, result).padStart(6)}  ${fn}`)
  }
  process.exit(0)
}

// The pairs without sockets keep their own results file too, and `--in-process` replaces their
// section of BENCHMARKS.md in place: they take a minute per Node line, the full run an hour.
const inProcessFile = `${root}bench/results/in-process.json`
if (values['in-process']) {
  const when = new Date().toISOString().slice(0, 10)
  const lines = ['22', '24', '26'].map((line) => ({
    ...runJson('in-process.mjs', [], line),
    bytes: runJson('in-process.mjs', ['--bytes'], line).results,
    when,
  }))
  console.log(keepSection(inProcessFile, lines, 'Without sockets', inProcessSection))
  process.exit(0)
}

// This checkout against an earlier commit keeps its own results file too, and `--versus` replaces
// its section in place.
const versusFile = `${root}bench/results/versus.json`
if (values.versus !== undefined) {
  const versus = {
    when: new Date().toISOString().slice(0, 10),
    inProcess: ['22', '24', '26'].map((line) => runJson('versus.mjs', [values.versus], line)),
    // Over sockets a run is a server process of 4 rounds: 2 runs a build keep this to ten minutes.
    sockets: runJson('versus.mjs', [values.versus, '--sockets', '--runs', '2']),
  }
  console.log(keepSection(versusFile, versus, 'Against an earlier commit', versusSection))
  process.exit(0)
}

const quick = values.quick === true
const resultsFile = `${root}bench/results/latest.json`
// Every figure of a run, kept in bench/results/latest.json so that --report-only can rewrite the
// report. `microLines` and `httpLines`: the other maintained Node lines, whose costs differ.
const OTHER_LINES = ['22', '24', '26'].filter((line) => line !== values.node)
let run
if (values['report-only']) {
  // bench/results/ is not committed: a fresh clone has no run to rewrite the report from.
  if (!existsSync(resultsFile)) {
    console.error('--report-only: bench/results/latest.json does not exist; run `pnpm bench` first')
    process.exit(1)
  }
  run = JSON.parse(readFileSync(resultsFile, 'utf8'))
} else {
  const rounds = (full, short) => ['--rounds', quick ? short : full]
  const windows = quick ? ['--seconds', '1'] : ['--seconds', '2']
  run = {
    when: new Date().toISOString().slice(0, 10),
    cpu: `${os.cpus()[0]?.model ?? 'unknown CPU'} (${os.cpus().length} cores, shared)`,
  }
  run.micro = runJson('micro.mjs', rounds('21', '7'))
  run.microLines = OTHER_LINES.map((line) => runJson('micro.mjs', rounds('15', '5'), line))
  // A small task through a worker thread vs inline, and what the lifecycle channels cost a request.
  run.workers = runJson('worker-pool.mjs', rounds('15', '7'))
  run.events = runJson('diagnostics.mjs', rounds('15', '7'))
  // What tether adds per request, counted (bench/hot-path.mjs): the same figures CI guards.
  run.hotPath = runJson('hot-path.mjs', [])
  run.http = runJson('http.mjs', [...rounds('12', '4'), ...windows])
  run.httpLines = OTHER_LINES.map((line) => runJson('http.mjs', [...rounds('10', '4'), ...windows], line))
  // HTTP/2 (Fastify with http2: true, loaded by h2load or bench/h2-load.mjs): rows of the same table.
  const h2 = runJson('http2.mjs', [...rounds('12', '4'), ...windows])
  run.http.results.push(...h2.results.map((r) => ({ ...r, name: `${r.name} (${h2.generator})` })))
  run.outbound = runJson('outbound.mjs', [...rounds('10', '4'), ...windows])
  run.soak = values['skip-soak'] ? [] : runJson('soak.mjs', ['--requests', quick ? '100000' : '1000000'])
  run.overload = values['skip-overload'] ? undefined : runJson('overload.mjs', [...rounds('5', '1'), '--seconds', '2'])
  run.command = `pnpm bench${values.node === '24' ? '' : ` -- --node ${values.node}`}${quick ? ' --quick' : ''}`
  mkdirSync(`${root}bench/results`, { recursive: true })
  writeFileSync(resultsFile, JSON.stringify(run, null, 2))
}
const { micro, microLines, http: httpResults, httpLines, soak, outbound, overload, workers, events, hotPath } = run
const { when, cpu } = run
const command = run.command ?? 'pnpm bench'

// The proxy scenarios keep their own results file: they need root (or nginx and haproxy
// installed) and take minutes, so they run only when asked and their last figures are kept.
const proxiesFile = `${root}bench/results/proxies.json`
if (values.proxies && !values['report-only']) {
  mkdirSync(`${root}bench/results`, { recursive: true })
  const when = new Date().toISOString().slice(0, 10)
  const results = { ...runJson('proxies.mjs', ['--rounds', quick ? '1' : '3']), when }
  writeFileSync(proxiesFile, JSON.stringify(results, null, 2))
}
// bench/results/ is not committed: on a fresh clone these sections have no results file, and the
// report keeps what the last run that had one wrote, rather than dropping the section.
const lastReport = existsSync(reportFile) ? readFileSync(reportFile, 'utf8') : ''
/** A section from its results file when there is one, else as the report has it now. */
function keptSection(file, heading, render) {
  return existsSync(file) ? render(JSON.parse(readFileSync(file, 'utf8'))) : sectionOf(lastReport, heading)
}
const proxiesText = keptSection(proxiesFile, 'Behind nginx and haproxy', (r) => `${proxiesSection(r)}\n`)
const profileText = keptSection(profileFile, "Where a request's CPU goes", profileSection)
const inProcessText = keptSection(inProcessFile, 'Without sockets', inProcessSection)
const versusText = keptSection(versusFile, 'Against an earlier commit', versusSection)

/** Where a request's CPU goes: the busiest functions of tether's own code, from bench/profile.mjs. */
function profileSection({ node, when: taken, hello, fanOut }) {
  const pct = (share) => `${(share * 100).toFixed(2)}%`
  const runs = [
    ...Object.entries(hello).filter(([name]) => name.includes('tether')),
    ...Object.entries(fanOut).map(([name, result]) => [`${name}, fan-out`, result]),
  ]
  const rows = runs.map(
    ([name, r]) =>
      `| ${name} (\`${r.path}\`) | ${pct(r.busyShare)} | **${ofBusy(r.tetherShare, r)}** | ${r.tetherTop
        .slice(0, 4)
        .map(({ name: fn, share }) => `\`${fn.split(' ')[0]}\` ${ofBusy(share, r)}`)
        .join(', ')} |`,
  )
  const bare = Object.entries(hello).filter(([name]) => !name.includes('tether'))
  // Profiles taken before the generator was recorded were loaded by a Node client.
  const generator = Object.values(hello)[0]?.generator ?? 'a Node client in the load process'
  return `## Where a request's CPU goes (profiles)

\`pnpm bench -- --profile\` (Node ${node}, ${taken}): each contender alone in a server process under
\`--cpu-prof\` (a sample every 100 µs), 32 keep-alive connections for 6 s (${generator});
self time by function, as shares of the samples in which the server was busy (not idle), which
compare between runs that kept it more or less busy. The \`.cpuprofile\` files are in
\`bench/results/profiles/\` (open them in Chrome's DevTools or speedscope). What tether adds
beyond its own functions is Node's: the AsyncLocalStorage entry, the \`close\` listener, and for a
fan-out its \`AbortController\` and the trusted \`Event\` every \`abort()\` builds.

| contender | busy | tether's own code, of busy time | its busiest functions, of busy time |
| --- | --- | --- | --- |
${rows.join('\n')}

Top of the bare apps, for comparison: ${bare
    .map(
      ([name, r]) =>
        `${name}: ${r.top
          .filter(({ name: fn }) => !fn.startsWith('('))
          .slice(0, 3)
          .map(({ name: fn, share }) => `\`${fn.split(' ')[0]}\` ${ofBusy(share, r)}`)
          .join(', ')}`,
    )
    .join('; ')}.

`
}

const fixed = (value, digits = 2) => (value === undefined ? '' : value.toFixed(digits))
const verdict = (ok) => (ok ? 'meets' : '**misses**')

const chartRows = [
  ...httpResults.results.map((r) => ({
    label: `${r.name}${r.path === '/' ? '' : ` (${r.path})`}`,
    value: r.cpuRatio,
    target: r.target,
    better: 'higher',
  })),
  // Micro ratios are candidate ÷ baseline (lower is faster); the chart shows every row the same
  // way round, baseline ÷ candidate, so that a longer bar is always the cheaper candidate.
  ...micro.results.map((r) => ({
    label: r.name.replace(', 1,000 immediate tasks', '').replace(' over 10 immediate tasks', ''),
    value: 1 / r.ratio,
    target: r.target === undefined ? undefined : 1 / r.target.max,
    better: 'higher',
  })),
]
mkdirSync(`${root}bench`, { recursive: true })
writeFileSync(
  `${root}bench/chart.svg`,
  barChart({
    title: 'tether: cost relative to the baseline (higher is cheaper; black tick = target)',
    subtitle: `HTTP: server CPU per request, baseline ÷ candidate. Micro: baseline time ÷ candidate time. Node ${httpResults.node}, ${when}.`,
    rows: chartRows,
  }),
)

const httpTable = httpResults.results.map(
  (r) =>
    `| ${r.name} | \`${r.path}\` | ${fixed(r.baselineCpuUs, 1)} µs | ${fixed(r.candidateCpuUs, 1)} µs | **${fixed(r.cpuRatio, 3)}** | ${r.target === undefined ? '' : `≥ ${r.target}: ${verdict(r.cpuRatio >= r.target)}`} | ${Math.round(r.baselineRate)} / ${Math.round(r.candidateRate)} (${fixed(r.rateRatio, 3)}) |`,
)
const microTable = micro.results.map(
  (r) =>
    `| ${r.name} | ${r.candidate} ${fixed(r.candidateNs / 1000)} µs | ${r.baseline} ${fixed(r.baselineNs / 1000)} µs | **${fixed(r.ratio)}** | ${r.target === undefined ? '' : `≤ ${r.target.max}: ${verdict(r.ratio <= r.target.max)}`} |`,
)
// One row per primitive, one column per Node line (ratios: lower is faster).
const lines = [micro, ...(microLines ?? [])].sort(
  (a, b) => Number(a.node.slice(1).split('.')[0]) - Number(b.node.slice(1).split('.')[0]),
)
const linesTable = micro.results.map(
  (r) =>
    `| ${r.name} | ${lines.map((line) => fixed(line.results.find((x) => x.name === r.name)?.ratio ?? Number.NaN)).join(' | ')} |`,
)
// One row per HTTP pair (HTTP/1.1: the pairs every line runs), one column per Node line.
const httpByLine = [httpResults, ...(httpLines ?? [])].sort(
  (a, b) => Number(a.node.slice(1).split('.')[0]) - Number(b.node.slice(1).split('.')[0]),
)
const httpLinesTable =
  (httpLines ?? []).length === 0
    ? []
    : httpResults.results
        .filter((r) => httpByLine.every((line) => line.results.some((x) => x.name === r.name)))
        .map((r) => {
          const ratios = httpByLine.map((line) => line.results.find((x) => x.name === r.name).cpuRatio)
          const target = r.target === undefined ? '' : `≥ ${r.target}: ${verdict(ratios.every((x) => x >= r.target))}`
          return `| ${r.name} | \`${r.path}\` | ${ratios.map((x) => `**${fixed(x, 3)}**`).join(' | ')} | ${target} |`
        })
const outboundTable = (outbound?.results ?? []).map(
  (r) =>
    `| ${r.name.replace('outbound: ', '')} | ${fixed(r.baselineCpuUs, 1)} µs | ${fixed(r.candidateCpuUs, 1)} µs | **${fixed(r.cpuRatio, 3)}** | ${Math.round(r.baselineRate)} / ${Math.round(r.candidateRate)} (${fixed(r.rateRatio, 3)}) |`,
)
const soakTable = soak.map(
  (r) =>
    `| ${r.adapter} | ${r.requests.toLocaleString('en')} | ${r.seconds} s | ${r.heapAfter10kMB} MB | ${r.heapAtEndMB} MB | ${r.growthMB >= 0 ? '+' : ''}${r.growthMB} MB | ${r.maxListenersWarnings} | ${r.inflightAtEnd} | ${r.lingeringAtEnd} |`,
)

// The reference rows, read into a sentence: what tether's figures are to be read against.
const ratioOf = (name) => httpResults.results.find((r) => r.name === name)?.cpuRatio
const floors = [
  ['express', 'a no-op middleware'],
  ['fastify', 'a no-op onRequest hook'],
].map(([framework, noop]) => ({
  framework,
  noop: ratioOf(`reference: ${framework} bare vs ${noop}`),
  floor: ratioOf(`reference: ${framework} bare vs the contract's floor`),
  tether: ratioOf(`${framework}: bare vs tether`),
}))
const floorBullet = floors.every((f) => f.noop !== undefined && f.floor !== undefined && f.tether !== undefined)
  ? `- The least any integration of this contract does per request is one AsyncLocalStorage entry for
  the handler and one \`close\` listener on the response (the "contract's floor" rows). In this run
  that floor measured ${floors.map((f) => `${fixed(f.floor, 3)} of bare ${f.framework}`).join(' and ')} (a
  middleware or hook that does nothing: ${floors.map((f) => fixed(f.noop, 3)).join(' and ')}); tether, with its
  deadline, timer, request record and registry entry, ${floors.map((f) => fixed(f.tether, 3)).join(' and ')}.
`
  : ''
// The same for a fan-out: Promise.all in a bare app against the least the fan-out contract allows.
const fanOutFloors = ['express', 'fastify'].map((framework) => ({
  framework,
  floor: ratioOf(`reference: ${framework} fan-out, Promise.all vs the contract's floor`),
  beyond: ratioOf(`reference: ${framework} fan-out, the contract's floor vs all()`),
  tether: ratioOf(`${framework} fan-out: Promise.all vs all()`),
}))
// Whether even the floor misses 0.95 on every line measured: then no implementation meets it there.
const fanOutFloorsByLine = [httpResults, ...httpLines].flatMap((line) =>
  line.results.filter((r) => r.name.includes("fan-out, Promise.all vs the contract's floor")).map((r) => r.cpuRatio),
)
const fanOutFloorText = fanOutFloors.every(
  (f) => f.floor !== undefined && f.beyond !== undefined && f.tether !== undefined,
)
  ? `
  The "fan-out, Promise.all vs the contract's floor" rows measure it, with the request's floor: on
  Node ${httpResults.node}, ${fanOutFloors.map((f) => `${fixed(f.floor, 3)} of bare ${f.framework}`).join(' and ')} with \`Promise.all\`${
    fanOutFloorsByLine.length === 2 * (1 + httpLines.length) && fanOutFloorsByLine.every((ratio) => ratio < 0.95)
      ? `, and below 0.95 on every line measured:
  no implementation of the contract reaches 0.95 on these routes`
      : ''
  }.
  tether's middleware and \`all()\` measured ${fanOutFloors.map((f) => fixed(f.beyond, 3)).join(' and ')} of that
  floor (${fanOutFloors.map((f) => fixed(f.tether, 3)).join(' and ')} of bare).`
  : ''

const markdown = `# Benchmarks

![tether's cost relative to each baseline](bench/chart.svg)

Measured on ${when} with Node ${httpResults.node} on ${cpu}, by:

\`\`\`sh
${command}
\`\`\`

How: every figure compares two contenders side by side in one run, alternating (A B, B A, ...),
and reports the **median of per-round ratios**, which cancels most of the drift of a shared
machine (identical servers differ by ±10% in throughput between runs here). For HTTP, the two
contenders of each pair live in one server process pinned to one core (${httpResults.pinned ? 'taskset' : 'no taskset: not pinned'}), each pair in ${httpResults.processes ?? 1} fresh processes in turn with the contenders built in alternating order, the load generator
(${httpResults.generator}, ${httpResults.connections} connections) runs on the other core, and what is compared is the server's own CPU time per
request (\`process.cpuUsage()\` over each ${httpResults.seconds} s window, ${httpResults.rounds} rounds), with throughput alongside. Every tether contender has a
${10_000 / 1000} s deadline armed on every request. The calibration row compares two identical bare servers.

${overload === undefined ? '' : overloadSection(overload, when)}## HTTP overhead: server CPU per request

Ratio = baseline CPU per request ÷ candidate CPU per request: **≥ 1 means the candidate costs no
more than the baseline**.

| comparison | route | baseline CPU/req | candidate CPU/req | ratio | target | req/s baseline / candidate (ratio) |
| --- | --- | --- | --- | --- | --- | --- |
${httpTable.join('\n')}
${
  httpLinesTable.length === 0
    ? ''
    : `
### On each maintained Node line

The same pairs, same method, run on each line (${httpLines[0].rounds} rounds on the lines other than ${httpResults.node}):

| comparison | route | ${httpByLine.map((line) => `Node ${line.node}`).join(' | ')} | target, on every line |
| --- | --- | ${httpByLine.map(() => '---').join(' | ')} | --- |
${httpLinesTable.join('\n')}
`
}${
  hotPath === undefined
    ? ''
    : `
### What tether adds per request, counted

Counted rather than timed (\`bench/hot-path.mjs\`; \`test/hot-path.test.ts\` fails in CI when a change
goes over these): each bare app and the same app with tether in one process, one keep-alive client,
500 requests; the difference per request.

| pair | listeners | async resources | AbortControllers | timer calls |
| --- | --- | --- | --- | --- |
${Object.entries(hotPath)
  .map(([name, row]) => `| ${name} | ${row.listeners} | ${row.async} | ${row.controllers} | ${row.timers} |`)
  .join('\n')}
`
}
## Primitives

Ratio = candidate time ÷ baseline time: **lower is faster**. Medians of ${micro.rounds} interleaved rounds.

| comparison | candidate | baseline | ratio | target |
| --- | --- | --- | --- | --- |
${microTable.join('\n')}

${
  lines.length < 2
    ? ''
    : `### On each maintained Node line

The same ratios on each line (medians of ${microLines?.[0]?.rounds ?? ''} rounds on the lines other than ${micro.node}), since
the cost of promises and AbortSignals differs between them:

| comparison | ${lines.map((line) => `Node ${line.node}`).join(' | ')} |
| --- | ${lines.map(() => '---').join(' | ')} |
${linesTable.join('\n')}

`
}${threadsSection(workers, events)}${
  outboundTable.length === 0
    ? ''
    : `## Outbound calls: caller CPU per call

The caller's own CPU per call (\`process.cpuUsage()\` over each ${outbound.seconds} s window, ${outbound.rounds} rounds,
${outbound.concurrency} calls in flight, every body read), the caller on one core and the same downstream (a bare
\`node:http\` server) on the other. Ratio = baseline ÷ scopedFetch: **≥ 1 means scopedFetch costs no
more**. scopedFetch runs inside a scope with a deadline, so each call pays for its budget header,
its budget-capped timeouts and its per-origin queue; "undici fetch" is the same undici version
over an untuned \`Agent\`, so that row is tether's own layer alone.

| comparison | baseline CPU/call | scopedFetch CPU/call | ratio | calls/s baseline / scopedFetch (ratio) |
| --- | --- | --- | --- | --- |
${outboundTable.join('\n')}
`
}
${
  soak.length === 0
    ? ''
    : `## Memory soak

${soak[0].requests.toLocaleString('en')} requests per adapter: a third past their deadline (${'10'} ms; the handler ignores the deadline's answer and
writes late), a fifth hung up by the client mid-request, the rest finishing at once (half of them
fanning out with \`all()\`), 128 at a time. Heap used after a full GC (\`--expose-gc\`), in the
server process.

| adapter | requests | time | heap after 10k | heap at the end | growth | MaxListenersExceededWarning | in flight at the end | lingering at the end |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
${soakTable.join('\n')}
`
}
${proxiesText}${profileText}${inProcessText}${versusText}## Reading the results

- Over HTTP/2, tether reads nothing per stream beyond what it reads per HTTP/1.1 request: the
  sessions' own lists of open streams are walked only by \`shutdown()\` and the hardening checker.
  (A \`stream\` listener with a \`close\` listener per stream cost about a fifth of a hello-world
  request's CPU.)

- A deadline costs the same whether it fires or not: tether arms one shared timer per distinct
  timeout rather than a timer per request, and creates a request's \`AbortController\` only when
  something asks for its signal.
${floorBullet}- A finished fan-out always aborts its signal, so work a task left behind holding it (listening,
  derived with \`AbortSignal.any\`, or polling \`aborted\`) is told to stop. Node builds a trusted
  \`Event\` registered in a WeakSet for every \`abort()\`, listeners or not: about 0.4 µs in a tight
  loop, more under load with the garbage it leaves. With the group's \`AbortController\` and its
  AsyncLocalStorage entry, that is the floor of a fan-out's cost under this contract.${fanOutFloorText}
  The reason a finished fan-out or
  response aborts with is a \`CanceledError\` made without V8's \`Error\` construction (about 10 ns
  instead of 0.3 µs; it differs from \`new CanceledError()\` only for \`util.types.isNativeError()\`).
- Tracking is not free for pool tasks: the tracking row is about 60 ns per task, most of it the one
  \`Date.now()\` that dates the task for the lingering report (about 45 ns on this virtual
  machine). A fan-out pays that once for all its tasks and registers nothing unless it outlives
  its request; a pool task pays it per task, which is noise beside the I/O a pool usually guards.
`
writeFileSync(reportFile, markdown)
console.log(markdown)
