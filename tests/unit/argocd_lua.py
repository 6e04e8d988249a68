"""Argo CD's Lua sandbox for resource health scripts, rebuilt on lupa (PUC Lua 5.1).

Argo CD runs a health script from argocd-cm in gopher-lua (a Lua 5.1 in Go) with far less than a
stock Lua: no `string`, no `math`, and strings without methods. A harness that keeps them passes
scripts that crash in Argo CD (issue 15: `string.find` in the Degraded branches). This module
builds a lupa state holding exactly what Argo CD gives a script, and returns what Argo CD makes
of the script's result.

What Argo CD opens, read from the sources (argoproj/argo-cd at 37ee0097, which pins
github.com/yuin/gopher-lua v1.1.2 in go.mod:100; gopher-lua at v1.1.2 = b87eac29):

argo-cd util/lua/lua.go
  :101-119  GetResourceHealth: useOpenLibs comes from the override found for the resource,
            i.e. argocd-cm `resource.customizations.useOpenLibs.<group>_<kind>` (parsed in
            util/settings/settings.go:1201 with strconv.ParseBool; default false)
  :133-135  lua.NewState(lua.Options{SkipOpenLibs: !vm.UseOpenLibs}): without useOpenLibs
            gopher-lua opens no library at all (gopher-lua state.go:1430)
  :137-155  then, always: lua.OpenPackage (`package`), lua.OpenBase (base functions),
            lua.OpenTable (`table`), OpenSafeOs. OpenSafeOs (util/lua/oslib_safe.go:16-20)
            calls l.RegisterModule(lua.TabLibName, osFuncs), i.e. under the name "table";
            RegisterModule (gopher-lua auxlib.go:289-305) returns the module already loaded
            under that name without touching it, so it adds nothing: there is no `os` global
  :157      l.PreloadModule("os", SafeOsLoader): `require("os")` returns {time, date}. With
            useOpenLibs, OpenLibs runs first and the loop then opens package again, whose
            fresh package.loaded (gopher-lua loadlib.go:61-63) holds only _G and table: the
            globals `os`, `string`, ... stay, but require("os") is still the safe one
  :159      a 1 s timeout (not reproduced here)
  :164-172  globals `actionParams` (an empty table for health) and `obj` (decodeValue
            :682-715: JSON numbers become Lua numbers, null becomes nil, arrays 1-based)
  :213-246  ExecuteHealthLua: the value on top of the stack after the call (the script's
            last return value) must be a table; it is JSON-encoded and decoded into
            HealthStatus{status, message}; an empty table (encoded as an array), a status or
            message that is no string (any UnmarshalTypeError, :226-231) and nil all give {};
            a status that is not one of the six codes becomes Unknown "Lua returned an invalid
            health status"
  :250-286  GetHealthScript: argocd-cm overrides keep their useOpenLibs; only the scripts built
            into Argo CD (resource_customizations/) always get open libraries (:276, :285)
argo-cd util/lua/lua_test.go:992-1001: a script calling string.find without useOpenLibs fails
  with "attempt to index a non-table object(nil) with key 'find'"
argo-cd util/lua/health_test.go:50-59: the built-in scripts' health_test.yaml cases run with
  UseOpenLibs: true and compare the whole HealthStatus with assert.Equal

gopher-lua v1.1.2
  linit.go:31-42        the full set OpenLibs would open: package, base, table, io, os,
                        string, math, debug, channel, coroutine
  baselib.go:14-56      OpenBase: _G, _VERSION, _GOPHER_LUA_VERSION, ipairs, pairs and
                        baseFuncs (assert collectgarbage dofile error getfenv getmetatable load
                        loadfile loadstring next pcall print rawequal rawget rawset select
                        _printregs setfenv setmetatable tonumber tostring type unpack xpcall
                        module require newproxy); no gcinfo
  loadlib.go:49-78,110  OpenPackage: package.{loadlib, seeall, preload, loaders (preload, Lua
                        file), loaded, path, cpath = "", config}; loadlib always raises
  tablelib.go:7-20      table.{getn, concat, insert, maxn, remove, sort}: no foreach,
                        foreachi, setn
  stringlib.go:12-24    only OpenString sets the string metatable (builtinMts[LTString], its
                        __index the string module): without it `("x"):find(...)` fails and
                        getmetatable("") is nil
  mathlib.go, oslib.go, iolib.go, debuglib.go, coroutinelib.go: the functions listed in
                        GOPHER_LIBS below (used when useOpenLibs is true)

Left out: the 1 s timeout; gopher-lua's number-to-string of non-integers (Go's %v, e.g.
0.1+0.2 gives 0.30000000000000004 where PUC Lua gives 0.3: integers print the same); the
`channel` library (gopher-lua only; open libraries only).
"""

from __future__ import annotations

import json
from typing import Any

import lupa.lua51 as lupa

