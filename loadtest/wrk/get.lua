-- One GET, the same for every request (wrk's static request: no Lua per request, so wrk itself
-- stays far from being the limit), then wrk's numbers as one JSON line (µs), the format of
-- replay.lua. Path and headers come from wrk's command line (the URL, -H).
-- Optional argument: the one status every answer must have (e.g. 304); answers with any other
-- status are then counted in "non_2xx" and by status. Without it no Lua runs per response, and
-- "non_2xx" is wrk's own count of statuses >= 400.
local threads = {}
-- Globals: done() reads them from each thread with thread:get.
expected = nil
statuses = {}

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
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local failed, total, parts = summary.errors.status, {}, {}
  if threads[1]:get("expected") ~= nil then
    failed = 0
    for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
        total[status] = (total[status] or 0) + count
        failed = failed + count
      end
    end
  end
  for status, count in pairs(total) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"non_2xx": %d, "socket_errors": %d, "failed_statuses": {%s}}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    failed, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ", ")))
end
