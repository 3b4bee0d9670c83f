/**
 * Loaded first in each of the demo's child processes (`node --import`): when the demo's end of the
 * child's stdin closes (the demo is gone, even killed with SIGKILL, and did not stop its children), the
 * child stops itself: SIGTERM to itself (a graceful stop), and exits anyway 3 seconds later.
 */
process.stdin.on("end", () => {
  setTimeout(() => process.exit(1), 3000).unref()
  process.kill(process.pid, "SIGTERM")
})
process.stdin.resume()
