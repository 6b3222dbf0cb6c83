-- The hooks the accept benchmark runs with: what a typical policy does per
-- message, a recipient look-up at rcpt and a header read at data.
local known = { ["example.test"] = true }

function on_rcpt(ctx)
  local domain = gw.addr.domain(ctx.txn.rcpt)
  if domain and known[domain] then
    return gw.accept()
  end
  return gw.continue()
end

function on_data(ctx)
  if ctx.msg:header("X-Spam-Flag") == "YES" then
    return gw.reject(554, "5.7.1", "Spam")
  end
  return gw.continue()
end
