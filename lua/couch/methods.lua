-- One check for every public method of every couch type: called with a dot instead of a
-- colon (`srv.info()`, `db.get("a")`), a method would fail deep inside with "attempt to
-- index a nil value"; instead it raises a `usage` error that says what to write.
local M = {}
local I = require "couch.internal" -- the module's private channel (src/module.c)

--- guard(couch, methods, var, is_instance): wraps each public function of `methods`
-- (names not starting with "_") so that its first argument must satisfy is_instance.
-- `var` is the conventional variable name used in the message ("srv", "db", ...).
function M.guard(couch, methods, var, is_instance)
  for name, f in pairs(methods) do
    if type(f) == "function" and not name:match("^_") then
      methods[name] = function(self, ...)
        if not is_instance(self) then
          I.raise("usage", ("%s.%s(...) was called without its object: write %s:%s(...)")
            :format(var, name, var, name), { argument = "self" })
        end
        return f(self, ...)
      end
    end
  end
end

--- is_a(class) -> a predicate for tables whose metatable is class
function M.is_a(class) return function(x) return getmetatable(x) == class end end

return M
