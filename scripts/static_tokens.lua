-- static_tokens: an authorize hook that accepts a fixed set of tokens.
--
--   authorize = sluice.script("static_tokens", { tokens = { "s3cret-1", "s3cret-2" } })
--   -- principal = the token itself (StreamFenceJs's StaticTokenValidator)
--   authorize = sluice.script("static_tokens", { tokens = { ["s3cret-1"] = "alice" } })
--   -- principal = the mapped name
--
-- Options:
--   tokens   a list of tokens, or a map token -> principal (required, not empty)
--   topics   optional map principal -> list of topics that principal may subscribe to
--            ("*" = any); principals without an entry may subscribe to nothing
--   reason   the refusal message (default "invalid token")
--
-- Tokens are kept as SHA-256 digests and looked up by the digest of the offered token, so the
-- lookup's timing says nothing about the secret tokens.
-- For a plain list, servers can also use `auth: TOKEN` with `tokens:` in JSON/YAML (checked in
-- C); this script adds principals and per-topic rules.
local sha256 = sluice.crypto.sha256

return function(opts)
  opts = opts or {}
  local tokens = opts.tokens
  if type(tokens) ~= "table" then error("static_tokens: tokens (a list or a map) is required", 2) end
  local by_digest, count = {}, 0
  for k, v in pairs(tokens) do
    local token, principal
    if type(k) == "number" then token, principal = v, v else token, principal = k, v end
    if type(token) ~= "string" or token == "" then
      error("static_tokens: every token must be a non-empty string", 2)
    end
    if type(principal) ~= "string" or principal == "" then
      error("static_tokens: the principal for a token must be a non-empty string", 2)
    end
    by_digest[sha256(token)] = principal
    count = count + 1
  end
  if count == 0 then error("static_tokens: tokens is empty", 2) end
  local topics
  if opts.topics ~= nil then
    if type(opts.topics) ~= "table" then error("static_tokens: topics must be a map", 2) end
    topics = {}
    for principal, list in pairs(opts.topics) do
      local set = {}
      for _, t in ipairs(list) do set[t] = true end
      topics[principal] = set
    end
  end
  local reason = opts.reason or "invalid token"

  return function(token, namespace, topic, client)
    if type(token) ~= "string" or token == "" then return nil, "missing token" end
    local principal = by_digest[sha256(token)]
    if not principal then return nil, reason end
    if topics and topic then
      local set = topics[principal]
      if not (set and (set["*"] or set[topic])) then
        return nil, "not allowed to subscribe to " .. topic
      end
    end
    return principal
  end
end
