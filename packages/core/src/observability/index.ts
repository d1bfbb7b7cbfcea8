export * from './inspect.js'
export * from './metrics.js'
