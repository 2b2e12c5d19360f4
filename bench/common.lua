-- bench/common.lua: small helpers shared by the benchmarks (process figures from /proc,
-- statistics, formatting). Figures are printed, never asserted.
local M = {}

M.CLK_TCK = tonumber(os.getenv("BENCH_CLK_TCK")) or 100 -- `getconf CLK_TCK`, passed by bench/run

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.read_file = read_file

--- A field of /proc/<pid>/status in kB (VmRSS, VmHWM, ...); nil when unreadable.
function M.status_kb(field, pid)
  local s = read_file(("/proc/%s/status"):format(pid or "self"))
  return s and tonumber(s:match(field .. ":%s*(%d+)%s*kB"))
end

--- utime + stime of a process, in seconds (user, system, total); nil when unreadable.
function M.cpu_seconds(pid)
  local s = read_file(("/proc/%s/stat"):format(pid or "self"))
  if not s then return nil end
  -- the fields after the command name, which sits in parentheses and may hold spaces
  local rest = s:match("%)%s+(.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  -- rest starts at field 3 (state): utime is field 14, stime field 15
  local ut, st = tonumber(f[12]), tonumber(f[13])
  return ut / M.CLK_TCK, st / M.CLK_TCK, (ut + st) / M.CLK_TCK
end

--- Open file descriptors of this process (sockets included).
function M.open_fds()
  local p = io.popen("ls /proc/" .. M.pid() .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

--- Our own pid (the parent of the shell io.popen starts).
local my_pid
function M.pid()
  if not my_pid then
    local s = read_file("/proc/self/stat")
    my_pid = s and s:match("^(%d+)")
  end
  return my_pid
end

--- Sorted copy and order statistics of a list of numbers.
function M.stats(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  local n = #t
  if n == 0 then return { n = 0 } end
  local function q(p) return t[math.max(1, math.min(n, math.ceil(p * n)))] end
  local sum = 0
  for _, v in ipairs(t) do sum = sum + v end
  return { n = n, min = t[1], median = q(0.5), p90 = q(0.9), p99 = q(0.99), max = t[n], mean = sum / n }
end

function M.mb(kb) return kb and ("%.1f MB"):format(kb / 1024) or "n/a" end
function M.ms(s) return s and ("%.1f ms"):format(s * 1000) or "n/a" end

--- Thousands separators: 12345.6 -> "12,346"
function M.int(x)
  if not x then return "n/a" end
  local s = ("%d"):format(math.floor(x + 0.5))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""):gsub("^%-,", "-"))
end

function M.url()
  local u = os.getenv("BENCH_URL") or os.getenv("COUCH_URL") or os.getenv("COUCHLUA_TEST_URL")
  if not u or u == "" then
    io.stderr:write("bench: set BENCH_URL (or COUCH_URL) to the server's URL, or use bench/run\n")
    os.exit(2)
  end
  return (u:gsub("/+$", ""))
end

function M.redact(u) return (u:gsub("^([%a][%w+.-]*://)[^/@]*@", "%1***@")) end

--- A database name of our own, so a real server's data is never touched.
function M.dbname(prefix)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  return ("couchlua_bench_%s_%d_%04d"):format(prefix, os.time(), math.random(0, 9999))
end

function M.out(fmt, ...)
  io.stdout:write(fmt:format(...), "\n")
  io.stdout:flush()
end

return M
