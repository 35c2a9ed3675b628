// Everything the test files share, from one import: `import { makeRuns, FakeChild, ... } from './helpers'`.
export * from './env'
export * from './fakes'
export * from './fs'
export * from './platform'
export * from './processes'
export * from './service'
export * from './spec'
export * from './wait'
