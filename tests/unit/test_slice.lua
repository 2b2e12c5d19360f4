-- The engine's slicer (internal.slice_docs): documents cut out of a _bulk_get answer as the
-- exact bytes the source sent, with their id and rev read as couch.json reads them.
local lu = require "luaunit"
local couch = require "couch"
local internal = require "couch.internal"
local json = couch.json

TestSlice = {}

local function answer(doc_text)
  return '{"results":[{"id":"x","docs":[{"ok":' .. doc_text .. '}]}]}'
end

function TestSlice:test_exact_bytes_id_and_rev()
  local doc = '{"_id":"a\\u00e9","_rev":"1-abc","n":1.50,"big":12345678901234567890}'
  local list = internal.slice_docs(answer(doc))
  lu.assertEquals(#list, 1)
  lu.assertEquals(list[1].json, doc)
  lu.assertEquals(list[1].id, "a\u{e9}")
  lu.assertEquals(list[1].rev, "1-abc")
end

-- A lone surrogate in an id: the same bytes as couch.json's decoder gives (WTF-8), not
-- U+FFFD or a byte yajl made up; and yajl never sees the escape (CVE-2017-16516).
function TestSlice:test_lone_surrogate_ids_read_as_the_decoder_reads_them()
  for _, id in ipairs { "\\ud800", "a\\udc00b", "\\ud800\\u0041", "\\ud83d\\ude00" } do
    local doc = '{"_id":"' .. id .. '","_rev":"1-abc"}'
    local list = internal.slice_docs(answer(doc))
    lu.assertEquals(list[1].json, doc)
    lu.assertEquals(list[1].id, json.decode(doc)._id, id)
  end
end

-- What couch.json refuses, the slicer refuses too: nil and why.
function TestSlice:test_text_that_is_not_json()
  for _, bad in ipairs { "", "<html>", answer('{"_id":"\192\128"}'), answer('{"_id":"a"}') .. "junk",
                         answer('{"_id":"\12"}') } do
    local list, why = internal.slice_docs(bad)
    lu.assertNil(list, bad)
    lu.assertStrContains(why, "not valid JSON")
  end
end

os.exit(lu.LuaUnit.run())
