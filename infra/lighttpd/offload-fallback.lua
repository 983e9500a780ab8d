-- offload: serve /static/NAME from disk while the file is there; once the
-- agent has moved it to S3, send the browser to the resolver, which answers
-- with a presigned URL. lighttpd 1.4.6x mod_magnet, lighty.r / lighty.c API.
--
-- Only a stat and a header: no blocking I/O in the server's event loop.
-- RESOLVER_BASE (e.g. https://abc.lambda-url.eu-west-1.on.aws) comes from
-- the configuration through setenv (see offload.conf), never from here.

local r = lighty.r
local path = r.req_attr["physical.path"]
if path and lighty.c.stat(path) then
  return 0 -- the file is still local: lighttpd serves it as usual
end

local base = r.req_env["RESOLVER_BASE"]
if not base or base == "" then
  print("offload-fallback.lua: RESOLVER_BASE is not set; see offload.conf")
  return 500
end
-- The original URI, percent-encoding and query as the browser sent them:
-- the resolver applies the naming contract to exactly these bytes.
r.resp_header["Location"] = base .. r.req_attr["request.orig-uri"]
return 302
