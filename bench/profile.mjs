// Where a request's CPU goes, bare vs tether: each contender runs alone in a server process started
// with --cpu-prof, under the same keep-alive load for a few seconds; the profile's samples are then
// summed by function (self time). Prints the top functions of each, and the share of samples in
// tether's own code (of all samples, and of the busy ones), so anyone can see where tether's
// microseconds go. The load is wrk's on the other core when it is installed, else this process's.
//
//   pnpm bench -- --profile                      (or: node bench/profile.mjs)
//   node bench/profile.mjs --seconds 8 --top 20 'express + tether' 'express bare'
//   node bench/profile.mjs --path /fanout 'express + tether'   (the fan-out route: all() of three tasks)
//
// Uses the built packages (pnpm build); the .cpuprofile files are kept in bench/results/profiles/
// (open them in Chrome's DevTools or speedscope).
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { generatorFrom, startServer, wrkWindow } from './lib.mjs'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '5' },
    top: { type: 'string', default: '12' },
    connections: { type: 'string', default: '32' },
    path: { type: 'string', default: '/' },
    json: { type: 'boolean' },
  },
})
const SECONDS = Number(values.seconds)
const TOP = Number(values.top)
const CONNECTIONS = Number(values.connections)
const PATH = values.path
const contenders =
  positionals.length > 0 ? positionals : ['express bare', 'express + tether', 'fastify bare', 'fastify + tether']
const serverScript = fileURLToPath(new URL('http-server.mjs', import.meta.url))
const profiles = fileURLToPath(new URL('results/profiles/', import.meta.url))

// The HTTP pairs' generator, on the other core: a server is then as busy as it can be, as in
// those pairs. Without wrk, this process's own client keeps it less busy; the shares of busy time
// below compare either way.
const useWrk = generatorFrom('wrk', 'wrk') !== undefined

/** Keep-alive load: CONNECTIONS requests in flight, for `ms`; resolves with the requests served. */
async function load(port, ms) {
  if (useWrk) return (await wrkWindow(`http://127.0.0.1:${port}${PATH}`, CONNECTIONS, Math.ceil(ms / 1000))).requests
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS })
  const until = Date.now() + ms
  let done = 0
  const one = () =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: PATH, agent }, (res) => {
          res.resume()
          res.on('end', resolve)
        })
        .on('error', reject)
    })
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (Date.now() < until) {
        await one()
        done++
      }
    }),
  )
  agent.destroy()
  return done
}

/** Self samples per function of a V8 .cpuprofile, as shares of all samples. */
function selfTime(profile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const counts = new Map()
  for (const id of profile.samples) {
    const { callFrame } = byId.get(id)
    const where = callFrame.url
      ? `${callFrame.url.replace(/^.*node_modules\//, '').replace(/^.*\/packages\//, 'packages/')}:${callFrame.lineNumber + 1}`
      : ''
    const key = `${callFrame.functionName || '(anonymous)'} ${where}`.trim()
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  const total = profile.samples.length
  const ranked = [...counts].sort((a, b) => b[1] - a[1]).map(([name, count]) => ({ name, share: count / total }))
  const own = ranked.filter(({ name }) => /packages\/(core|express|fastify)\/|@tether\//.test(name))
  const tether = own.reduce((sum, { share }) => sum + share, 0)
  // Busy samples: those of a running process, not an idle one waiting for the next request.
  const busy = 1 - (ranked.find(({ name }) => name === '(idle)')?.share ?? 0)
  return { total, ranked, tether, own, busy }
}

const results = {}
for (const name of contenders) {
  const dir = `${profiles}${name.replace(/[^a-z0-9]+/gi, '-')}/`
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const server = startServer(serverScript, [name], ['--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${dir}`])
  const { ports } = await server.ask()
  await load(ports[name], 1_000) // warm-up, profiled too but dwarfed by the measured window
  const requests = await load(ports[name], SECONDS * 1_000)
  await new Promise((resolve) => {
    server.child.once('exit', resolve)
    server.stop()
  })
  const file = readdirSync(dir).find((entry) => entry.endsWith('.cpuprofile'))
  const { total, ranked, tether, own, busy } = selfTime(JSON.parse(readFileSync(`${dir}${file}`, 'utf8')))
  results[name] = {
    path: PATH,
    generator: useWrk ? 'wrk on the other core' : 'a Node client in the load process',
    requests,
    samples: total,
    busyShare: busy,
    tetherShare: tether,
    top: ranked.slice(0, TOP),
    tetherTop: own.slice(0, TOP),
  }
}

if (values.json) {
  process.stdout.write(`${JSON.stringify(results)}\n`)
} else {
  for (const [name, result] of Object.entries(results)) {
    console.log(
      `\n${name} ${result.path}: ${result.requests} requests, ${result.samples} samples (${(result.busyShare * 100).toFixed(1)}% busy), tether's own code ${(result.tetherShare * 100).toFixed(1)}% of them, ${((result.tetherShare / result.busyShare) * 100).toFixed(1)}% of the busy ones`,
    )
    for (const { name: fn, share } of result.top) console.log(`  ${(share * 100).toFixed(1).padStart(5)}%  ${fn}`)
    console.log("  tether's own functions:")
    for (const { name: fn, share } of result.tetherTop) console.log(`  ${(share * 100).toFixed(2).padStart(5)}%  ${fn}`)
  }
}
