-- couch.compare(a, b): did my migration work? Every leaf revision of every document
-- (conflicts and deletions included) on each side is checked against the other with
-- _revs_diff, one _changes page at a time, so memory stays flat however big the databases.
local I = require "couch.internal" -- the module's private channel (src/module.c)

return function(couch)
  local json = couch.json

  local LIMIT = 1000 -- ids listed in the report; the counts are always complete

  -- Leaf revisions of `from` that `to` lacks: {id = {revs}}, count, checked.
  local function missing_in(from, to, page)
    local out, count, checked, listed = {}, 0, 0, 0
    local since = 0
    while true do
      local res = from:changes { style = "all_docs", since = since, limit = page }
      if #res.results == 0 then break end
      local revs = json.object {}
      for _, ch in ipairs(res.results) do
        local l = json.array {}
        for _, c in ipairs(ch.changes) do l[#l + 1] = c.rev end
        revs[ch.id] = l
        checked = checked + #l
      end
      for id, d in pairs(to:revs_diff(revs)) do
        if d.missing and #d.missing > 0 then
          count = count + #d.missing
          if listed < LIMIT then out[id] = d.missing; listed = listed + 1 end
        end
      end
      since = res.results[#res.results].seq
      if #res.results < page then break end
    end
    return out, count, checked
  end

  local Report = {}
  Report.__index = Report
  Report.__name = "couch.compare_report"
  function Report:__tostring()
    if self.equal then
      return ("%s and %s hold the same %d revisions"):format(self.a, self.b, self.checked_a)
    end
    local lines = { ("%s vs %s: %d revisions missing from the second, %d extra in it"):format(
      self.a, self.b, self.missing_count, self.extra_count) }
    local n = 0
    for id, revs in pairs(self.missing) do
      n = n + 1
      if n > 10 then lines[#lines + 1] = "  ..."; break end
      lines[#lines + 1] = ("  missing %s %s"):format(id, table.concat(revs, ","))
    end
    n = 0
    for id, revs in pairs(self.extra) do
      n = n + 1
      if n > 10 then lines[#lines + 1] = "  ..."; break end
      lines[#lines + 1] = ("  extra   %s %s"):format(id, table.concat(revs, ","))
    end
    return table.concat(lines, "\n")
  end

  --- couch.compare(a, b [, {page = 1000}]) -> report {equal, missing, extra, missing_count,
  -- extra_count, checked_a, checked_b}; tostring(report) is a printable summary
  function couch.compare(a, b, opts)
    if getmetatable(a) ~= I.Database then I.raise("usage", "bad argument 'a': expected a database object", { argument = "a" }) end
    if getmetatable(b) ~= I.Database then I.raise("usage", "bad argument 'b': expected a database object", { argument = "b" }) end
    local page = opts and opts.page or 1000
    local missing, mc, ca = missing_in(a, b, page)
    local extra, ec, cb = missing_in(b, a, page)
    return setmetatable({
      a = a.name, b = b.name, missing = missing, extra = extra, missing_count = mc, extra_count = ec,
      checked_a = ca, checked_b = cb, equal = mc == 0 and ec == 0,
    }, Report)
  end
end
