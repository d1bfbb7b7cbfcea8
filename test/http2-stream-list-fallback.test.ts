import { inspect } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { trackServer } from '../packages/core/src/server/connections.js'
import { eventually } from './support/http.js'
import { destroyClients, type H2TestServer, request, startCore } from './support/http2.js'

// tether reads a session's open streams from Node's own map, found among the session's symbol
// keys, and tracks streams one by one where no Node shows that map. This file is a Node that does
// not: every server session's `state` key is hidden from `Object.getOwnPropertySymbols`, which is
// how tether looks for it (Node's internals read the key through their own primordials, so they
// are unaffected). tether decides once per module, at the first session; vitest loads the modules
// afresh for each test file, so the decision made here holds for this file only.

const GRACE = 500
const realSymbols = Object.getOwnPropertySymbols
let running: H2TestServer | undefined

beforeAll(() => {
  vi.spyOn(Object, 'getOwnPropertySymbols').mockImplementation((object) => {
    const keys = realSymbols(object)
    const serverSession = (object as object | null)?.constructor?.name === 'ServerHttp2Session'
    return serverSession ? keys.filter((key) => key.description !== 'state') : keys
  })
})
afterAll(() => vi.restoreAllMocks())
afterEach(async () => {
  destroyClients()
  await running?.close().catch(() => undefined)
  running = undefined
  assertNoLingering()
})

describe('HTTP/2 where Node does not show a session its own stream list', () => {
  it('tracks streams itself, and shutdown lets the quick stream finish and answers the stuck one 503', async () => {
    running = await startCore({ secure: false, grace: GRACE })
    const session = running.connect()
    const quick = request(session, '/finish?ms=150')
    const stuck = request(session, '/hang')
    await eventually(() => inspect().inflight.length >= 2, 2_000, 'streams in flight')
    expect(trackServer(running.server).h2?.perStream).toBe(true) // the fallback is what is tested
    const report = await running.shutdown()
    expect((await quick).status).toBe(200)
    expect((await stuck).status).toBe(503)
    expect(report).toMatchObject({ finished: 1, aborted: 1 })
  })
})
