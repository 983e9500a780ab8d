-- offload: the second half of offload-fallback.lua, run when lighttpd is
-- about to send its response (magnet.attract-response-start-to). lighttpd
-- 1.4.6x mod_magnet, lighty.r API.
--
-- offload-fallback.lua stats the file (in the document root or the hot
-- cache) and lighttpd opens it later; the agent may move the file away, or
-- evict its cached copy, in between, and lighttpd then answers 404. Such a
-- 404 under /static/ becomes the same 302 to the resolver that the first
-- script sends for a file that is already gone. offload.conf does not attach
-- this script to the claim folder, which keeps its 403.
--
-- Only a status check, a header and an emptied body: no I/O at all.

local r = lighty.r
if r.req_item.http_status ~= 404 then
  return 0 -- anything else goes out as lighttpd made it
end

local base = r.req_env["RESOLVER_BASE"]
if not base or base == "" then
  return 0 -- offload-fallback.lua already answered 500 and logged why
end
-- lighttpd has already written its 404 page: drop it and its type.
r.resp_body.set("")
r.resp_header["Content-Type"] = ""
r.resp_header["Location"] = base .. r.req_attr["request.orig-uri"]
return 302
