// Which tests can run where. The skips live next to the tests (`it.skipIf(notLinux)`), each with a
// comment naming what the test needs.

/** Not Linux: no /proc (open descriptors, process groups), no pid namespaces, no Debian chromium. */
export const notLinux = process.platform !== 'linux'

/** Windows: no POSIX shell features such as `ulimit`. */
export const isWindows = process.platform === 'win32'
