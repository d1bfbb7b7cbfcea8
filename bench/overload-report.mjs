// The goodput-under-overload section of BENCHMARKS.md and its chart (bench/overload.svg), from the
// JSON summary bench/overload.mjs prints with --json. Used by bench/run.mjs; run alone, it prints
// the section for a saved summary:
//
//   node bench/overload.mjs --json > overload.json && node bench/overload-report.mjs overload.json
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { barChart } from './chart.mjs'

/** The goodput the pool variant, and `concurrency: 'auto'`, must hold at every overload factor. */
export const POOL_GOAL = 0.9
// The variants held to the goal: the pool around the work, and the request path's own limit.
const GOALS = ['tether + pool', 'tether auto']

const fixed = (value, digits = 2) => (value === undefined || Number.isNaN(value) ? '' : value.toFixed(digits))
const verdict = (ok) => (ok ? 'meets' : '**misses**')

const variantLabel = {
  naive: 'connect-timeout, handler checks `req.timedout`',
  tether: '`tether({ timeout })`, work listens to the signal',
  'tether + pool': 'the same plus `createPool({ concurrency: 1 })` around the work',
  'tether + handler pool': '`tether({ timeout })`, the handler behind `createPool({ concurrency: 4 })`',
  'tether auto': "`tether({ timeout, concurrency: 'auto' })`, work listens to the signal, no pool",
  'tether concurrency 4': '`tether({ timeout, concurrency: 4 })`, work listens to the signal, no pool',
}

/** The burst's 250 ms buckets, two by two. */
function halfSeconds(buckets, bucketMs) {
  const per = Math.max(1, Math.round(500 / bucketMs))
  const rows = []
  for (let i = 0; i < buckets.length; i += per) {
    const group = buckets.slice(i, i + per)
    const sum = (key) => group.reduce((total, b) => total + b[key], 0)
    const queued = group.map((b) => b.queued).filter((q) => q !== null)
    rows.push({
      from: group[0].from,
      offered: sum('offered'),
      good: sum('good'),
      shed: sum('shed'),
      gaveUp: sum('gaveUp'),
      goodput: sum('goodput') / group.length,
      limit: group.at(-1).limit,
      queued: queued.length === 0 ? null : Math.max(...queued),
    })
  }
  return rows
}

/** The burst table: one row per half second, one column group per variant. */
function burstSection(overload) {
  const bursts = overload.bursts ?? []
  if (bursts.length === 0) return ''
  const variants = [...new Set(bursts.map((b) => b.variant))]
  // The first run of each variant (later rounds, if any, are summarised below the table).
  const first = variants.map((variant) => bursts.find((b) => b.variant === variant))
  const tables = first.map((b) => halfSeconds(b.buckets, overload.bucketMs))
  const phases = []
  let at = 0
  for (const { factor, ms } of overload.burst) {
    phases.push({ from: at, to: at + ms, factor })
    at += ms
  }
  const loadAt = (from) => phases.find((p) => from >= p.from && from < p.to)?.factor
  const limited = (variant) => first.find((b) => b.variant === variant)?.limitBefore !== null
  const header = variants
    .map((variant) => (limited(variant) ? `${variant}: goodput | limit | queued` : `${variant}: goodput`))
    .join(' | ')
  const columns = variants.map((variant) => (limited(variant) ? 3 : 1)).reduce((a, b) => a + b, 0)
  const rows = tables[0].map((_, i) => {
    const cells = tables.map((table, v) => {
      const row = table[i]
      const goodput = `${fixed(row.goodput)} (${row.good}/${row.offered})`
      return limited(variants[v]) ? `${goodput} | ${row.limit ?? ''} | ${row.queued ?? ''}` : goodput
    })
    return `| ${(tables[0][i].from / 1000).toFixed(1)} s | ${loadAt(tables[0][i].from)}x | ${cells.join(' | ')} |`
  })
  const recovery = bursts
    .map(
      (b) =>
        `${b.variant}${bursts.filter((x) => x.variant === b.variant).length > 1 ? ` (run ${b.round + 1})` : ''}: ${b.recoveredAfterMs === null ? 'not within the run' : `${b.recoveredAfterMs} ms`}${b.limitBefore === null ? '' : `, limit ${b.limitBefore} before the burst, ${b.limitMin} at its lowest, ${b.limitEnd} at the end`}`,
    )
    .join('; ')
  return `### A burst: 10x for 2 s, then 0.5x

The same server and work, offered ${overload.burst.map(({ factor, ms }) => `${factor}x for ${ms / 1000} s`).join(', then ')}, the server
tracing its limit every 50 ms. Per half second, by send time: goodput (answers 200 within the budget,
as a share of capacity; at 0.5x everything offered is 0.50) with good/sent, the limit at the end of
the half second, and the most requests waiting for a slot in it.

| time | load | ${header} |
| --- | --- | ${Array(columns).fill('---').join(' | ')} |
${rows.join('\n')}

All offered answered in time again (every later 250 ms bucket ≥ 90% good), after the burst:
${recovery}.

`
}

