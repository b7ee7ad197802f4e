// Starts dynalite for the tradesim stack: its own cli.js does the same, minus two things the stack needs.
//
// 1. SIGTERM (what `tradesim down` sends) closes the HTTP server and then LevelDB cleanly before exiting.
//    Node's default is to exit at once, leaving LevelDB to recover its write-ahead log at the next start; under
//    load, a dynalite restarted that way was seen answering conditional updates from an older copy of an item
//    (acknowledged writes that later reads did not show). A clean close leaves nothing to recover.
// 2. A client that disconnects in the middle of sending a request (a killed TaskManager, a client timeout)
//    makes Node emit 'error' (ECONNRESET, "aborted") on that request, and dynalite rethrows it: uncaught, it
//    ends the process. That request was never processed (its body did not arrive), so log it and keep serving;
//    any other uncaught error still ends the process.
//
// 3. Iterators are closed. dynalite 4 turns LevelDB iterators into streams that call `iterator.next()` until it
//    answers nothing and then `iterator.return()` to stop early, but abstract-level 3 iterators close only on
//    `close()` and have no `return()`. So every ListTables (the stack's health probe, every few seconds), Query
//    and Scan left an iterator open, and each open iterator pins the LevelDB files of its moment: the data folder
//    grew by gigabytes over a long run (2,916 table files on disk, 130 of them live). Here `next()` closes an
//    iterator at its end, and `return()` closes it.
//
// 4. ListTables reads only the table descriptions. dynalite keeps every table's items, indexes and descriptions
//    in one LevelDB under key prefixes, and its prefixed view lists keys by scanning the *whole* database and
//    filtering by prefix. So ListTables (the stack's health probe) slowed with every item stored: after a few
//    hundred thousand orders it took over a second, the probe timed out and `tradesim up` gave up on a healthy
//    server. Here the descriptions' key stream is a range scan of their prefix.
//
// 5. LevelDB reads run synchronously. An asynchronous read (what dynalite asks for) hands the read to a worker
//    thread and its answer back to the event loop, and takes a LevelDB snapshot for it; LevelDB answers a read from
//    its caches in microseconds, so the hand-offs cost more than the read. A synchronous read sees the same state
//    (the database as of the call); one that misses the caches holds the event loop for its disk read. Every
//    conditional write reads its item first, so writes gain too. Writes stay asynchronous.
//
// 6. A write to a table with indexes is one LevelDB batch. dynalite writes an item's index entries first (all
//    deletes, then all puts, each its own LevelDB write) and the item after them: up to three hand-offs to a worker
//    thread and back, one after another, for a write to the Orders table, whose claim and outcome are on every
//    order's path. Here the index writes are collected, and the item's own put or delete, which putItem,
//    updateItem and deleteItem issue in the same call, writes them all in one batch: one hand-off, and the item
//    and its index entries change together (dynalite's order left a moment with the index ahead of the item).
//
// 7. DeleteTable and ListTagsOfResource read by range. To delete a table's items, index entries and tags, and to
//    list its tags, dynalite lists the keys of each with the same whole-database scan as in point 4: deleting an
//    empty table took 1.8-3.4 s on a stack that had taken orders, past a client's read timeout. Here each is a
//    range scan of its prefix.
//
// usage: node server.js --module <node_modules/dynalite> --host H --port P --path DIR --createTableMs MS
'use strict'

const options = {}
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i += 2) options[argv[i].replace(/^--/, '')] = argv[i + 1]

process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error(`[tradesim] a client disconnected mid-request (${err.message}); still serving`)
    return
  }
  console.error(err)
  process.exit(1)
})

const level = require(require.resolve('abstract-level', { paths: [options.module] }))
for (const Iterator of [level.AbstractIterator, level.AbstractKeyIterator, level.AbstractValueIterator]) {
  const next = Iterator.prototype.next
  Iterator.prototype.next = async function () {
    const item = await next.call(this)
    if (item === undefined) await this.close()
    return item
  }
  Iterator.prototype.return = function () { return this.close() }
}

const { ClassicLevel } = require(require.resolve('classic-level', { paths: [options.module] }))
ClassicLevel.prototype._get = async function (key, getOptions) { return this._getSync(key, getOptions) }

