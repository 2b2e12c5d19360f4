'use strict';
// Calls from the document store and the scheduler into the replicator's document
// processor, which is loaded after them (docprocessor.js sets these).
module.exports = {
  replicatorDocChanged: () => {}, // (db, docId): a _replicator doc was written
  dbDeleted: () => {}, // (db): a database was deleted
  writeReplicationState: () => {}, // (dbName, docId, jobId, fields): the doc says how its job ended
  jobFinished: () => {}, // (dbName, docId, jobId, fields): a job of a doc completed
};
