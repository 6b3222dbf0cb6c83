-- relay.lua: relaying rules beyond the built-in ones (relay.networks,
-- relay.authenticated and the local domains), sender ownership for
-- authenticated users, and a per-client rate limit.
--
-- Only an explicit accept at rcpt widens relaying (DESIGN.md, Hook points):
-- this script accepts a recipient when one of its rules allows relaying and
-- otherwise says nothing (continue), so that the built-in rule decides.
--
-- Params (all optional; a script without params does nothing):
--
--   allow_networks       list of CIDR strings, default []. Clients in one
--                        of them may relay to any domain: accept at rcpt.
--   allow_sender_domains list of domain names, default []. Mail whose
--                        envelope sender is in one of these domains may be
--                        relayed, but only from a client in sender_networks.
--   sender_networks      list of CIDR strings, default []. See above; with
--                        it empty, allow_sender_domains allows nothing.
--   user_domains         map of user name to a list of domain names,
--                        default none. When it is set, an authenticated
--                        client must use an envelope sender in one of the
--                        domains of its user (or of the "*" entry, for
--                        users without an entry of their own); anything
--                        else, the null sender <> included, gets
--                        553 5.7.1 at MAIL. Clients that did not
--                        authenticate are not checked.
--   rate                 { limit = number, per = seconds }, default none.
--                        Each client IP may start at most limit
--                        transactions (MAIL commands) in a fixed window of
--                        per seconds (default 3600) that starts with its
--                        first one; past that, MAIL gets 450 4.7.1 until
--                        the window ends. The counters live in the
--                        gateway's ephemeral key-value store
--                        (gw.ephemeral, "rate/<ip>"): shared by all
--                        sessions, never a disk write on a message's path,
--                        and forgotten on restart (a window starts again).
--
-- Domain names compare without regard to case.
--
-- Stages: mail (user_domains, rate), rcpt (allow_networks,
-- allow_sender_domains).
--
-- Example:
--
--   pipeline = ["lua.relay"]
--
--   lua "relay" {
--     path     = "scripts/relay.lua"
--     timeout  = "200ms"
--     on_error = "defer"
--     params = {
--       allow_networks       = ["10.1.0.0/16"]
--       allow_sender_domains = ["example.test"]
--       sender_networks      = ["192.0.2.0/24"]
--       user_domains         = { alice = ["example.test"], "*" = ["users.example.test"] }
--       rate                 = { limit = 100, per = 3600 }
--     }
--     match { stage = ["mail", "rcpt"] }
--   }

local P = gw.params or {}

local function list(v)
  if type(v) ~= "table" then return {} end
  return v
end

-- set turns a list of names into a lower-case lookup table.
local function set(v)
  local s = {}
  for _, x in ipairs(list(v)) do s[string.lower(x)] = true end
  return s
end

local allow_networks = list(P.allow_networks)
local sender_domains = set(P.allow_sender_domains)
local sender_networks = list(P.sender_networks)

-- A bad CIDR fails the load (and `gateway check`), not the first message.
for _, nets in ipairs({ allow_networks, sender_networks }) do
  if #nets > 0 then gw.cidr.contains(nets, "192.0.2.1") end
end

local user_domains = nil
if type(P.user_domains) == "table" then
  user_domains = {}
  for user, domains in pairs(P.user_domains) do user_domains[user] = set(domains) end
end

local rate_limit, rate_per = nil, 3600
if P.rate ~= nil then
  rate_limit = type(P.rate) == "table" and tonumber(P.rate.limit)
  rate_per = type(P.rate) == "table" and tonumber(P.rate.per or rate_per)
  if not rate_limit or rate_limit < 0 or not rate_per or rate_per < 1 then
    error("relay.lua: rate wants { limit = number >= 0, per = seconds >= 1 }")
  end
end

local function sender_domain(ctx)
  local s = ctx.txn and ctx.txn.sender or ""
  if s == "" then return "" end
  return string.lower(gw.addr.domain(s) or "")
end

function on_mail(ctx)
  local user = ctx.conn.auth_user or ""
  if user_domains and user ~= "" then
    local allowed = user_domains[user] or user_domains["*"] or {}
    local d = sender_domain(ctx)
    if d == "" or not allowed[d] then
      return gw.reject(553, "5.7.1", "Sender address not owned by user")
    end
  end
  if rate_limit then
    local n = gw.ephemeral.incr("rate/" .. ctx.conn.ip, 1, rate_per)
    if n > rate_limit then
      gw.log("info", "rate limit exceeded", { ip = ctx.conn.ip, count = n, limit = rate_limit })
      return gw.defer(450, "4.7.1", "Rate limit exceeded, try later")
    end
  end
  return gw.continue()
end

function on_rcpt(ctx)
  local ip = ctx.conn.ip
  if #allow_networks > 0 and gw.cidr.contains(allow_networks, ip) then
    return gw.accept()
  end
  if #sender_networks > 0 and sender_domains[sender_domain(ctx)]
      and gw.cidr.contains(sender_networks, ip) then
    return gw.accept()
  end
  return gw.continue()
end
