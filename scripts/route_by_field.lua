-- route_by_field: a route hook that sends each message to a per-group topic chosen by a
-- payload field.
--
--   route = sluice.script("route_by_field", { field = "region" })
--   -- publish on "orders" {"region":"eu",...} -> delivered on "orders.eu"
--   route = sluice.script("route_by_field", { field = "region",
--                                             map = { eu = "orders.europe", us = "orders.us" } })
--
-- Options:
--   field      payload field path ("customer.region" reaches into nested objects; required)
--   map        value -> topic; without it the topic is <prefix><value>
--   prefix     default: the published topic and "." ("orders" -> "orders.eu")
--   also       true: deliver on the original topic too (topics = {original, group})
--   otherwise  when the field is missing, or its value is not in `map` / not a plain name:
--              "deliver" (default: deliver on the original topic), "drop", or a topic name
--   only       list of topics this route applies to (others are delivered unchanged without
--              decoding the payload)
--
-- Values become topic names only if they match [A-Za-z0-9_-]+ (or are in `map`). The target
-- topics must be configured in the namespace, like any topic.
local keys = require("keys")
local get = keys.get

return function(opts)
  opts = opts or {}
  if type(opts.field) ~= "string" or opts.field == "" then
    error("route_by_field: field (a payload field path) is required", 2)
  end
  local parts = keys.path(opts.field, "route_by_field")
  local map = opts.map
  if map ~= nil and type(map) ~= "table" then error("route_by_field: map must be a table", 2) end
  local prefix = opts.prefix
  local also = opts.also == true
  local otherwise = opts.otherwise or "deliver"
  if type(otherwise) ~= "string" then error("route_by_field: otherwise must be a string", 2) end
  local only
  if opts.only ~= nil then
    only = {}
    for _, t in ipairs(opts.only) do only[t] = true end
  end

  local function fallback()
    if otherwise == "deliver" then return nil end
    if otherwise == "drop" then return false end
    return { topic = otherwise }
  end

  return function(msg)
    local topic = msg.topic
    if only and not only[topic] then return nil end
    local v = get(msg.payload, parts)
    local t = type(v)
    if t == "number" or t == "boolean" then v = tostring(v) elseif t ~= "string" then return fallback() end
    local target
    if map then
      target = map[v]
    elseif string.find(v, "^[%w_-]+$") then
      target = (prefix or (topic .. ".")) .. v
    end
    if not target then return fallback() end
    if also then return { topics = { topic, target } } end
    return { topic = target }
  end
end
