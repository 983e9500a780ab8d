-- offload: serve /static/NAME from disk while the file is there, else from
-- the hot cache (the agent's --cache-dir folder) if it holds a copy; once
-- neither has it, send the browser to the resolver, which answers with a
-- presigned URL. lighttpd 1.4.6x mod_magnet, lighty.r / lighty.c API.
--
-- Only stats and a header: no blocking I/O in the server's event loop.
-- RESOLVER_BASE (e.g. https://abc.lambda-url.eu-west-1.on.aws) and
-- CACHE_ROOT (e.g. /var/cache/offload) come from the configuration through
-- setenv (see offload.conf), never from here.

-- Signed links: the scheme of signing.go (offload.VerifyLink), the same
-- decisions. The MAC is HMAC-SHA256 over "offload-link-v1\n<rel>\n<exp>",
-- rel the path below /static/ decoded segment by segment as
-- Mapping.KeyForURL decodes it, exp the query's Unix time as a decimal
-- integer; sig its hex. lighty.c.hmac(algo, secret, data) gives the MAC in
-- upper-case hex, lighty.c.digest_eq(d1, d2) compares two hex digests in
-- constant time whatever their case, lighty.c.time() is the server's clock
-- in seconds (https://redmine.lighttpd.net/projects/lighttpd/wiki/Docs_ModMagnet,
-- "lighty.c.* library functions"; all in 1.4.69's mod_magnet).

-- unescape is url.PathUnescape (plus = true: url.QueryUnescape, "+" is a
-- space): nil when a "%" is not followed by two hex digits.
local function unescape(s, plus)
  if plus then s = s:gsub("%+", " ") end
  if s:gsub("%%%x%x", ""):find("%", 1, true) then return nil end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- link_rel is Mapping.KeyForURL's decoding of the path as the browser sent
-- it (request.orig-uri, before lighttpd cleans it): nil for a path outside
-- /static/, a bad escape, an encoded "/", or an empty, "." or ".." segment,
-- which the mapping refuses too. A path it accepts is the one lighttpd
-- serves, so the file served is the file signed.
local function link_rel(uri)
  local path = uri:gsub("^%a[%w+.-]*://[^/]*", "", 1):match("^[^?]*")
  local rest = path:match("^/static/(.*)$")
  if not rest then return nil end
  local segs = {}
  for seg in (rest .. "/"):gmatch("([^/]*)/") do
    local d = unescape(seg)
    if not d or d == "" or d == "." or d == ".." or d:find("/", 1, true) then return nil end
    segs[#segs + 1] = d
  end
  return table.concat(segs, "/")
end

-- link_query is url.ParseQuery's first "exp" and "sig": pairs split on
-- "&", one with a ";" or a bad escape skipped.
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

-- link_exp is strconv.ParseInt(exp, 10, 64) formatted back with %d (the
-- MAC covers that form: "+01" is 1): nil when it is no int64.
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

-- signed_link_ok says whether the request carries a valid, unexpired link
-- for its path, and if not, why, when the operator should hear it.
local function signed_link_ok(r)
  local key = os.getenv("OFFLOAD_SIGNING_KEY")
  if not key or #key < 16 then
    return false, "OFFLOAD_SIGNING_KEY is not set or shorter than 16 bytes; every /static/ request is refused"
  end
  -- lighttpd cuts the target at the first "#" (a fragment, which no
  -- browser sends) and serves the path before it; orig-uri keeps the "#".
  -- Judge what lighttpd serves: "/static/a.jpg#b?exp=..&sig=.." is
  -- "/static/a.jpg" with no link, not the link of the file "a.jpg#b"
  -- (TestWebServerSignedLinkFragment).
  local uri = (r.req_attr["request.orig-uri"] or ""):match("^[^#]*")
  local rel = link_rel(uri)
  local exp, sig = link_query(uri:match("%?(.*)$"))
  local e, n = link_exp(exp)
  if not rel or not e or not sig or #sig ~= 64 then return false end
  local mac = lighty.c.hmac("sha256", key, "offload-link-v1\n" .. rel .. "\n" .. e)
  if not lighty.c.digest_eq(mac, sig) then return false end
  return lighty.c.time() <= n
end

local r = lighty.r

-- Signed links (offload-signing.conf included): nothing under /static/ --
-- the file, the cache's copy or the redirect -- without a valid link. On
-- whenever the key is in lighttpd's environment, which
-- offload-signing.conf makes lighttpd demand at start: its
-- OFFLOAD_SIGNED_LINKS alone is not enough, since a site's own
-- setenv.add-environment in a later matching conditional replaces it
-- (TestLighttpdSignedLinksWithTheSitesOwnSetenv).
local signing_key = os.getenv("OFFLOAD_SIGNING_KEY")
if r.req_env["OFFLOAD_SIGNED_LINKS"] == "on" or (signing_key and signing_key ~= "") then
  local ok, why = signed_link_ok(r)
  if not ok then
    if why then print("offload-fallback.lua: " .. why) end
    return 403
  end
end

local path = r.req_attr["physical.path"]
if path and lighty.c.stat(path) then
  return 0 -- the file is still local: lighttpd serves it as usual
end

local base, cache = r.req_env["RESOLVER_BASE"], r.req_env["CACHE_ROOT"]
if not base or base == "" or not cache or cache == "" then
  print("offload-fallback.lua: RESOLVER_BASE or CACHE_ROOT is not set; see offload.conf")
  return 500
end

-- The cache is laid out like the document root: /static/NAME is
-- CACHE_ROOT/static/NAME. rel-path is the URL path lighttpd decoded and
-- cleaned of "." and ".." segments, and offload.conf runs this script only
-- under /static/, so the agent's CACHE_ROOT/.offload-fetch (half-written
-- downloads) is out of reach. Only a regular file is served from it.
local cached = cache .. r.req_attr["physical.rel-path"]
local st = lighty.c.stat(cached)
if st and st.is_file then
  -- lighttpd stats and opens physical.path after this script; basedir is
  -- where it starts looking for PATH_INFO, so it must be the cache too. A
  -- copy the agent evicts in between is a 404, which
  -- offload-fallback-404.lua turns into the 302.
  r.req_attr["physical.basedir"] = cache
  r.req_attr["physical.path"] = cached
  return 0
end

-- The original URI, percent-encoding and query as the browser sent them:
-- the resolver applies the naming contract to exactly these bytes.
r.resp_header["Location"] = base .. r.req_attr["request.orig-uri"]
return 302
