export * from './dispatcher.js'
export * from './fetch.js'
export * from './live.js'
export * from './outbound.js'
