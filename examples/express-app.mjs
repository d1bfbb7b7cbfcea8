// An Express app whose handler fans out to two slow downstream calls, in two versions:
//
// - naive: connect-timeout answers 503 at the deadline, and the handler's Promise.all runs on; its
//   late res.json() throws ERR_HTTP_HEADERS_SENT, which Express logs (console.error) and answers by
//   destroying the connection.
// - tethered: tether answers 504 at the deadline, all() aborts both calls (their sockets close),
//   and the handler's late res.json() is swallowed.
//
// Run on its own: `node examples/express-app.mjs` (needs `pnpm build`), then
// `curl -i localhost:3000/profile`.
import { pathToFileURL } from 'node:url'
import { all } from '@tether/core'
import { tether } from '@tether/express'
import connectTimeout from 'connect-timeout'
import express from 'express'
import { startDownstream } from './downstream.mjs'

/**
 * @param {{ tethered: boolean, deadlineMs: number, downstreamUrl: string, caller: string }} options
 */
export function createExpressApp({ tethered, deadlineMs, downstreamUrl, caller }) {
  const call = (signal) =>
    fetch(downstreamUrl, { headers: { 'x-caller': caller }, signal }).then((response) => response.json())
  const app = express()

  if (tethered) {
    app.use(tether({ timeout: deadlineMs }))
    app.get('/profile', async (_req, res) => {
      // Each call gets the fan-out's signal: at the deadline both are aborted.
      const [user, orders] = await all([(signal) => call(signal), (signal) => call(signal)])
      res.json({ user, orders })
    })
  } else {
    app.use(connectTimeout(`${deadlineMs}ms`))
    app.get('/profile', async (_req, res) => {
      const [user, orders] = await Promise.all([call(), call()])
      res.json({ user, orders })
    })
  }

  app.use((error, _req, res, next) => {
    if (res.headersSent) return next(error)
    res.status(error.status ?? 500).json({ error: error.message })
  })
  return app
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const downstream = await startDownstream({ delayMs: 2_000 })
  const app = createExpressApp({ tethered: true, deadlineMs: 500, downstreamUrl: downstream.url, caller: 'app' })
  app.listen(3000, '127.0.0.1', () => console.log('listening on http://127.0.0.1:3000/profile'))
}
