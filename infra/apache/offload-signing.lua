-- offload: signed links on the Apache side, a mod_lua quick handler that
-- offload.conf installs when OFFLOAD_SIGNING_LUA is defined (see there).
--
-- It makes signing.go's decision (offload.VerifyLink) on the request target
-- as the browser sent it: HMAC-SHA256 over "offload-link-v1\n<rel>\n<exp>",
-- rel the path below /static/ decoded segment by segment as
-- Mapping.KeyForURL decodes it, exp the query's Unix time written back as a
-- decimal integer, sig the query's hex, compared in constant time; expired
-- once the server's clock is past exp. mod_lua has no SHA-256 (r:sha1 and
-- r:md5 only: https://httpd.apache.org/docs/2.4/mod/mod_lua.html), and
-- Apache's expressions have no HMAC, so SHA-256 (FIPS 180-4) and HMAC
-- (RFC 2104) are written out below in Lua 5.3, which Debian's mod_lua
-- embeds; TestWebServerSignedLinks checks them against Go's on hostile
-- names. The key is OFFLOAD_SIGNING_KEY in Apache's environment.

local MIN_KEY_BYTES = 16 -- offload.MinSigningKeyBytes

-- MAX_NAME_BYTES is offload.MaxKeyBytes: S3's keys are at most 1,024
-- bytes and the name is part of its key, so Go signs no longer name, and
-- refusing one before hashing changes no verdict; it bounds what a
-- stranger's long path costs this Lua SHA-256 (a 7,900-byte path took
-- 6.8 ms). A name is at least a third of its spelling in the path (each
-- byte one character or "%XX"), so a longer spelling is refused before it
-- is even decoded.
local MAX_NAME_BYTES = 1024

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
local M32 = 0xffffffff

local function rrot(x, n)
  return ((x >> n) | (x << (32 - n))) & M32
end

-- sha256 returns the 32-byte digest of msg.
local function sha256(msg)
  local h = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
  local len = #msg
  msg = msg .. "\128" .. string.rep("\0", (55 - len) % 64) .. string.pack(">I8", len * 8)
  local w = {}
  for i = 1, #msg, 64 do
    for j = 1, 16 do
      w[j] = string.unpack(">I4", msg, i + (j - 1) * 4)
    end
    for j = 17, 64 do
      local x, y = w[j - 15], w[j - 2]
      local s0 = rrot(x, 7) ~ rrot(x, 18) ~ (x >> 3)
      local s1 = rrot(y, 17) ~ rrot(y, 19) ~ (y >> 10)
      w[j] = (w[j - 16] + s0 + w[j - 7] + s1) & M32
    end
    local a, b, c, d, e, f, g, hh = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]
    for j = 1, 64 do
      local t1 = (hh + (rrot(e, 6) ~ rrot(e, 11) ~ rrot(e, 25)) + ((e & f) ~ (~e & g)) + K[j] + w[j]) & M32
      local t2 = ((rrot(a, 2) ~ rrot(a, 13) ~ rrot(a, 22)) + ((a & b) ~ (a & c) ~ (b & c))) & M32
      hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & M32, c, b, a, (t1 + t2) & M32
    end
    h[1], h[2], h[3], h[4] = (h[1] + a) & M32, (h[2] + b) & M32, (h[3] + c) & M32, (h[4] + d) & M32
    h[5], h[6], h[7], h[8] = (h[5] + e) & M32, (h[6] + f) & M32, (h[7] + g) & M32, (h[8] + hh) & M32
  end
  return string.pack(">I4I4I4I4I4I4I4I4", table.unpack(h))
end

