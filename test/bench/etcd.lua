-- wrk script for etcd 3.4's JSON gateway (test/bench/cluster): one request per
-- call, on a random key of BENCH_KEYS, like the pgbench scripts.
--   BENCH_ETCD_OP=put    POST /v3/kv/put   (a write through Raft)
--   BENCH_ETCD_OP=range  POST /v3/kv/range (a linearizable read, etcd's default)
-- The gateway takes keys and values in base64.
local op = os.getenv("BENCH_ETCD_OP") or "put"
local keys = tonumber(os.getenv("BENCH_KEYS") or "10000")
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local chars = {}
        for k = 3, 0, -1 do
            local v = math.floor(n / 64 ^ k) % 64
            chars[#chars + 1] = alphabet:sub(v + 1, v + 1)
        end
        if not b then chars[3] = "=" end
        if not c then chars[4] = "=" end
        out[#out + 1] = table.concat(chars)
    end
    return table.concat(out)
end

-- bodies built once: the load generator should not be what is measured
local bodies = {}
for k = 1, keys do
    local key = base64("bench-" .. k)
    if op == "put" then
        bodies[k] = '{"key":"' .. key .. '","value":"' .. base64("value-" .. k) .. '"}'
    else
        bodies[k] = '{"key":"' .. key .. '"}'
    end
end
local path = op == "put" and "/v3/kv/put" or "/v3/kv/range"
local headers = {["Content-Type"] = "application/json"}

request = function()
    return wrk.format("POST", path, headers, bodies[math.random(1, keys)])
end

-- p50 and p99 in microseconds, on one line the benchmark parses
done = function(summary, latency, requests)
    io.write(string.format("BENCH latency_us p50 %d p99 %d errors %d\n",
        latency:percentile(50), latency:percentile(99),
        summary.errors.connect + summary.errors.read + summary.errors.write +
        summary.errors.status + summary.errors.timeout))
end
