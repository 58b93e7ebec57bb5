-- wrk script: POST signed GitHub deliveries, a new X-GitHub-Delivery id per request.
--   wrk -s bench/wrk/webhook.lua URL -- MANIFEST RUN_ID
-- MANIFEST: one delivery per line, "event<TAB>signature<TAB>path of the exact signed body".
-- Each thread counts answers by status; done() prints one line: "wrk-status <code> <count>".

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local manifest, run_id = args[1], args[2]
  deliveries = {}
  for line in io.lines(manifest) do
    local event, signature, path = line:match("^([^\t]+)\t([^\t]+)\t(.+)$")
    local file = assert(io.open(path, "rb"))
    local body = file:read("*a")
    file:close()
    table.insert(deliveries, {event = event, signature = signature, body = body})
  end
  prefix = run_id .. "-" .. tostring(tid) .. "-"
  sent = 0
  statuses = {}
end

function request()
  sent = sent + 1
  local d = deliveries[(sent % #deliveries) + 1]
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = d.event,
    ["X-GitHub-Delivery"] = prefix .. sent,
    ["X-GitHub-Hook-ID"] = "4242",
    ["X-Hub-Signature-256"] = d.signature,
  }, d.body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for code, n in pairs(counts) do
      total[code] = (total[code] or 0) + n
    end
  end
  for code, n in pairs(total) do
    io.write(string.format("wrk-status %d %d\n", code, n))
  end
  io.write(string.format("wrk-duration-us %d\n", summary.duration))
end
