// A Fastify app whose handler fans out to two slow downstream calls, in two versions:
//
// - naive: an onRequest timer answers 503 at the deadline (what connect-timeout does), and the
//   handler's Promise.all runs on; its late return makes Fastify log FST_ERR_REP_ALREADY_SENT.
// - tethered: tether answers 504 at the deadline, all() aborts both calls (their sockets close),
//   and the handler's late return is swallowed.
//
// Run on its own: `node examples/fastify-app.mjs` (needs `pnpm build`), then
// `curl -i localhost:3001/profile`.
import { pathToFileURL } from 'node:url'
import { all } from '@tether/core'
import { tether } from '@tether/fastify'
import Fastify from 'fastify'
import { startDownstream } from './downstream.mjs'

/**
 * @param {{ tethered: boolean, deadlineMs: number, downstreamUrl: string, caller: string, logStream?: import('node:stream').Writable }} options
 */
export async function createFastifyApp({ tethered, deadlineMs, downstreamUrl, caller, logStream = process.stdout }) {
  const app = Fastify({ logger: { level: 'warn', stream: logStream } })
  const call = (signal) =>
    fetch(downstreamUrl, { headers: { 'x-caller': caller }, signal }).then((response) => response.json())

  if (tethered) {
    await app.register(tether, { timeout: deadlineMs })
    app.get('/profile', async () => {
      const [user, orders] = await all([(signal) => call(signal), (signal) => call(signal)])
      return { user, orders }
    })
  } else {
    app.addHook('onRequest', (_request, reply, done) => {
      const timer = setTimeout(() => reply.code(503).send({ error: 'Response timeout' }), deadlineMs)
      reply.raw.on('close', () => clearTimeout(timer))
      done()
    })
    app.get('/profile', async () => {
      const [user, orders] = await Promise.all([call(), call()])
      return { user, orders }
    })
  }
  return app
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const downstream = await startDownstream({ delayMs: 2_000 })
  const app = await createFastifyApp({ tethered: true, deadlineMs: 500, downstreamUrl: downstream.url, caller: 'app' })
  await app.listen({ port: 3001, host: '127.0.0.1' })
  console.log('listening on http://127.0.0.1:3001/profile')
}
