-- jwt_hs256: an authorize hook for JSON Web Tokens signed with HMAC-SHA256 (RFC 7519/7515).
--
--   authorize = sluice.script("jwt_hs256", {
--     secret = os.getenv("JWT_SECRET"),  -- in a Lua config; required
--     audience = "sluice", issuer = "https://auth.example.com",
--     topicsClaim = "topics",             -- the token lists the topics it may subscribe to
--   })
--
-- Checks, in order: three base64url parts; header {"alg":"HS256"} exactly (no "none", no
-- other algorithm, whatever the token says); the signature (sluice.crypto.hmac_sha256, compared
-- in constant time); exp and nbf against sluice.now_ms() with `leeway` seconds; aud and iss
-- when configured; the topic against the topics claim when configured (on CONNECT there is no
-- topic, so only the token is checked). The principal is the `sub` claim (principalClaim).
--
-- Options:
--   secret          the shared key (string, required, at least 16 bytes unless allowWeak)
--   audience        a string or a list; the aud claim (string or list) must contain one
--   issuer          the iss claim must equal it
--   leeway          clock skew tolerance in seconds (default 30)
--   requireExp      refuse tokens without exp (default true)
--   topicsClaim     claim holding a list of topic names (or "*") the token may subscribe to
--   principalClaim  claim used as the principal (default "sub")
--   maxLength       longest token accepted (default 8192)
local crypto, json = sluice.crypto, sluice.json

local function decode_part(part)
  local raw = crypto.base64url_decode(part)
  if not raw then return nil end
  local ok, v = pcall(json.decode, raw)
  if ok and type(v) == "table" then return v end
  return nil
end

local function contains(list_or_value, wanted)
  if type(list_or_value) == "string" then return list_or_value == wanted end
  if type(list_or_value) ~= "table" then return false end
  for _, v in ipairs(list_or_value) do if v == wanted then return true end end
  return false
end

return function(opts)
  opts = opts or {}
  local secret = opts.secret
  if type(secret) ~= "string" or secret == "" then
    error("jwt_hs256: secret (a non-empty string) is required", 2)
  end
  if #secret < 16 and not opts.allowWeak then
    error("jwt_hs256: secret is shorter than 16 bytes (set allowWeak = true to accept it)", 2)
  end
  local audiences
  if opts.audience ~= nil then
    audiences = type(opts.audience) == "table" and opts.audience or { opts.audience }
  end
  local issuer = opts.issuer
  local leeway = opts.leeway or 30
  local require_exp = opts.requireExp ~= false
  local topics_claim = opts.topicsClaim
  local principal_claim = opts.principalClaim or "sub"
  local max_len = opts.maxLength or 8192

  return function(token, namespace, topic, client)
    if type(token) ~= "string" or token == "" then return nil, "missing token" end
    if #token > max_len then return nil, "token too long" end
    local h64, p64, s64 = string.match(token, "^([%w_-]+)%.([%w_-]+)%.([%w_-]+)$")
    if not h64 then return nil, "malformed token" end
    local header = decode_part(h64)
    if not header then return nil, "malformed token header" end
    if header.alg ~= "HS256" then return nil, "unsupported token algorithm" end
    if header.crit ~= nil then return nil, "unsupported critical header" end
    local sig = crypto.base64url_decode(s64)
    if not sig or not crypto.equal(sig, crypto.hmac_sha256(secret, h64 .. "." .. p64)) then
      return nil, "invalid token signature"
    end
    local claims = decode_part(p64)
    if not claims then return nil, "malformed token claims" end
    local now = sluice.now_ms() / 1000
    local exp, nbf = claims.exp, claims.nbf
    if exp == nil then
      if require_exp then return nil, "token has no expiry" end
    elseif type(exp) ~= "number" then
      return nil, "malformed exp claim"
    elseif now >= exp + leeway then
      return nil, "token expired"
    end
    if nbf ~= nil then
      if type(nbf) ~= "number" then return nil, "malformed nbf claim" end
      if now < nbf - leeway then return nil, "token not yet valid" end
    end
    if issuer ~= nil and claims.iss ~= issuer then return nil, "wrong token issuer" end
    if audiences then
      local ok = false
      for _, a in ipairs(audiences) do
        if contains(claims.aud, a) then ok = true break end
      end
      if not ok then return nil, "wrong token audience" end
    end
    if topics_claim and topic then
      local allowed = claims[topics_claim]
      if not (contains(allowed, topic) or contains(allowed, "*")) then
        return nil, "token does not allow topic " .. topic
      end
    end
    local principal = claims[principal_claim]
    if type(principal) == "number" then principal = tostring(principal) end
    if type(principal) ~= "string" or principal == "" then
      return nil, "token has no " .. principal_claim
    end
    return principal
  end
end