/** Writes bench/overload.svg and returns the markdown section for `overload` (measured on `when`). */
export function overloadSection(overload, when) {
  const overloadVariants = [...new Set(overload.results.map((r) => r.variant))]
  const factors = overload.factors.filter((f) => f > 1)
  const light = overload.factors.filter((f) => f < 1)
  const resultOf = (variant, factor) => overload.results.find((r) => r.variant === variant && r.factor === factor)
  const goodputOf = (variant, factor) => resultOf(variant, factor)?.goodput
  const bold = (variant, text) => (GOALS.includes(variant) ? `**${text}**` : text)
  const overloadTable = overloadVariants.map(
    (variant) =>
      `| ${variantLabel[variant] ?? variant} | ${factors.map((f) => bold(variant, fixed(goodputOf(variant, f)))).join(' | ')} |`,
  )
  const lightTable = light.flatMap((factor) =>
    overloadVariants.map((variant) => {
      const r = resultOf(variant, factor)
      return `| ${variantLabel[variant] ?? variant} | ${factor}x | ${fixed(r?.goodput)} | ${fixed(r?.cpuPerRequestUs, 0)} µs | ${fixed(r?.p50, 1)} ms | ${fixed(r?.p99, 1)} ms |`
    }),
  )
  const overloadBreakdown = overload.results.map(
    (r) =>
      `| ${r.variant} | ${r.factor}x | ${r.offered} | ${r.good} | ${r.late} | ${r.shed} | ${r.expired} | ${r.gaveUp} | ${r.goodputs.map((g) => fixed(g)).join(', ')} |`,
  )
  const goal = (variant) =>
    overloadVariants.includes(variant)
      ? `\`${variant}\` ${verdict(factors.every((f) => (goodputOf(variant, f) ?? 0) >= POOL_GOAL))}`
      : undefined
  writeFileSync(
    fileURLToPath(new URL('./overload.svg', import.meta.url)),
    barChart({
      title: 'tether: goodput under overload (share of capacity answered 200 within the budget)',
      subtitle: `Express, 5 ms of CPU per request, 200 ms budget, open-loop load at ${factors.join('x and ')}x capacity. Node ${overload.node}, ${when}.`,
      rows: overload.results
        .filter((r) => r.factor > 1)
        .map((r) => ({
          label: `${r.variant} at ${r.factor}x`,
          value: r.goodput,
          target: GOALS.includes(r.variant) ? POOL_GOAL : undefined,
          better: 'higher',
        })),
    }),
  )

  return `## Goodput under overload

![goodput under overload](bench/overload.svg)

What share of the machine's capacity still reaches callers in time when more is offered than the
server can serve. One Express server pinned to one core; each request does ${overload.workMs} ms of CPU work in
${overload.sliceMs} ms slices with an \`await\` between them; the caller's budget is ${overload.budgetMs} ms (sent in
\`x-request-timeout-ms\`, and the server's \`timeout\`); an open-loop client on the other core offers
k × the capacity measured just before each window and gives up at ${overload.giveUpMs} ms. Goodput = answers 200
received within ${overload.budgetMs} ms, per second, as a share of that capacity (median ${fixed(overload.capacity, 0)} req/s); median of
${overload.rounds} rounds of ${overload.seconds} s per cell, variants and factors interleaved, Node ${overload.node}. \`node bench/overload.mjs\` runs it alone.

| variant (what the user writes) | ${factors.map((f) => `${f}x`).join(' | ')} |
| --- | ${factors.map(() => '---').join(' | ')} |
${overloadTable.join('\n')}

Target: ≥ ${POOL_GOAL} at ${factors.join('x and ')}x without tuning (no \`maxQueue\`, no number to pick): ${[goal('tether + pool'), goal('tether auto')].filter(Boolean).join('; ')}.
${
  light.length === 0
    ? ''
    : `
Below capacity (${light.join('x, ')}x), what a variant costs when it has nothing to shed: goodput (everything offered is
${light.map((f) => fixed(f)).join(', ')}), the server's CPU time per request sent (\`process.cpuUsage()\` over the window), and the
latency of the answers (medians over rounds):

| variant | load | goodput | server CPU/request | p50 | p99 |
| --- | --- | --- | --- | --- | --- |
${lightTable.join('\n')}
`
}
Every request of every round (late: 200 after the budget; shed: 503 with \`Retry-After\` at once;
expired: the deadline's answer, connect-timeout's 503 or tether's 504; gave up: no answer within ${overload.giveUpMs} ms):

| variant | load | sent | good | late | shed | expired | gave up | goodput per round |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
${overloadBreakdown.join('\n')}

${burstSection(overload)}`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const overload = JSON.parse(readFileSync(process.argv[2], 'utf8'))
  console.log(overloadSection(overload, new Date().toISOString().slice(0, 10)))
}
