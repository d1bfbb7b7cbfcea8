// The goodput-under-overload section of BENCHMARKS.md and its chart (bench/overload.svg), from the
// JSON summary bench/overload.mjs prints with --json. Used by bench/run.mjs; run alone, it prints
// the section for a saved summary:
//
//   node bench/overload.mjs --json > overload.json && node bench/overload-report.mjs overload.json
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { barChart } from './chart.mjs'

/** The goodput the pool variant must hold at every factor. */
export const POOL_GOAL = 0.9

const fixed = (value, digits = 2) => (value === undefined ? '' : value.toFixed(digits))
const verdict = (ok) => (ok ? 'meets' : '**misses**')

/** Writes bench/overload.svg and returns the markdown section for `overload` (measured on `when`). */
export function overloadSection(overload, when) {
  const overloadVariants = [...new Set(overload.results.map((r) => r.variant))]
  const goodputOf = (variant, factor) =>
    overload.results.find((r) => r.variant === variant && r.factor === factor)?.goodput
  const variantLabel = {
    naive: 'connect-timeout, handler checks `req.timedout`',
    tether: '`tether({ timeout })`, work listens to the signal',
    'tether + pool': 'the same plus `createPool({ concurrency: 1 })` around the work',
    'tether + handler pool': '`tether({ timeout })`, the handler behind `createPool({ concurrency: 4 })`',
  }
  const overloadTable = overloadVariants.map(
    (variant) =>
      `| ${variantLabel[variant] ?? variant} | ${overload.factors.map((f) => `${variant === 'tether + pool' ? '**' : ''}${fixed(goodputOf(variant, f))}${variant === 'tether + pool' ? '**' : ''}`).join(' | ')} |`,
  )
  const overloadBreakdown = overload.results.map(
    (r) =>
      `| ${r.variant} | ${r.factor}x | ${r.offered} | ${r.good} | ${r.late} | ${r.shed} | ${r.expired} | ${r.gaveUp} | ${r.goodputs.map((g) => fixed(g)).join(', ')} |`,
  )
  writeFileSync(
    fileURLToPath(new URL('./overload.svg', import.meta.url)),
    barChart({
      title: 'tether: goodput under overload (share of capacity answered 200 within the budget)',
      subtitle: `Express, 5 ms of CPU per request, 200 ms budget, open-loop load at 2x and 4x capacity. Node ${overload.node}, ${when}.`,
      rows: overload.results.map((r) => ({
        label: `${r.variant} at ${r.factor}x`,
        value: r.goodput,
        target: r.variant === 'tether + pool' ? POOL_GOAL : undefined,
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

| variant (what the user writes) | ${overload.factors.map((f) => `${f}x`).join(' | ')} |
| --- | ${overload.factors.map(() => '---').join(' | ')} |
${overloadTable.join('\n')}

Target: the pool variant ≥ ${POOL_GOAL} at 2x and 4x, without tuning (no \`maxQueue\`): ${verdict(overload.factors.every((f) => (goodputOf('tether + pool', f) ?? 0) >= POOL_GOAL))}.

Every request of every round (late: 200 after the budget; shed: 503 with \`Retry-After\` at once;
expired: the deadline's answer, connect-timeout's 503 or tether's 504; gave up: no answer within ${overload.giveUpMs} ms):

| variant | load | sent | good | late | shed | expired | gave up | goodput per round |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
${overloadBreakdown.join('\n')}

`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const overload = JSON.parse(readFileSync(process.argv[2], 'utf8'))
  console.log(overloadSection(overload, new Date().toISOString().slice(0, 10)))
}