const path = require('path')
const storage = require(path.join(options.module, 'db'))
const create = storage.create
storage.create = function (opts) {
  const created = create(opts)
  const { Transform } = require('stream')
  // the keys under `prefix` with the prefix taken off, as the prefixed view's key stream yields them
  const keysUnder = (prefix) => created.db.createKeyStream(under(prefix)).pipe(new Transform({
    objectMode: true,
    transform (key, _encoding, callback) { callback(null, key.substring(prefix.length)) },
  }))
  // a prefixed view's key stream, when asked for every key (as dynalite asks), read by range; once per view
  // (getTagDb hands out a cached view)
  const rangedKeys = (view, prefix) => {
    if (view.rangedKeys) return view
    const scanAll = view.createKeyStream
    view.createKeyStream = function (streamOptions) {
      if (streamOptions && Object.keys(streamOptions).length) return scanAll.call(this, streamOptions)
      return keysUnder(prefix)
    }
    view.rangedKeys = true
    return view
  }
  rangedKeys(created.tableDb, 'table~') // dynalite's key prefix of table descriptions (db/index.js getSubDb('table'))
  // point 7: a table's tags are listed by ListTagsOfResource through the same scan
  const getTagDb = created.getTagDb
  created.getTagDb = function (name) { return rangedKeys(getTagDb.call(this, name), `tag-${name}~`) }
  // point 7: the key prefixes of db/index.js deleteItemDb, deleteIndexDb and deleteTagDb
  const deleteUnder = (keyPrefix, cb) => {
    const ops = []
    let done = false
    const finish = (err) => { if (!done) { done = true; cb(err) } }
    created.db.createKeyStream(under(keyPrefix))
      .on('data', (key) => ops.push({ type: 'del', key }))
      .on('error', finish)
      .on('end', () => (ops.length ? created.db.batch(ops, finish) : finish()))
  }
  created.deleteItemDb = (name, cb) => deleteUnder(`item-${name}~`, cb)
  created.deleteTagDb = (name, cb) => deleteUnder(`tag-${name}~`, cb)
  created.deleteIndexDb = (type, table, index, cb) => deleteUnder(`index-${type.toLowerCase()}~${table}~${index}~`, cb)
  for (const method of ['put', 'del']) {
    const single = created.db[method]
    created.db[method] = function (key, ...rest) {
      if (pendingIndexOps === null) return single.call(this, key, ...rest)
      const ops = pendingIndexOps
      pendingIndexOps = null
      const own = method === 'put' ? { type: 'put', key, value: rest[0] } : { type: 'del', key }
      return created.db.batch([...ops, own], rest[rest.length - 1])
    }
  }
  batchAlone = (ops) => created.db.batch(ops, (err) => {
    if (err) console.error('[tradesim] index writes not taken by an item write failed:', err)
  })
  return created
}

// The keys under a prefix that ends in '~', in LevelDB's byte order: from the prefix up to, not including, the
// prefix with its last byte raised by one ('~' is 0x7e), a bound that holds whatever bytes follow the prefix.
function under (prefix) {
  if (!prefix.endsWith('~')) throw new Error(`a key prefix ends in '~': ${prefix}`)
  return { gte: prefix, lt: prefix.slice(0, -1) + '\x7f' }
}

let pendingIndexOps = null // the index writes of the action running now, for its item write to take (point 6)
let batchAlone = null
storage.updateIndexes = function (store, table, existingItem, item, cb) {
  const ops = []
  for (const type of ['Local', 'Global']) {
    const actions = storage.getIndexActions(table[type + 'SecondaryIndexes'] || [], existingItem, item, table)
    const prefix = (index) => `index-${type.toLowerCase()}~${table.TableName}~${index}~` // db/index.js getIndexDb
    for (const a of actions.deletes) ops.push({ type: 'del', key: prefix(a.index) + a.key })
    for (const a of actions.puts) ops.push({ type: 'put', key: prefix(a.index) + a.key, value: a.item })
  }
  if (ops.length === 0) return cb()
  pendingIndexOps = ops
  try {
    cb() // the action writes its item within this call, and that write takes the ops
  } finally {
    if (pendingIndexOps === ops) { // not taken (a dynalite whose actions differ, or cb threw): write them alone
      pendingIndexOps = null
      console.error('[tradesim] an index update was not followed by its item write; written alone')
      batchAlone(ops)
    }
  }
}

const dynalite = require(options.module)
const server = dynalite({ path: options.path, createTableMs: Number(options.createTableMs) })
server.listen(Number(options.port), options.host, () => {
  console.log(`Dynalite listening at: http://${options.host}:${options.port}`)
})

let closing = false
function shutdown (signal) {
  if (closing) return
  closing = true
  console.log(`[tradesim] ${signal}: closing connections, then LevelDB`)
  setTimeout(() => { console.error('[tradesim] clean close took too long; exiting'); process.exit(1) }, 8000).unref()
  server.close((err) => {
    if (err) console.error('[tradesim] close:', err)
    process.exit(err ? 1 : 0)
  })
  server.closeAllConnections() // kept-alive clients would otherwise hold close() open
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
