// The demo: each example app is started twice, once naive and once with tether, and hit with the
// same short burst of requests whose deadline is far shorter than the downstream calls take.
// It prints, side by side, what the client saw and what the server left behind. Loopback only;
// exits by itself in well under a minute.
//
//   pnpm demo            (builds the packages, then runs this file)
import { fork } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { startDownstream } from './downstream.mjs'

const BURST = 20
const DEADLINE_MS = 100
const DOWNSTREAM_MS = 3_000
const ON_TIME_MS = DEADLINE_MS + 250
// What each version answers a missed deadline with: connect-timeout's 503, which a proxy retries
// and counts against the server, and tether's default 504 ("ran out of time"), which it does not.
const TIMEOUT_STATUS = { naive: 503, tether: 504 }

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

/** Runs one app in its own process (demo-app.mjs) and returns its row of the table. */
async function run(framework, tethered, downstream) {
  const mode = tethered ? 'tether' : 'naive'
  const caller = `${framework}-${mode}`
  const child = fork(new URL('./demo-app.mjs', import.meta.url), [framework, mode, downstream.url, String(DEADLINE_MS)])
  try {
    const [{ url }] = await once(child, 'message')
    const responses = await Promise.all(Array.from({ length: BURST }, () => request(`${url}/profile`)))
    await sleep(1_000)
    const stillRunning = downstream.inFlight(caller)
    // Wait until this app's downstream calls are over (the naive ones run their full time), then
    // for its late writes and logs to land, before asking it what it counted.
    for (let waited = 0; downstream.inFlight(caller) > 0 && waited < DOWNSTREAM_MS + 10_000; waited += 50) {
      await sleep(50)
    }
    const report = once(child, 'message')
    child.send('report')
    const [{ alreadySent, lateWrites }] = await report
    return {
      app: `${framework}, ${tethered ? 'with tether' : 'naive'}`,
      tethered,
      status: TIMEOUT_STATUS[mode],
      onTime: responses.filter((r) => r.status === TIMEOUT_STATUS[mode] && r.ms <= ON_TIME_MS).length,
      stillRunning,
      alreadySent,
      swallowed: tethered ? lateWrites : 0,
    }
  } finally {
    child.kill()
  }
}

function table(rows) {
  const head = [
    'app',
    'deadline answer',
    `answered on time (of ${BURST})`,
    `downstream calls still running 1 s after`,
    'already-sent errors logged',
    'late writes swallowed',
  ]
  const cells = rows.map((r) => [
    r.app,
    r.status,
    r.onTime,
    `${r.stillRunning} of ${BURST * 2}`,
    r.alreadySent,
    r.swallowed,
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => String(c[i]).length)))
  const line = (values) => `| ${values.map((v, i) => String(v).padEnd(widths[i])).join(' | ')} |`
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n')
}

console.log(
  `tether demo (Node ${process.version}): ${BURST} concurrent requests per app, deadline ${DEADLINE_MS} ms,\n` +
    `each request fans out to two downstream calls of ${DOWNSTREAM_MS} ms. Each app runs in its own process.\n`,
)
const downstream = await startDownstream({ delayMs: DOWNSTREAM_MS })
const rows = []
for (const framework of ['express', 'fastify']) {
  for (const tethered of [false, true]) rows.push(await run(framework, tethered, downstream))
}
await downstream.close()

console.log(table(rows))

// The prose says what the table shows, row by row: never more.
const names = (list) => list.map((r) => r.app).join('; ')
const said = []
const onTime = rows.filter((r) => r.onTime === BURST)
const late = rows.filter((r) => r.onTime !== BURST)
if (onTime.length > 0)
  said.push(`Answered every request with its deadline answer within ${ON_TIME_MS} ms: ${names(onTime)}.`)
if (late.length > 0)
  said.push(`Did not answer every request with its deadline answer within ${ON_TIME_MS} ms: ${names(late)}.`)
const leftRunning = rows.filter((r) => r.stillRunning > 0)
const stopped = rows.filter((r) => r.stillRunning === 0)
if (leftRunning.length > 0)
  said.push(`Left downstream calls running after the client was answered: ${names(leftRunning)}.`)
if (stopped.length > 0) said.push(`Stopped every downstream call at the deadline: ${names(stopped)}.`)
const logged = rows.filter((r) => r.alreadySent > 0)
if (logged.length > 0) said.push(`Logged errors for writes to responses already sent: ${names(logged)}.`)
const swallowed = rows.filter((r) => r.swallowed > 0)
if (swallowed.length > 0) said.push(`Swallowed and counted the handlers' late writes: ${names(swallowed)}.`)
console.log(`\n${said.join('\n')}`)

// The demo's claims, checked: CI runs it, and a regression must not print a wrong table quietly.
const broken = rows.filter((r) =>
  r.tethered
    ? r.onTime !== BURST || r.stillRunning !== 0 || r.alreadySent !== 0
    : r.onTime !== BURST || r.stillRunning === 0,
)
if (broken.length > 0) {
  console.error(`\nThe demo did not show what it should for: ${broken.map((r) => r.app).join(', ')}`)
  process.exitCode = 1
}