-- hmac_sha256 returns HMAC-SHA256(key, msg) in lower-case hex.
local function hmac_sha256(key, msg)
  if #key > 64 then key = sha256(key) end
  key = key .. string.rep("\0", 64 - #key)
  local ipad = key:gsub(".", function(ch) return string.char(ch:byte() ~ 0x36) end)
  local opad = key:gsub(".", function(ch) return string.char(ch:byte() ~ 0x5c) end)
  local mac = sha256(opad .. sha256(ipad .. msg))
  return (mac:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

-- same_hex compares mac (64 lower-case hex digits) with sig without
-- stopping at the first difference (hmac.Equal); hex.DecodeString takes
-- either case.
local function same_hex(mac, sig)
  if #sig ~= 64 or sig:find("[^0-9a-fA-F]") then return false end
  sig = sig:lower()
  local diff = 0
  for i = 1, 64 do
    diff = diff | (mac:byte(i) ~ sig:byte(i))
  end
  return diff == 0
end

-- unescape is url.PathUnescape (plus: url.QueryUnescape, "+" a space):
-- nil when a "%" is not followed by two hex digits.
local function unescape(s, plus)
  if plus then s = s:gsub("%+", " ") end
  if s:gsub("%%%x%x", ""):find("%", 1, true) then return nil end
  return (s:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

-- link_rel is Mapping.KeyForURL's decoding of the raw path: nil for a bad
-- escape, an encoded "/", or an empty, "." or ".." segment, which the
-- mapping refuses too. A path it accepts is the one Apache serves, so the
-- file served is the file signed.
local function link_rel(rest)
  local segs = {}
  for seg in (rest .. "/"):gmatch("([^/]*)/") do
    local d = unescape(seg)
    if not d or d == "" or d == "." or d == ".." or d:find("/", 1, true) then return nil end
    segs[#segs + 1] = d
  end
  return table.concat(segs, "/")
end

-- link_query is url.ParseQuery's first exp and sig: pairs split on "&",
-- one with a ";" or a bad escape skipped.
local function link_query(q)
  local v = {}
  for part in ((q or "") .. "&"):gmatch("([^&]*)&") do
    if part ~= "" and not part:find(";", 1, true) then
      local k, val = part:match("^([^=]*)=(.*)$")
      if not k then k, val = part, "" end
      k, val = unescape(k, true), unescape(val, true)
      if k and val and v[k] == nil then v[k] = val end
    end
  end
  return v.exp, v.sig
end

-- link_exp is strconv.ParseInt(exp, 10, 64) written back with %d, which
-- is what the MAC covers ("+01" is 1), and its value; nil when it is no
-- int64.
local function link_exp(exp)
  local sign, digits = (exp or ""):match("^([+-]?)(%d+)$")
  if not digits then return nil end
  digits = digits:gsub("^0+", "")
  if digits == "" then return "0", 0 end
  local max = sign == "-" and "9223372036854775808" or "9223372036854775807"
  if #digits > 19 or (#digits == 19 and digits > max) then return nil end
  local s = (sign == "-" and "-" or "") .. digits
  return s, math.tointeger(tonumber(s)) or tonumber(s)
end

-- offload_signed_link runs first for every request of the virtual host,
-- before Apache decodes or cleans the path and before mod_rewrite: a target
-- under /static/ without a valid, unexpired link is answered 403 here,
-- where no <Location> applies yet, so /static/'s ErrorDocument (the
-- redirect) does not turn it into a 302. Anything else goes on as before.
-- A target that reaches /static/ only once Apache cleans it
-- ("/%73tatic/", "//static/") gets offload.conf's 400.
function offload_signed_link(r)
  local target = r.unparsed_uri or ""
  local path, query = target:gsub("^%a[%w+.-]*://[^/]*", "", 1):match("^([^?]*)%??(.*)$")
  local rest = path and path:match("^/static/(.*)$")
  if not rest then return apache2.DECLINED end
  local key = os.getenv("OFFLOAD_SIGNING_KEY")
  if not key or #key < MIN_KEY_BYTES then
    r:err("offload-signing.lua: OFFLOAD_SIGNING_KEY is not in Apache's environment or shorter than 16 bytes; every /static/ request is refused")
    return 403
  end
  if #rest > 3 * MAX_NAME_BYTES then return 403 end
  local rel = link_rel(rest)
  if rel and #rel > MAX_NAME_BYTES then return 403 end
  local exp, sig = link_query(query)
  local e, n = link_exp(exp)
  if not rel or not e or not sig or not same_hex(hmac_sha256(key, "offload-link-v1\n" .. rel .. "\n" .. e), sig) then
    return 403
  end
  if os.time() > n then return 403 end
  return apache2.DECLINED
end
