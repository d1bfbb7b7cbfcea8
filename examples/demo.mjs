// The demo: each example app is started twice, once naive and once with tether, and hit with the
// same short burst of requests whose deadline is far shorter than the downstream calls take.
// It prints, side by side, what the client saw and what the server left behind. Loopback only;
// exits by itself in well under a minute.
//
//   pnpm demo            (builds the packages, then runs this file)
import http from 'node:http'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { inspect } from '@tether/core'
import { startDownstream } from './downstream.mjs'
import { createExpressApp } from './express-app.mjs'
import { createFastifyApp } from './fastify-app.mjs'

const BURST = 20
const DEADLINE_MS = 100
const DOWNSTREAM_MS = 3_000
const ON_TIME_MS = DEADLINE_MS + 250

/** Sends one request and reports its status and how long the answer took. */
function request(url) {
  const started = Date.now()
  return new Promise((resolve) => {
    http
      .get(url, (res) => {
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode, ms: Date.now() - started }))
      })
      .on('error', () => resolve({ status: 0, ms: Date.now() - started }))
  })
}

async function listen(app, framework) {
  if (framework === 'fastify') {
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { url: `http://127.0.0.1:${app.server.address().port}`, close: () => app.close() }
  }
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}

// What an operator would find in the logs: Express prints errors that reach its final handler
// with console.error, Fastify writes them to its logger. Both are counted here, not printed.
let alreadySentLogged = 0
const countAlreadySent = (text) => {
  alreadySentLogged += (String(text).match(/ERR_HTTP_HEADERS_SENT|FST_ERR_REP_ALREADY_SENT/g) ?? []).length
}
const logStream = new Writable({
  write(chunk, _encoding, callback) {
    countAlreadySent(chunk)
    callback()
  },
})

async function run(framework, tethered, downstream) {
  const caller = `${framework}-${tethered ? 'tether' : 'naive'}`
  const options = { tethered, deadlineMs: DEADLINE_MS, downstreamUrl: downstream.url, caller }
  const app = framework === 'express' ? createExpressApp(options) : await createFastifyApp({ ...options, logStream })
  const server = await listen(app, framework)
  const lateWritesBefore = inspect().counters.lateWrites
  const alreadySentBefore = alreadySentLogged

  const responses = await Promise.all(Array.from({ length: BURST }, () => request(`${server.url}/profile`)))
  await sleep(1_000)
  const stillRunning = downstream.inFlight(caller)
  // Let the naive version's late writes happen before counting them.
  await sleep(DOWNSTREAM_MS - 1_000 + 300)

  const row = {
    app: `${framework}, ${tethered ? 'with tether' : 'naive'}`,
    onTime: responses.filter((r) => r.status === 503 && r.ms <= ON_TIME_MS).length,
    stillRunning,
    alreadySent: alreadySentLogged - alreadySentBefore,
    swallowed: tethered ? inspect().counters.lateWrites - lateWritesBefore : 0,
  }
  await server.close()
  return row
}

function table(rows) {
  const head = [
    'app',
    `answered 503 on time (of ${BURST})`,
    `downstream calls still running 1 s after`,
    'already-sent errors logged',
    'late writes swallowed',
  ]
  const cells = rows.map((r) => [r.app, r.onTime, `${r.stillRunning} of ${BURST * 2}`, r.alreadySent, r.swallowed])
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => String(c[i]).length)))
  const line = (values) => `| ${values.map((v, i) => String(v).padEnd(widths[i])).join(' | ')} |`
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n')
}

const error = console.error
console.error = (...args) => countAlreadySent(args.map((arg) => arg?.stack ?? arg).join(' '))

console.log(
  `tether demo (Node ${process.version}): ${BURST} concurrent requests per app, deadline ${DEADLINE_MS} ms,\n` +
    `each request fans out to two downstream calls of ${DOWNSTREAM_MS} ms.\n`,
)
const downstream = await startDownstream({ delayMs: DOWNSTREAM_MS })
const rows = []
for (const framework of ['express', 'fastify']) {
  for (const tethered of [false, true]) rows.push(await run(framework, tethered, downstream))
}
await downstream.close()
console.error = error

console.log(table(rows))
console.log(`
Both versions answer 503 on time. The naive ones leave every downstream call running after the
client was answered, and their handlers then write to responses already sent. With tether, the
deadline aborts the fan-out (the downstream sees its connections close), and late writes are
swallowed and counted.`)

// The demo's claims, checked: CI runs it, and a regression must not print a wrong table quietly.
const broken = rows.filter((r) =>
  r.app.includes('tether')
    ? r.onTime !== BURST || r.stillRunning !== 0 || r.alreadySent !== 0
    : r.onTime !== BURST || r.stillRunning === 0,
)
if (broken.length > 0) {
  console.error(`\nThe demo did not show what it should for: ${broken.map((r) => r.app).join(', ')}`)
  process.exitCode = 1
}
