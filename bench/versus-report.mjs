// The "Against an earlier commit" section of BENCHMARKS.md, from the JSON bench/versus.mjs prints
// with --json. Used by bench/run.mjs (`pnpm bench -- --versus REV` measures and splices it in;
// every full run or --report-only keeps the last one measured).

/** A build's figure at REV → here, and here ÷ at REV (> 1: this checkout costs less). */
const cell = (r) => (r === undefined ? '' : `${r.atRef.toFixed(3)} → ${r.here.toFixed(3)} (**${r.change.toFixed(3)}**)`)

/** The section, for the runs without sockets (one per Node line) and the run over sockets. */
export function versusSection({ when, inProcess, sockets }) {
  const { ref, sha } = sockets
  const rows = sockets.results.map((pair) => {
    const lines = inProcess.map((line) => cell(line.results.find((r) => r.name === pair.name)))
    return `| ${pair.name} | \`${pair.path}\` | ${lines.join(' | ')} | ${cell(pair)} |`
  })
  return `## Against an earlier commit

\`pnpm bench -- --versus ${ref}\` (${when}; \`bench/versus.mjs\`): this checkout against
\`${ref}\` (${sha.slice(0, 12)}) on the pairs that have targets, each figure the pair's ratio as
in the tables above (baseline ÷ with tether), the build of \`${ref}\` → this checkout's, and in
bold this checkout's ÷ \`${ref}\`'s (above 1: this checkout costs less). Each run is a process of
its own holding one build (a process that loads two copies of the package runs the second one's
request path measurably slower), the two builds in alternation: ${inProcess[0].runs} runs each
without sockets (one process of 40 rounds a run), ${sockets.runs} over sockets (one server process
of 4 rounds a run).

| pair | path | ${inProcess.map(({ node }) => `without sockets, Node ${node}`).join(' | ')} | over sockets, Node ${sockets.node} |
| --- | --- | ${inProcess.map(() => '---').join(' | ')} | --- |
${rows.join('\n')}

`
}
