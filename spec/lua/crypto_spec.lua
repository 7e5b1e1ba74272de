describe("sluice.crypto", function()
  local c = sluice.crypto
  local function hex(s) return sluice.bytes(s):hex() end

  it("computes HMAC-SHA256 (RFC 4231 test cases 1, 2 and 6)", function()
    eq(hex(c.hmac_sha256(string.rep("\11", 20), "Hi There")),
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    eq(hex(c.hmac_sha256("Jefe", "what do ya want for nothing?")),
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    eq(hex(c.hmac_sha256(string.rep("\170", 131),
                         "Test Using Larger Than Block-Size Key - Hash Key First")),
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    eq(hex(c.hmac_sha256(sluice.bytes("Jefe"), sluice.bytes("what do ya want for nothing?"))),
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
  end)

  it("computes SHA-256", function()
    eq(hex(c.sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
  end)

  it("round-trips base64url without padding", function()
    for _, s in ipairs({ "", "f", "fo", "foo", "foob", "fooba", "foobar", "\0\255\254\253" }) do
      local e = c.base64url_encode(s)
      ok(not e:find("[=+/]"), e)
      eq(c.base64url_decode(e), s)
    end
    eq(c.base64url_encode("foobar"), "Zm9vYmFy")
    eq(c.base64url_decode("Zm9vYg=="), "foob")
    eq({ c.base64url_decode("Zm9v!") }, { nil, "invalid base64url" })
  end)

  it("compares in constant time", function()
    eq(c.equal("abc", "abc"), true)
    eq(c.equal("abc", "abd"), false)
    eq(c.equal("abc", "ab"), false)
    eq(c.equal("", ""), true)
  end)

  it("is available to sandboxed scripts", function()
    local hook = ok(load_script(SPEC_DIR .. "/../fixtures/lua/uses_crypto.lua"))
    eq(hook("k", "d"), hex(c.hmac_sha256("k", "d")))
  end)
end)
