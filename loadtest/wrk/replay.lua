-- Replays requests prepared by loadtest/bench.py (signed ones cannot be made in wrk's Lua:
-- each needs a fresh nonce and an HMAC), then prints wrk's numbers as one JSON line (µs).
-- One line per request:
--   METHOD <TAB> PATH <TAB> Name: value|Name: value <TAB> BODY
-- Run with one wrk thread (-t1): every request is sent once, in order.
local prepared = {}
local sent = 0

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

function done(summary, latency, requests)
  local non_2xx = summary.errors.status
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    non_2xx, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