#: globals of Argo CD's health sandbox without useOpenLibs (besides `obj` and `actionParams`)
BASE = frozenset({
    "_G", "_VERSION", "_GOPHER_LUA_VERSION", "ipairs", "pairs", "assert", "collectgarbage", "dofile", "error",
    "getfenv", "getmetatable", "load", "loadfile", "loadstring", "next", "pcall", "print", "rawequal", "rawget",
    "rawset", "select", "_printregs", "setfenv", "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall",
    "module", "require", "newproxy",
})
SANDBOX_GLOBALS = BASE | {"package", "table"}
TABLE = frozenset({"getn", "concat", "insert", "maxn", "remove", "sort"})
PACKAGE = frozenset({"loadlib", "seeall", "preload", "loaders", "loaded", "path", "cpath", "config"})
#: libraries gopher-lua's OpenLibs adds (useOpenLibs true), with their functions
GOPHER_LIBS = {
    "string": frozenset({"byte", "char", "dump", "find", "format", "gsub", "len", "lower", "match", "rep", "reverse",
                         "sub", "upper", "gmatch", "gfind"}),
    "math": frozenset({"abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh", "deg", "exp", "floor", "fmod",
                       "frexp", "ldexp", "log", "log10", "max", "min", "mod", "modf", "pow", "rad", "random",
                       "randomseed", "sin", "sinh", "sqrt", "tan", "tanh", "pi", "huge"}),
    "os": frozenset({"clock", "difftime", "execute", "exit", "date", "getenv", "remove", "rename", "setenv",
                     "setlocale", "time", "tmpname"}),
    "io": frozenset({"close", "flush", "lines", "input", "output", "open", "popen", "read", "type", "tmpfile", "write",
                     "stdin", "stdout", "stderr"}),
    "debug": frozenset({"getfenv", "getinfo", "getlocal", "getmetatable", "getupvalue", "setfenv", "setlocal",
                        "setmetatable", "setupvalue", "traceback"}),
    "coroutine": frozenset({"create", "yield", "resume", "running", "status", "wrap"}),
}
STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
INVALID = "Lua returned an invalid health status"

_SETUP = r"""
local open_libs, keep, table_funcs, package_funcs, libs = ...
local dbg, os_time, os_date = debug, os.time, os.date
-- strings have methods only when the string library is opened (gopher-lua stringlib.go:21)
if not open_libs then dbg.setmetatable("", nil) end
for name in pairs(_G) do
  if not keep[name] then _G[name] = nil end
end
for name in pairs(table) do
  if not table_funcs[name] then table[name] = nil end
end
if open_libs then
  for lib, funcs in pairs(libs) do
    for name in pairs(_G[lib]) do
      if not funcs[name] then _G[lib][name] = nil end
    end
  end
end
for name in pairs(package) do
  if not package_funcs[name] then package[name] = nil end
end
package.loadlib = function() error("loadlib is not supported", 2) end
package.cpath = ""
package.loaders = {package.loaders[1], package.loaders[2]}  -- preload, Lua file (no C loaders)
-- argo-cd opens package again after OpenLibs: a fresh package.loaded holding _G and table only,
-- so even with useOpenLibs require("os") is the safe os
for name in pairs(package.loaded) do
  if name ~= "_G" and name ~= "table" then package.loaded[name] = nil end
end
package.preload.os = function() return {time = os_time, date = os_date} end  -- argo-cd oslib_safe.go:22-31
_GOPHER_LUA_VERSION = "GopherLua 0.1"
_printregs = function() end
"""


def _set(lua: Any, names: Any) -> Any:
    return lua.table_from({n: True for n in names})


def sandbox(open_libs: bool = False) -> Any:
    """A lupa runtime holding what Argo CD gives a health script (see the module docstring)."""
    lua = lupa.LuaRuntime(register_eval=False, register_builtins=False)
    keep = set(SANDBOX_GLOBALS) | (set(GOPHER_LIBS) if open_libs else set())
    libs = lua.table_from({k: _set(lua, v) for k, v in GOPHER_LIBS.items()})
    lua.execute(_SETUP, open_libs, _set(lua, keep), _set(lua, TABLE), _set(lua, PACKAGE), libs)
    return lua


def lua_value(lua: Any, v: Any) -> Any:
    """argo-cd util/lua/lua.go decodeValue: objects and arrays become tables, null becomes nil."""
    if isinstance(v, dict):
        return lua.table_from({k: lua_value(lua, x) for k, x in v.items() if x is not None})
    if isinstance(v, list):
        return lua.table_from([lua_value(lua, x) for x in v])
    return v


def execute_health(script: str, obj: dict[str, Any], open_libs: bool = False) -> dict[str, str]:
    """Run `script` on `obj` as Argo CD's ExecuteHealthLua does; return HealthStatus as JSON
    ({} or {"status": ..., "message": ...}, empty fields omitted like Go's omitempty).

    A Lua error raises lupa.LuaError (Argo CD reports the resource's health as an error)."""
    lua = sandbox(open_libs)
    g = lua.globals()
    g.actionParams = lua.table_from({})
    g.obj = lua_value(lua, obj)
    results = lua.execute(script)
    if isinstance(results, tuple):  # several return values: Argo CD reads the top of the stack
        results = results[-1] if results else None
    if results is None:
        return {}
    kind = lupa.lua_type(results) or {bool: "boolean", str: "string", bytes: "string"}.get(type(results), "number")
    if kind != "table":
        raise TypeError(f"expect table output from Lua script, not {kind}")
    fields = dict(results.items())
    if not fields or all(isinstance(k, (int, float)) for k in fields):
        return {}  # gopher-json encodes it as an array: Argo CD answers an empty HealthStatus
    hs = json.loads(json.dumps({k: fields[k] for k in ("status", "message") if k in fields}))
    if not all(isinstance(v, str) for v in hs.values()):
        return {}  # json.Unmarshal's UnmarshalTypeError: errors.As matches any one, :226-231
    if hs.get("status") not in STATUSES:
        return {"status": "Unknown", "message": INVALID}
    return {k: v for k, v in hs.items() if v}
