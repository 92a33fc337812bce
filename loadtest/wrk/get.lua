-- One GET, the same for every request (wrk's static request: no Lua per request, so wrk itself
-- stays far from being the limit), then wrk's numbers as one JSON line (µs), the format of
-- replay.lua. Path and headers come from wrk's command line (the URL, -H).
-- Optional argument: the one status every answer must have (e.g. 304); any other status is then
-- counted in "non_2xx" instead of only wrk's own >= 400 count. Without it no Lua runs per response.
local threads = {}
expected = nil -- globals: done() reads them from each thread with thread:get
unexpected = 0

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  expected = tonumber(args[1])
  if expected == nil then
    response = nil
  end
end

function response(status, headers, body)
  if status ~= expected then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local failed = summary.errors.status
  if #threads > 0 and threads[1]:get("expected") ~= nil then
    failed = 0
    for _, thread in ipairs(threads) do
      failed = failed + thread:get("unexpected")
    end
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    failed, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
