// The seed suite (and the daemon) import `../src/runs.js`; the implementation is the package
// entry point, whose facade forwards to the Rust core.
'use strict'
module.exports = require('../index.js')
