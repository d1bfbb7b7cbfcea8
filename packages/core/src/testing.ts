// The `@tether/core/testing` entry point: assertions for test suites, kept out of the main entry
// so production bundles never load them.
export * from './observability/testing.js'
