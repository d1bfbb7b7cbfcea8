// The "Without sockets" section of BENCHMARKS.md, from the JSON bench/in-process.mjs prints with
// --json, one per Node line. Used by bench/run.mjs (`pnpm bench -- --in-process` measures and
// splices it in; every full run or --report-only keeps the last one measured).

/** What each request allocates, bare → with tether, per line (`bench/in-process.mjs --bytes`). */
function bytesPart(lines) {
  if (lines.some(({ bytes }) => bytes === undefined)) return ''
  const rows = Object.keys(lines[0].bytes).map((name) => {
    const cells = lines.map(({ bytes }) => {
      const { baseline, candidate, added } = bytes[name]
      return `${baseline.toLocaleString('en')} → ${candidate.toLocaleString('en')} (**${added >= 0 ? '+' : ''}${added.toLocaleString('en')}**)`
    })
    return `| ${name} | ${cells.join(' | ')} |`
  })
  return `
Heap bytes each request allocates, counted rather than timed (\`node bench/in-process.mjs --bytes\`:
the same requests, V8 on one thread, each app warmed up and served through a turn of Node's cached
Date header before anything is counted, then the growth of its young generation over windows no
scavenge interrupted; runs agree to within a dozen bytes).
\`test/hot-path.test.ts\` holds tether's share to a budget per Node line, so an object or closure
added per request fails in CI.

| pair | ${lines.map(({ node }) => `Node ${node}`).join(' | ')} |
| --- | ${lines.map(() => '---').join(' | ')} |
${rows.join('\n')}
`
}

/** The section, for the results of one in-process run per Node line. */
export function inProcessSection(lines) {
  const [first] = lines
  const rows = first.results.map((pair, index) => {
    const cells = lines.map(({ results }) => {
      const r = results[index]
      const added = r.candidateMicros - r.baselineMicros
      return `${r.baselineMicros.toFixed(2)} → ${r.candidateMicros.toFixed(2)} µs (${added >= 0 ? '+' : ''}${added.toFixed(2)}), **${r.ratio.toFixed(3)}**`
    })
    return `| ${pair.name} | \`${pair.path}\` | ${cells.join(' | ')} |`
  })
  return `## Without sockets: what tether's own code costs

\`pnpm bench -- --in-process\` (\`bench/in-process.mjs\`, ${first.when}): the HTTP pairs above with no socket, parser or
load generator. Each request is a real \`IncomingMessage\` and \`ServerResponse\` handed straight to the
app, 50 per turn of the event loop; each pair in a fresh process, its contenders timed in alternating
windows of ${first.window.toLocaleString('en')} requests, medians of ${first.rounds} rounds. What remains is the frameworks' JavaScript
and tether's, so a tenth of a microsecond shows (over sockets, one run differs from the next by more).
Cells: baseline → candidate per request (the difference), and the ratio baseline ÷ candidate. The
ratios are not the HTTP ones: without the kernel's share, a request is a fraction of its cost over
a socket, so the same added microseconds weigh more (a Fastify hello-world is about 1.5 µs here).
On Node 22, Express 5 itself is several times slower than on 24: it re-parents every \`req\` and
\`res\` with \`Object.setPrototypeOf\`, and re-parenting the two, then setting a few properties on
them, costs about 11 µs more a request than without on Node 22's V8, about 2 µs on 24's (bare Node
objects, one loop). Node 22's V8 builds a new hidden class for every property added to such an
object, about 1.5 µs each, so tether adds none to them there (\`req.scope\` is an accessor, the
request's record goes into a WeakMap); every other property it reads or sets on them is still
dearer there (a read about 0.1 µs, \`res.on()\` about 0.5 µs, against a few nanoseconds on 24).

| comparison | route | ${lines.map(({ node }) => `Node ${node}`).join(' | ')} |
| --- | --- | ${lines.map(() => '---').join(' | ')} |
${rows.join('\n')}
${bytesPart(lines)}
`
}
