// A FAKE TLS endpoint for the TLS tests: answers CouchDB's welcome over HTTPS with the
// certificate and key given on the command line. Prints "PORT <n>"; exits when stdin closes.
const https = require("https");
const fs = require("fs");
const [cert, key] = process.argv.slice(2);
const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ couchdb: "Welcome", version: "3.4.3", vendor: { name: "fake TLS" } }));
});
server.listen(0, "127.0.0.1", () => console.log("PORT " + server.address().port));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
process.on("SIGTERM", () => process.exit(0));
