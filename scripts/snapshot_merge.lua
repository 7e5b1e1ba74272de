-- snapshot_merge: a snapshot hook that deep-merges delta updates into a full state, so a new
-- subscriber first receives the whole current picture while publishers send only changes.
--
--   snapshot = sluice.script("snapshot_merge")
--   -- publish {"bid":1.5,"book":{"depth":3}}   state {"bid":1.5,"book":{"depth":3}}
--   -- publish {"ask":1.6,"book":{"depth":null}} state {"bid":1.5,"ask":1.6,"book":{}}
--
-- Rules: objects merge recursively; arrays and scalars replace; sluice.json.null (JSON null)
-- deletes the key; a delta that is not an object (an array, a number) replaces the state; a
-- top-level null clears the state (new subscribers then get nothing until the next update).
--
-- Options:
--   maxDepth   deeper objects are replaced rather than merged (default 32)
--   reset      a payload field that, when true, starts from an empty state ("full" images):
--              e.g. reset = "_full" and publish {"_full":true, ...} (the field is removed)
--
-- The state is merged in place (the core keeps one state per topic and hands it back on the
-- next publish); the core sends it to new subscribers as JSON.
local null = sluice.json.null
local is_array = sluice.json.is_array

return function(opts)
  opts = opts or {}
  local max_depth = opts.maxDepth or 32
  if type(max_depth) ~= "number" or max_depth < 1 then
    error("snapshot_merge: maxDepth must be a positive number", 2)
  end
  local reset = opts.reset
  if reset ~= nil and type(reset) ~= "string" then error("snapshot_merge: reset must be a field name", 2) end

  local function is_object(v) return type(v) == "table" and not is_array(v) end

  -- a copy of v without its null members (a new object must not store nulls)
  local function clean(v, depth)
    if not is_object(v) or depth > max_depth then return v end
    local out = {}
    for k, x in pairs(v) do
      if x ~= null then out[k] = clean(x, depth + 1) end
    end
    return out
  end

  local function merge(state, delta, depth)
    for k, v in pairs(delta) do
      if v == null then
        state[k] = nil
      elseif is_object(v) and depth < max_depth then
        local cur = state[k]
        if is_object(cur) then
          merge(cur, v, depth + 1)
        else
          state[k] = clean(v, depth + 1)
        end
      else
        state[k] = v
      end
    end
    return state
  end

  return function(state, topic, payload)
    if payload == null then return nil end
    if not is_object(payload) then return payload end
    if reset and payload[reset] == true then
      payload[reset] = nil
      return clean(payload, 1)
    end
    if not is_object(state) then state = {} end
    return merge(state, payload, 1)
  end
end
