-- The doc-test runner: every fenced ```lua block of the given Markdown files runs as its
-- own script with couchlua, must exit 0 (or the status its directive names) within
-- DOCTEST_TIMEOUT seconds (60), and, where the document shows its output, prints exactly
-- that. Run by tests/cli/test_docs.sh (which starts the pouchdb-server); by hand:
--
--   COUCH_URL=http://127.0.0.1:5984 couchlua tests/support/doctest.lua README.md docs/*.md
--   DOCTEST_ONLY=docs/api.md:120 ...     only the block that starts on (or spans) that line
--   couchlua tests/support/doctest.lua --list FILES   the blocks and their directives
--
-- Conventions (docs/README of them: docs/doctest.md):
--
--   Expected output, two forms (stdout only; stderr is not compared):
--     * `--> text` at the end of a line: one expected line of output. The block's output
--       must be exactly these lines, in order.
--     * a fenced block with the info string `output` after the lua block (prose may come
--       between, no other code block): the block's whole output.
--     In both, `<...>` stands for any text within one line (a rev, a seq, a time), and a
--     line that is exactly `...` for any number of lines (also none).
--   Directives: an HTML comment right before the block (only blank lines between):
--     <!-- doctest: skip: REASON -->   not run; the runner prints REASON (keep these rare)
--     <!-- doctest: continue -->       runs after the previous lua block of the same file,
--                                      in one script (a fragment that builds on it)
--     <!-- doctest: couchdb3 -->       COUCH_URL is the fake CouchDB 3 (tests/fakes), for
--                                      what pouchdb-server lacks (/_scheduler, states)
--     <!-- doctest: arango -->         ARANGO_URL is the fake ArangoDB (tests/fakes)
--     <!-- doctest: exit: N -->        the script must exit with status N
--     <!-- doctest: twice -->          runs twice (safe to run again)
--   Several directives in one comment are separated by ';'.
--
-- Each script's line N is line N of its Markdown file (earlier lines are blank), and the
-- script file carries the Markdown file's name, so an error points at the doc's own line.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path -- the fakes' helpers beside this file
local couch = require "couch"

local TIMEOUT = tonumber(os.getenv("DOCTEST_TIMEOUT") or "") or 60
local COUCHLUA = os.getenv("COUCHLUA") or arg[-1] or "couchlua"
if COUCHLUA:find("/", 1, true) and COUCHLUA:sub(1, 1) ~= "/" then -- the blocks run elsewhere
  COUCHLUA = os.getenv("PWD") .. "/" .. COUCHLUA
end
local ONLY = os.getenv("DOCTEST_ONLY")

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local fh = io.open(path, "rb")
  if not fh then return nil end
  local s = fh:read("a")
  fh:close()
  return s
end

local function write_file(path, text)
  local fh = assert(io.open(path, "wb"))
  fh:write(text)
  fh:close()
end

local function split_lines(s)
  local out = {}
  for line in (s .. "\n"):gmatch("(.-)\r?\n") do out[#out + 1] = line end
  if out[#out] == "" then out[#out] = nil end
  return out
end

---------------------------------------------------------------------------
-- Parsing

local KNOWN = { skip = true, continue = true, couchdb3 = true, arango = true, exit = true, twice = true }

local function parse_directives(text, file, line)
  local d = {}
  for part in (text .. ";"):gmatch("%s*(.-)%s*;") do
    if part ~= "" then
      local name, value = part:match("^([%w_]+)%s*:%s*(.-)$")
      if not name then name = part:match("^([%w_]+)$") end
      if not name or not KNOWN[name] then
        error(("%s:%d: unknown doctest directive '%s'"):format(file, line, part), 0)
      end
      if name == "skip" and (value == nil or value == "") then
        error(("%s:%d: a skip needs a reason (<!-- doctest: skip: why -->)"):format(file, line), 0)
      end
      d[name] = value or true
    end
  end
  return d
end

--- blocks of one Markdown file: { file, line (of the opening fence), last, code_lines
-- ({line, text} pairs), expect (lines or nil), directives }
local function parse(file)
  local text = assert(read_file(file), "cannot read " .. file)
  local lines = split_lines(text)
  local blocks, pending_dir, last_lua = {}, nil, nil
  local i = 1
  local blank_since_block = true -- no other code block since the last lua block
  while i <= #lines do
    local line = lines[i]
    local indent, fence, info = line:match("^(%s*)(```+)%s*(.-)%s*$")
    local dir = line:match("^%s*<!%-%-%s*doctest:%s*(.-)%s*%-%->%s*$")
    if dir then
      pending_dir = { text = dir, line = i }
      i = i + 1
    elseif fence then
      local lang = info:match("^(%S*)")
      local body, start = {}, i
      i = i + 1
      while i <= #lines and not lines[i]:match("^%s*" .. fence .. "%s*$") do
        local l = lines[i]
        if l:sub(1, #indent) == indent then l = l:sub(#indent + 1) end
        body[#body + 1] = { line = i, text = l }
        i = i + 1
      end
      if i > #lines then error(("%s:%d: unclosed code fence"):format(file, start), 0) end
      i = i + 1
      if lang == "lua" then
        local b = { file = file, line = start, last = i - 1, code = body,
                    directives = pending_dir and parse_directives(pending_dir.text, file, pending_dir.line) or {} }
        -- `--> text` comments
        local arrows
        for _, l in ipairs(body) do
          local want = l.text:match("%-%->%s?(.*)$")
          if want then
            arrows = arrows or {}
            arrows[#arrows + 1] = want
          end
        end
        b.expect = arrows
        blocks[#blocks + 1] = b
        last_lua = b
        blank_since_block = true
      elseif lang == "output" then
        if not (last_lua and blank_since_block and not last_lua.output_seen) then
          error(("%s:%d: an output block must follow a lua block (no other code block between)"):format(file, start), 0)
        end
        if last_lua.expect then
          error(("%s:%d: the lua block above has --> comments and an output block: use one"):format(file, start), 0)
        end
        local want = {}
        for _, l in ipairs(body) do want[#want + 1] = l.text end
        last_lua.expect = want
        last_lua.output_seen = true
        blank_since_block = false
      else
        if pending_dir then
          error(("%s:%d: a doctest directive before a %s block"):format(file, pending_dir.line, lang ~= "" and lang or "plain"), 0)
        end
        blank_since_block = false
      end
      pending_dir = nil
    else
      if line:match("%S") and pending_dir then
        error(("%s:%d: a doctest directive must come right before a lua block"):format(file, pending_dir.line), 0)
      end
      i = i + 1
    end
  end
  if pending_dir then error(("%s:%d: a doctest directive at the end of the file"):format(file, pending_dir.line), 0) end
  -- chains: a `continue` block runs after its predecessors
  for k, b in ipairs(blocks) do
    if b.directives.continue then
      if k == 1 then error(("%s:%d: 'continue' on the first lua block of the file"):format(file, b.line), 0) end
      b.prev = blocks[k - 1]
      if b.prev.directives.skip and not b.directives.skip then
        error(("%s:%d: continues a skipped block"):format(file, b.line), 0)
      end
    end
  end
  return blocks
end

---------------------------------------------------------------------------
-- Matching

local function line_pattern(want)
  local parts = {}
  local pos = 1
  while true do
    local s, e = want:find("<...>", pos, true)
    if not s then break end
    parts[#parts + 1] = want:sub(pos, s - 1):gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
    parts[#parts + 1] = ".-"
    pos = e + 1
  end
  parts[#parts + 1] = want:sub(pos):gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
  return "^" .. table.concat(parts) .. "$"
end

-- whether got (lines) matches want (lines with `<...>` and `...` placeholders)
local function matches(got, want)
  local memo = {}
  local function m(i, j)
    local key = i * 100000 + j
    if memo[key] ~= nil then return memo[key] end
    local r
    if j > #want then r = i > #got
    elseif want[j] == "..." then r = m(i, j + 1) or (i <= #got and m(i + 1, j))
    else r = i <= #got and got[i]:match(line_pattern(want[j])) ~= nil and m(i + 1, j + 1) end
    memo[key] = r
    return r
  end
  return m(1, 1)
end

---------------------------------------------------------------------------
-- Running

local tmp = io.popen("mktemp -d \"${TMPDIR:-/tmp}/couchlua-doctest.XXXXXX\""):read("l")
assert(tmp and tmp ~= "", "mktemp -d failed")
os.execute("mkdir -p " .. shell_quote(tmp .. "/work"))

local fakes = {}
local function fake_couchdb3()
  if not fakes.couchdb3 then fakes.couchdb3 = require("fake_couchdb3").start { time_scale = 0.01 } end
  return fakes.couchdb3
end
local function fake_arango()
  if not fakes.arango then
    fakes.arango = require("fake_arango").start {
      generate = { shop = { products = 120, customers = 10 } },
      users = { root = "secret" },
    }
    fakes.arango:call("POST", "/_fake/reset", couch.json.object {})
  end
  return fakes.arango
end

-- the chain of a block (its predecessors first)
local function chain(b)
  local list = {}
  while b do table.insert(list, 1, b); b = b.directives.continue and b.prev or nil end
  return list
end

local function script_of(list)
  local out, n = {}, 0
  for _, b in ipairs(list) do
    for _, l in ipairs(b.code) do
      while n < l.line - 1 do out[#out + 1] = ""; n = n + 1 end
      out[#out + 1] = l.text
      n = n + 1
    end
  end
  return table.concat(out, "\n") .. "\n"
end

local function expected_of(list)
  local want, any = {}, false
  for _, b in ipairs(list) do
    if b.expect then
      any = true
      for _, l in ipairs(b.expect) do want[#want + 1] = l end
    elseif #want == 0 or want[#want] ~= "..." then
      want[#want + 1] = "..."
    end
  end
  return any and want or nil
end

local function env_prefix(b)
  local list = chain(b)
  local env = {}
  for _, x in ipairs(list) do
    if x.directives.couchdb3 then
      -- a real CouchDB when the runner is pointed at one, else the fake
      env.COUCH_URL = os.getenv("DOCTEST_COUCHDB3_URL") or fake_couchdb3().admin_url
    end
    if x.directives.arango then
      env.ARANGO_URL = fake_arango().url
      env.ARANGO_USER, env.ARANGO_PASSWORD = "root", "secret"
    end
  end
  local parts = {}
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. shell_quote(v) end
  table.sort(parts)
  return table.concat(parts, " ")
end

local function run_block(b)
  local list = chain(b)
  local envok, env = pcall(env_prefix, b)
  if not envok then return 1, "", "doctest: could not start a fake server: " .. tostring(env), 0 end
  local base = b.file:match("([^/]+)$")
  local dir = tmp .. "/src"
  os.execute("mkdir -p " .. shell_quote(dir))
  local script = dir .. "/" .. base
  write_file(script, script_of(list))
  local out, err = tmp .. "/out", tmp .. "/err"
  local cmd = ("cd %s && env %s timeout -k 5 %d %s %s >%s 2>%s </dev/null"):format(
    shell_quote(tmp .. "/work"), env, TIMEOUT, shell_quote(COUCHLUA), shell_quote(script),
    shell_quote(out), shell_quote(err))
  local t0 = couch.now()
  local _, how, code = os.execute(cmd)
  local rc = how == "exit" and code or 128 + (code or 0)
  return rc, read_file(out) or "", read_file(err) or "", couch.now() - t0
end

local function indent(s, prefix)
  local lines = split_lines(s)
  local out = {}
  for k = 1, math.min(#lines, 60) do out[#out + 1] = prefix .. lines[k] end
  if #lines > 60 then out[#out + 1] = prefix .. ("... (%d more lines)"):format(#lines - 60) end
  return table.concat(out, "\n")
end

---------------------------------------------------------------------------

local files, list_only = {}, false
for _, a in ipairs(arg) do
  if a == "--list" then list_only = true else files[#files + 1] = a end
end
if #files == 0 then
  io.stderr:write("usage: couchlua doctest.lua [--list] FILE.md...\n")
  os.exit(2)
end

local ran, skipped, failed, parse_failed = 0, 0, 0, 0
local all = {}
for _, f in ipairs(files) do
  local ok, blocks = pcall(parse, f)
  if not ok then
    print("FAIL " .. tostring(blocks))
    parse_failed = parse_failed + 1
  else
    for _, b in ipairs(blocks) do all[#all + 1] = b end
  end
end

local function selected(b)
  if not ONLY then return true end
  local f, l = ONLY:match("^(.*):(%d+)$")
  if not f then return b.file == ONLY end
  l = tonumber(l)
  return b.file == f and b.line <= l and l <= b.last
end

for _, b in ipairs(all) do
  local where = ("%s:%d"):format(b.file, b.line)
  if not selected(b) then
    -- not asked for
  elseif list_only then
    local d = {}
    for k, v in pairs(b.directives) do d[#d + 1] = v == true and k or (k .. ": " .. v) end
    table.sort(d)
    print(("%s  %d lines%s%s"):format(where, #b.code, b.expect and ", output checked" or "",
      #d > 0 and ("  [" .. table.concat(d, "; ") .. "]") or ""))
  elseif b.directives.skip then
    skipped = skipped + 1
    print(("SKIP %s: %s"):format(where, b.directives.skip))
  else
    local want_rc = tonumber(b.directives.exit or "0")
    local times = b.directives.twice and 2 or 1
    local want = expected_of(chain(b))
    local problem, rc, out, err, secs
    for run = 1, times do
      rc, out, err, secs = run_block(b)
      local label = times > 1 and (" (run %d of %d)"):format(run, times) or ""
      if rc == 124 or rc == 137 then
        problem = ("did not end within %d s%s"):format(TIMEOUT, label)
      elseif rc ~= want_rc then
        problem = ("exit status %d, expected %d%s"):format(rc, want_rc, label)
      elseif want and not matches(split_lines(out), want) then
        problem = "output differs" .. label .. ":\n    expected:\n" .. indent(table.concat(want, "\n"), "      | ")
      end
      if problem then break end
    end
    ran = ran + 1
    if problem then
      failed = failed + 1
      print(("FAIL %s: %s"):format(where, problem))
      print("    stdout:\n" .. indent(out, "      | "))
      print("    stderr:\n" .. indent(err, "      | "))
    else
      print(("ok   %s (%.1f s)"):format(where, secs))
    end
  end
  io.stdout:flush()
end

for _, f in pairs(fakes) do f:stop() end
os.execute("rm -rf " .. shell_quote(tmp))

if list_only then os.exit(parse_failed > 0 and 1 or 0) end
if ONLY and ran + skipped == 0 then
  print(("FAIL DOCTEST_ONLY=%s: no block there"):format(ONLY))
  failed = failed + 1
end
print(("%d blocks run, %d failed, %d skipped%s"):format(ran, failed, skipped,
  parse_failed > 0 and (", %d files could not be read"):format(parse_failed) or ""))
os.exit((failed > 0 or parse_failed > 0) and 1 or 0)
