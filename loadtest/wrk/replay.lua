-- Replays requests prepared by loadtest/bench.py (signed ones cannot be made in wrk's Lua:
-- each needs a fresh nonce and an HMAC), then prints wrk's numbers as one JSON line (µs), with
-- the answers outside 2xx counted by status.
-- One line per request:
--   METHOD <TAB> PATH <TAB> Name: value|Name: value <TAB> BODY
-- Run with one wrk thread (-t1): every request is sent once, in order.
local prepared = {}
local sent = 0
local threads = {}
statuses = {} -- status -> answers; a global: done() reads it from the thread with thread:get

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  for line in io.lines(args[1]) do
    local method, path, header_text, body = line:match("^(%S+)\t(%S+)\t([^\t]*)\t(.*)$")
    local headers = {}
    for name, value in header_text:gmatch("([^|:]+): ([^|]*)") do
      headers[name] = value
    end
    prepared[#prepared + 1] = wrk.format(method, path, headers, body ~= "" and body or nil)
  end
end

function request()
  sent = sent + 1
  return prepared[((sent - 1) % #prepared) + 1]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

-- The answers outside 2xx: how many, and how often each status came (a JSON object).
function failed_statuses()
  local total, parts, failed = {}, {}, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      if status < 200 or status > 299 then
        total[status] = (total[status] or 0) + count
        failed = failed + count
      end
    end
  end
  for status, count in pairs(total) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  return failed, "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local non_2xx, by_status = failed_statuses()
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"non_2xx": %d, "socket_errors": %d, "failed_statuses": %s}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    non_2xx, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    by_status))
end
