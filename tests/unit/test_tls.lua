-- TLS: verification is on by default, ca_file trusts a private CA, insecure = true turns it
-- off with a warning; plus the other ways of not reaching a server (DNS, refused).
-- The HTTPS peer is a FAKE (tests/fakes/tls_server.js) with a certificate made here.
local lu = require "luaunit"
local couch = require "couch"

local src = os.getenv("COUCHLUA_SOURCE_DIR") or "."
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
local ok = os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 " ..
  "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1"):format(key, cert))
if not ok then
  print("SKIPPED: openssl could not make a test certificate")
  os.exit(77)
end
local out = dir .. "/out"
local pipe = assert(io.popen(("exec node %s/tests/fakes/tls_server.js %s %s > %s 2>&1"):format(src, cert, key, out), "w"))
local port
for _ = 1, 100 do
  local fh = io.open(out)
  port = fh and fh:read("a"):match("PORT (%d+)")
  if fh then fh:close() end
  if port then break end
  couch.sleep(0.05)
end
assert(port, "the TLS fake did not start")
local url = "https://127.0.0.1:" .. port

TestTLS = {}

function TestTLS:test_an_untrusted_certificate_is_refused_by_default()
  local srv = couch.connect(url, { retries = 0 })
  local ok2, err = pcall(srv.info, srv)
  lu.assertFalse(ok2)
  lu.assertEquals(err.kind, "network")
  lu.assertStrContains(tostring(err):lower(), "certificate")
end

function TestTLS:test_ca_file_trusts_it()
  local srv = couch.connect(url, { ca_file = cert })
  lu.assertEquals(srv:info().vendor.name, "fake TLS")
end

function TestTLS:test_insecure_turns_verification_off_loudly()
  local script = dir .. "/insecure.lua"
  local fh = io.open(script, "w")
  fh:write(("print(require'couch'.connect(%q, {insecure = true}):info().vendor.name)"):format(url))
  fh:close()
  local p = io.popen(("%s %s 2>&1"):format(os.getenv("COUCHLUA") or "couchlua", script))
  local text = p:read("a")
  p:close()
  lu.assertStrContains(text, "fake TLS")
  lu.assertStrContains(text, "WARNING: TLS certificate verification is OFF")
  local quiet = couch.connect(url, { insecure = true, quiet = true })
  lu.assertEquals(quiet:info().couchdb, "Welcome")
end

function TestTLS:test_unknown_host_is_a_network_error_naming_it()
  local srv = couch.connect("http://no-such-host.invalid:5984", { retries = 0, connect_timeout = 3 })
  local ok2, err = pcall(srv.info, srv)
  lu.assertFalse(ok2)
  lu.assertTrue(err.kind == "network" or err.kind == "timeout")
  lu.assertStrContains(tostring(err), "no-such-host.invalid")
end

local rc = lu.LuaUnit.run()
pipe:close()
os.execute("rm -rf " .. dir)
os.exit(rc)
