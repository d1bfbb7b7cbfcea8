// One app of the demo, in a process of its own, so that everything it counts (errors logged, late
// writes swallowed) is its own and not another app's that wrote late. Started by demo.mjs with
// fork(): it answers `{ url }` once listening, and `{ alreadySent, lateWrites }` when asked, after
// its own logs have gone quiet.
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { inspect } from '@tether/core'
import { createExpressApp } from './express-app.mjs'
import { createFastifyApp } from './fastify-app.mjs'

const [framework, mode, downstreamUrl, deadlineMs] = process.argv.slice(2)
const tethered = mode === 'tether'

// What an operator would find in the logs: Express prints errors that reach its final handler
// with console.error, Fastify writes them to its logger. Both are counted here, not printed.
let alreadySent = 0
let lastLog = Date.now()
const countAlreadySent = (text) => {
  lastLog = Date.now()
  alreadySent += (String(text).match(/ERR_HTTP_HEADERS_SENT|FST_ERR_REP_ALREADY_SENT/g) ?? []).length
}
console.error = (...args) => countAlreadySent(args.map((arg) => arg?.stack ?? arg).join(' '))
const logStream = new Writable({
  write(chunk, _encoding, callback) {
    countAlreadySent(chunk)
    callback()
  },
})

const options = { tethered, deadlineMs: Number(deadlineMs), downstreamUrl, caller: `${framework}-${mode}` }
let url
let close
if (framework === 'fastify') {
  const app = await createFastifyApp({ ...options, logStream })
  await app.listen({ port: 0, host: '127.0.0.1' })
  url = `http://127.0.0.1:${app.server.address().port}`
  close = () => app.close()
} else {
  const server = createExpressApp(options).listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  url = `http://127.0.0.1:${server.address().port}`
  close = () => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  }
}

process.on('message', async (message) => {
  if (message !== 'report') return
  // Quiet: no log line and no late write for half a second (bounded, on a slow machine too).
  let lateWrites = inspect().counters.lateWrites
  for (let waited = 0; waited < 10_000; waited += 100) {
    await sleep(100)
    const now = inspect().counters.lateWrites
    if (now === lateWrites && Date.now() - lastLog >= 500) break
    lateWrites = now
  }
  await close()
  process.send({ alreadySent, lateWrites: inspect().counters.lateWrites }, () => process.exit(0))
})
process.send({ url })
