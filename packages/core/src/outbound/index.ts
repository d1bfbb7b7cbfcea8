export * from './fetch.js'
export * from './outbound.js'
