describe("scripts/jwt_hs256", function()
  local crypto, json = sluice.crypto, sluice.json
  local SECRET = "0123456789abcdef-secret"
  local b64 = crypto.base64url_encode

  local function sign(claims, header, secret)
    local h = b64(type(header) == "string" and header or json.encode(header or { alg = "HS256", typ = "JWT" }))
    local p = b64(type(claims) == "string" and claims or json.encode(claims))
    return h .. "." .. p .. "." .. b64(crypto.hmac_sha256(secret or SECRET, h .. "." .. p))
  end
  local now = math.floor(sluice.now_ms() / 1000)
  local hook = sluice.script("jwt_hs256", { secret = SECRET })

  local function auth(h, token, topic)
    local accepted, what, errors = call_authorize(h or hook, token, topic)
    eq(errors, 0)
    return accepted, what
  end

  it("accepts a valid token; the principal is sub", function()
    eq({ auth(nil, sign({ sub = "alice", exp = now + 60 }), "prices") }, { true, "alice" })
    eq({ auth(nil, sign({ sub = 42, exp = now + 60 })) }, { true, "42" })
  end)

  it("checks the signature", function()
    eq({ auth(nil, sign({ sub = "a", exp = now + 60 }, nil, "another-secret-0123")) },
       { false, "invalid token signature" })
    local t = sign({ sub = "a", exp = now + 60 })
    local forged = t:gsub("%.([^.]+)%.", "." .. b64(json.encode({ sub = "root", exp = now + 60 })) .. ".", 1)
    eq({ auth(nil, forged) }, { false, "invalid token signature" })
  end)

  it("refuses other algorithms, whatever the token says", function()
    local claims = { sub = "a", exp = now + 60 }
    eq({ auth(nil, sign(claims, { alg = "none" })) }, { false, "unsupported token algorithm" })
    eq({ auth(nil, sign(claims, { alg = "HS512" })) }, { false, "unsupported token algorithm" })
    eq({ auth(nil, sign(claims, { alg = "hs256" })) }, { false, "unsupported token algorithm" })
    local unsigned = b64(json.encode({ alg = "none" })) .. "." .. b64(json.encode(claims)) .. "."
    eq({ auth(nil, unsigned) }, { false, "malformed token" })
    eq({ auth(nil, sign(claims, { alg = "HS256", crit = { "x" } })) }, { false, "unsupported critical header" })
  end)

  it("checks exp and nbf with leeway", function()
    eq({ auth(nil, sign({ sub = "a", exp = now - 60 })) }, { false, "token expired" })
    eq({ auth(nil, sign({ sub = "a", exp = now - 10 })) }, { true, "a" }) -- within 30 s leeway
    eq({ auth(nil, sign({ sub = "a", exp = now + 60, nbf = now + 120 })) }, { false, "token not yet valid" })
    eq({ auth(nil, sign({ sub = "a" })) }, { false, "token has no expiry" })
    eq({ auth(nil, sign({ sub = "a", exp = "soon" })) }, { false, "malformed exp claim" })
    local lax = sluice.script("jwt_hs256", { secret = SECRET, requireExp = false, leeway = 0 })
    eq({ auth(lax, sign({ sub = "a" })) }, { true, "a" })
    eq({ auth(lax, sign({ sub = "a", exp = now - 1 })) }, { false, "token expired" })
  end)

  it("checks audience and issuer when configured", function()
    local h = sluice.script("jwt_hs256", { secret = SECRET, audience = { "sluice", "other" }, issuer = "me" })
    eq({ auth(h, sign({ sub = "a", exp = now + 60, aud = "sluice", iss = "me" })) }, { true, "a" })
    eq({ auth(h, sign({ sub = "a", exp = now + 60, aud = { "x", "other" }, iss = "me" })) }, { true, "a" })
    eq({ auth(h, sign({ sub = "a", exp = now + 60, aud = "x", iss = "me" })) }, { false, "wrong token audience" })
    eq({ auth(h, sign({ sub = "a", exp = now + 60, aud = "sluice", iss = "you" })) }, { false, "wrong token issuer" })
    eq({ auth(h, sign({ sub = "a", exp = now + 60, iss = "me" })) }, { false, "wrong token audience" })
  end)

  it("checks the topic against a topics claim", function()
    local h = sluice.script("jwt_hs256", { secret = SECRET, topicsClaim = "topics" })
    local t = sign({ sub = "a", exp = now + 60, topics = { "prices" } })
    eq({ auth(h, t, "prices") }, { true, "a" })
    eq({ auth(h, t, "orders") }, { false, "token does not allow topic orders" })
    eq({ auth(h, t, nil) }, { true, "a" })
    eq({ auth(h, sign({ sub = "a", exp = now + 60, topics = { "*" } }), "orders") }, { true, "a" })
    eq({ auth(h, sign({ sub = "a", exp = now + 60 }), "orders") }, { false, "token does not allow topic orders" })
  end)

  it("refuses malformed tokens without raising", function()
    for _, bad in ipairs({ "x", "a.b", "a.b.c.d", "!!.??.##", b64("{") .. "." .. b64("{}") .. ".x",
                           sign("not json"), sign("[1,2]"), string.rep("a", 9000) }) do
      local accepted = auth(nil, bad)
      eq(accepted, false, bad:sub(1, 40))
    end
    eq({ auth(nil, sign({ exp = now + 60 })) }, { false, "token has no sub" })
    eq({ auth(nil, nil) }, { false, "missing token" })
  end)

  it("validates its options", function()
    raises(function() sluice.script("jwt_hs256", {}) end, "secret")
    raises(function() sluice.script("jwt_hs256", { secret = "short" }) end, "shorter than 16 bytes")
    eq(type(sluice.script("jwt_hs256", { secret = "short", allowWeak = true })), "function")
  end)
end)
