-- offload: serve /static/NAME from disk while the file is there, else from
-- the hot cache (the agent's --cache folder) if it holds a copy; once
-- neither has it, send the browser to the resolver, which answers with a
-- presigned URL. lighttpd 1.4.6x mod_magnet, lighty.r / lighty.c API.
--
-- Only stats and a header: no blocking I/O in the server's event loop.
-- RESOLVER_BASE (e.g. https://abc.lambda-url.eu-west-1.on.aws) and
-- CACHE_ROOT (e.g. /var/cache/offload) come from the configuration through
-- setenv (see offload.conf), never from here.

local r = lighty.r
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
