'use strict'
// The facade's one way into the native binding: every lib/ module and index.js require this
// file, never loader.js, so there is a single place that sees every crossing into the core.

module.exports = require('../loader.js')
