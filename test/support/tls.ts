import { readFileSync } from 'node:fs'

// The test-only certificate for 127.0.0.1 and localhost (test/fixtures/README.md): for HTTPS and
// HTTP/2 servers on loopback in tests, never anywhere else, since its private key is public.
export const key = readFileSync(new URL('../fixtures/test-only-key.pem', import.meta.url))
export const cert = readFileSync(new URL('../fixtures/test-only-cert.pem', import.meta.url))
