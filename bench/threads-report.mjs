// The "Worker threads and lifecycle events" section of BENCHMARKS.md, from the JSON summaries
// bench/worker-pool.mjs and bench/diagnostics.mjs print with --json. Used by bench/run.mjs; run
// alone, it prints the section for saved summaries:
//
//   node bench/worker-pool.mjs --json > workers.json && node bench/diagnostics.mjs --json > events.json
//   node bench/threads-report.mjs workers.json events.json
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const us = (ns) => `${(ns / 1000).toFixed(1)} µs`

function workersPart(workers) {
  const [trip] = workers.results
  const rows = workers.results.map(
    (r) =>
      `| ${r.name} | ${r.candidate} ${us(r.candidateNs)} / ${us(r.candidateCpuNs)} | ${r.baseline} ${us(r.baselineNs)} / ${us(r.baselineCpuNs)} | **${r.ratio.toFixed(2)}** / ${r.cpuRatio.toFixed(2)} |`,
  )
  return `A small task (SHA-256 of 1 KB) awaited ${workers.iterations} times in a row on one thread, Node ${workers.node},
medians of ${workers.rounds} interleaved rounds (\`node bench/worker-pool.mjs\`): the time a caller waits per task, and the
process's CPU per task (both threads). Ratio = candidate ÷ baseline. A round trip to a thread costs about
**${us(trip.candidateNs - trip.baselineNs)}** of waiting and **${us(trip.candidateCpuNs - trip.baselineCpuNs)}** of CPU here: move work of a millisecond or more
to a worker pool, not work of a few microseconds. A thread's wake-up depends on the scheduler, so these
figures vary with the machine's load more than the others.

| comparison | candidate: wait / CPU | baseline: wait / CPU | ratio: wait / CPU |
| --- | --- | --- | --- |
${rows.join('\n')}
`
}

function eventsPart(events) {
  const rows = events.results.map(
    (r) =>
      `| ${r.name} | ${r.candidate} ${r.candidateNs.toFixed(0)} ns | ${r.baseline} ${r.baselineNs.toFixed(0)} ns | **${r.ratio.toFixed(3)}** |`,
  )
  return `The core's request lifecycle (attach with a 10 s deadline, run in the scope, finish, close: what both
adapters do per request, without framework or socket), CPU time per request, Node ${events.node}, medians of
${events.rounds} interleaved rounds (\`node bench/diagnostics.mjs\`; "before" is @tether/core built from \`${events.before}\`,
the last commit without the channels, loaded in the same process). With no subscriber an event site reads
\`hasSubscribers\` and builds nothing.

| comparison | candidate | baseline | ratio |
| --- | --- | --- | --- |
${rows.join('\n')}
`
}

/** The markdown section for the two summaries (either may be missing). */
export function threadsSection(workers, events) {
  if (workers === undefined && events === undefined) return ''
  const parts = ['## Worker threads and lifecycle events\n']
  if (workers !== undefined) parts.push(workersPart(workers))
  if (events !== undefined) parts.push(eventsPart(events))
  return `${parts.join('\n')}\n`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [workersFile, eventsFile] = process.argv.slice(2)
  const read = (file) => (file === undefined ? undefined : JSON.parse(readFileSync(file, 'utf8')))
  process.stdout.write(threadsSection(read(workersFile), read(eventsFile)))
}
