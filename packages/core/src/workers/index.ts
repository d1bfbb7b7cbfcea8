export * from './worker-pool.js'
