-- Quarantine what fails DMARC, unless it comes from our partner's relay
-- (which forwards mail and so breaks SPF and often DKIM): the message
-- goes to the quarantine mailbox instead of its recipients, marked.
--
-- Params: partner_relays (a list of client IP addresses),
-- quarantine (the quarantine mailbox).
local P = gw.params or {}

local function from_partner(ip)
  for _, p in ipairs(P.partner_relays or {}) do
    if p == ip then return true end
  end
  return false
end

function on_data(ctx)
  local auth = ctx.auth
  if not auth or auth.dmarc.result ~= "fail" or from_partner(ctx.conn.ip) then
    return
  end
  ctx.msg:add_header("X-Quarantined", "DMARC " .. auth.dmarc.result .. " for " .. auth.dmarc.domain)
  ctx:set_recipients({P.quarantine})
  ctx:note("quarantined", auth.dmarc.domain)
end
