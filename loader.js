'use strict'
// Loads the platform's native addon (through the napi-rs generated `binding.js`).
module.exports = require('./binding.js')
