-- wrk script: POST a valid order to /submit/order (the body of tests/it/support.rs
-- order_body(), with a name that differs per request so the collector's double-submit
-- memory never folds two posts into one record). Origin must match the listen address.
-- Usage: wrk -s bench/post-order.lua http://127.0.0.1:PORT
local counter = 0
local prefix

function init(args)
  -- One Lua state per wrk thread: a random prefix keeps threads' names apart.
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  prefix = string.format("%06d", math.random(0, 999999))
end

local path = "/submit/order"

function request()
  counter = counter + 1
  local body = "name=Bench+Buyer+" .. prefix .. "-" .. counter ..
    "&email=buyer%40example.org&street=Hauptstr.+1&postcode=10115&city=Berlin&country=DE" ..
    "&sku=AURORA-EB&quantity=1"
  local headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Origin"] = "http://" .. wrk.host .. ":" .. wrk.port,
  }
  return wrk.format("POST", path, headers, body)
end
-- No response() hook: it would make wrk parse every answer in Lua. Whether each post became
-- a record is checked from the server's own counter (cofferdam_collect_records_total).
