// Preloaded into dynalite (`node --require guard.js cli.js ...`).
//
// When a client disconnects in the middle of sending a request (a killed TaskManager, a client timeout), Node
// emits 'error' (ECONNRESET, "aborted") on that request and dynalite rethrows it from the listener: uncaught, it
// ends the process, and with it the stack's whole DynamoDB. The error concerns one unfinished request that was
// never processed (its body did not arrive), so log it and keep serving. Any other uncaught error still ends the
// process, so a real fault is not hidden.
'use strict'

process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error(`[tradesim guard] a client disconnected mid-request (${err.message}); still serving`)
    return
  }
  console.error(err)
  process.exit(1)
})
