-- wrk script: HTTP/1.1 pipelining. Every write carries DEPTH requests back to back, and wrk counts
-- each response, so requests/s is comparable with the non-pipelined runs.
-- Usage: wrk -s bench/pipeline.lua URL -- [DEPTH] [PATH]   (defaults: 16 and the URL's path)
-- Depth 16 is TechEmpower's plaintext setting. A server that batches its answers sends one write per
-- burst; one that does not sends DEPTH.

local burst

init = function(args)
  local depth = tonumber(args[1]) or 16
  local path = args[2] or wrk.path
  local one = wrk.format(nil, path)
  burst = string.rep(one, depth)
end

request = function()
  return burst
end
