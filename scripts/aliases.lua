-- aliases.lua: forwarding aliases, with SRS for mail forwarded to other
-- domains. plugins/aliases is its twin: the two behave the same
-- (scripts/twins_test.go runs one table of cases against both), and make
-- and read the same SRS addresses.
--
-- At RCPT, a recipient with an alias is replaced by the alias's final
-- targets and accepted. Targets are expanded again, depth first, up to 10
-- aliases deep (deeper: 550 5.4.6 Alias expansion too deep), and the list
-- is deduplicated without regard to case, the first spelling kept. A
-- target equal to the address it is a target of is kept as it is (an
-- alias keeping a copy); any other return to an address on the way is a
-- loop: 550 5.4.6 Alias loop detected. An alias whose only target is
-- itself changes nothing: the recipient continues to the next hook.
--
-- When a message is forwarded to a domain outside local_domains, its
-- envelope sender is rewritten with the Sender Rewriting Scheme (SRS0)
-- into srs_domain, so that the next hop's SPF check sees our domain and a
-- bounce comes back to us; a bounce to such an SRS address is forwarded
-- to the original sender, and one to an SRS address that is forged or too
-- old is refused with 550 5.1.1 Invalid SRS address.
--
-- Params:
--
--   aliases        map of address to a list of target addresses. Keys are
--                  full addresses ("info@example.test") or "@domain", a
--                  catch-all for every address of that domain that has no
--                  alias of its own and is not in mailboxes, whether it
--                  comes in RCPT TO or as the target of an alias.
--                  Addresses compare without regard to case. Default none.
--   mailboxes      list of addresses that are delivered as they are: the
--                  catch-all of their domain does not apply to them (list
--                  the real mailboxes of a domain that has a catch-all).
--                  Default none.
--   local_domains  list of domain names: where forwarding does not need
--                  SRS. Default: the domains of the alias keys.
--   srs_domain     domain name of the SRS addresses; without it there is
--                  no SRS rewriting. It must be one of the gateway's
--                  domains, or a domain whose MX is this gateway.
--   srs_secret     string; required with srs_domain. Keys the SRS hash.
--   srs_max_age    days an SRS address stays valid for bounces; default 21.
--   expn           true: answer EXPN of an alias with its final targets,
--                  one <address> a line, to trusted clients only:
--                  authenticated ones and those in expn_networks (others,
--                  and addresses without an alias, get the server's 502).
--                  Default false.
--   expn_networks  list of CIDR strings (or single IPs) trusted with EXPN
--                  besides authenticated clients; default none.
--
-- The SRS hash: Lua has no HMAC, so the hash is a keyed polynomial hash
-- modulo a prime below 2^24 over secret, timestamp, domain and local part,
-- truncated to 20 bits (four base32 characters). It is NOT cryptographic:
-- it stops casual forgery of bounce addresses (someone who does not know
-- the secret has a 1 in a million chance per guess), not a determined
-- attacker who collects many of our SRS addresses. Keep srs_max_age short.
-- The address format is SRS0=HHHH=TT=domain=local@srs_domain, TT being the
-- day number modulo 1024 in base32.
--
-- Stages: rcpt (expansion, reverse SRS), data (SRS rewriting of the
-- sender, once the final recipients are known), command (EXPN).
--
-- Example:
--
--   lua "aliases" {
--     path = "scripts/aliases.lua"
--     params = {
--       aliases = {
--         "info@example.test"  = ["alice@example.test", "bob@example.test"]
--         "sales@example.test" = ["carol@partner.test"]
--         "@example.test"      = ["catchall@example.test"]
--       }
--       mailboxes     = ["alice@example.test", "bob@example.test", "catchall@example.test"]
--       local_domains = ["example.test"]
--       srs_domain    = "example.test"
--       srs_secret    = "change me"
--     }
--     match { stage = ["rcpt", "data"] }
--   }

local P = gw.params or {}

local function list(v)
  if type(v) ~= "table" then return {} end
  return v
end

local aliases = {}   -- lower-case address or "@domain" → list of targets
local local_domains = {}
local have_local = false
for key, targets in pairs(list(P.aliases)) do
  aliases[string.lower(key)] = list(targets)
end
for _, d in ipairs(list(P.local_domains)) do
  local_domains[string.lower(d)] = true
  have_local = true
end
if not have_local then
  for key in pairs(aliases) do
    local d = string.match(key, "@(.*)$")
    if d then local_domains[d] = true end
  end
end

local mailboxes = {}
for _, m in ipairs(list(P.mailboxes)) do mailboxes[string.lower(m)] = true end

local expn = P.expn == true
local expn_networks = list(P.expn_networks)
if #expn_networks > 0 then gw.cidr.contains(expn_networks, "192.0.2.1") end -- a bad CIDR fails the load

local srs_domain = P.srs_domain and string.lower(P.srs_domain) or nil
local srs_secret = P.srs_secret or ""
local srs_max_age = tonumber(P.srs_max_age) or 21
if srs_domain and srs_secret == "" then
  error("aliases.lua: srs_domain needs srs_secret")
end

local function domain_of(addr)
  return string.lower(string.match(addr, "@([^@]*)$") or "")
end

local function is_local(addr)
  return local_domains[domain_of(addr)] == true
end

-- MAX_DEPTH is how many aliases deep an expansion may go (an alias whose
-- target is an alias whose target is …).
local MAX_DEPTH = 10

-- lookup returns the targets of the lower-case address key: its own
-- alias, else (unless it is a mailbox) the catch-all of its domain, else
-- nil.
local function lookup(key)
  local t = aliases[key]
  if t ~= nil or mailboxes[key] then return t end
  return aliases["@" .. domain_of(key)]
end

-- expand returns the final targets of addr, an address with an alias, in
-- the order first met and without duplicates (the first spelling kept);
-- or nil and "loop" or "deep". Targets are expanded again, depth first.
-- A target equal to the address it is a target of is kept as it is (an
-- alias keeping a copy, a catch-all whose target is in its own domain);
-- any other return to an address on the way is a loop.
local function expand(addr)
  local out, seen, done = {}, {}, {}
  local function add(a)
    local k = string.lower(a)
    if not seen[k] then
      seen[k] = true
      out[#out + 1] = a
    end
  end
  local function walk(a, path, depth)
    local key = string.lower(a)
    local targets = lookup(key)
    if targets == nil then add(a); return nil end
    if path[key] then return "loop" end
    if done[key] then return nil end
    if depth == MAX_DEPTH then return "deep" end
    path[key] = true
    for _, t in ipairs(targets) do
      if string.lower(t) == key then
        add(t)
      else
        local err = walk(t, path, depth + 1)
        if err then return err end
      end
    end
    path[key] = nil
    done[key] = true
    return nil
  end
  local err = walk(addr, {}, 0)
  if err then return nil, err end
  return out
end

-- The targets outside the local domains: a message to one of them at data
-- is being forwarded (or relayed to an address that some alias forwards
-- to, where SRS does no harm either).
local forwarded = {}
for _, targets in pairs(aliases) do
  for _, t in ipairs(targets) do
    if not is_local(t) then forwarded[string.lower(t)] = true end
  end
end

-- SRS --------------------------------------------------------------------

local B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
local PRIME = 16777213 -- below 2^24: h*257 + 255 stays exact in a double

local function b32(n, width)
  local s = ""
  for _ = 1, width do
    local d = n % 32
    s = string.sub(B32, d + 1, d + 1) .. s
    n = (n - d) / 32
  end
  return s
end

local function b32value(s)
  local n = 0
  for i = 1, #s do
    local p = string.find(B32, string.upper(string.sub(s, i, i)), 1, true)
    if not p then return nil end
    n = n * 32 + (p - 1)
  end
  return n
end

-- keyed_hash is the non-cryptographic keyed hash described at the top.
local function keyed_hash(...)
  local data = srs_secret .. "\0" .. string.lower(table.concat({ ... }, "\0")) .. "\0" .. srs_secret
  local h = 5381
  for i = 1, #data do
    h = (h * 257 + string.byte(data, i)) % PRIME
  end
  return b32(h % 1048576, 4)
end

local function today() return math.floor(gw.time() / 86400) end

local function srs_forward(sender)
  local l, d = string.match(sender, "^(.*)@([^@]*)$")
  local tt = b32(today() % 1024, 2)
  return "SRS0=" .. keyed_hash(tt, d, l) .. "=" .. tt .. "=" .. d .. "=" .. l .. "@" .. srs_domain
end

-- srs_reverse returns the original sender of an SRS0 address of ours,
-- nil and a reason if it is not valid, or nil if it is not SRS at all.
local function srs_reverse(addr)
  if not srs_domain or domain_of(addr) ~= srs_domain then return nil end
  local lp = string.match(addr, "^(.*)@[^@]*$")
  local hh, tt, d, l = string.match(lp, "^[Ss][Rr][Ss]0[=+-]([^=]+)=([^=]+)=([^=]+)=(.+)$")
  if not hh then return nil end
  if string.upper(hh) ~= keyed_hash(string.upper(tt), d, l) then return nil, "bad hash" end
  local t = b32value(tt)
  if not t or #tt ~= 2 or (today() - t) % 1024 > srs_max_age then return nil, "expired" end
  return l .. "@" .. d
end

-- Hooks ------------------------------------------------------------------

-- REFUSED are the answers to an expansion that failed.
local REFUSED = {
  loop = { 550, "5.4.6", "Alias loop detected" },
  deep = { 550, "5.4.6", "Alias expansion too deep" },
}

-- targets returns the final targets of addr when it has an alias of its
-- own making (an alias whose only target is itself has none), nil when
-- it has none, or a refusal.
local function targets(addr)
  if lookup(string.lower(addr)) == nil then return nil end
  local out, err = expand(addr)
  if err then
    gw.log("warn", "alias expansion failed", { addr = addr, reason = err })
    local r = REFUSED[err]
    return nil, gw.reject(r[1], r[2], r[3])
  end
  if #out == 1 and string.lower(out[1]) == string.lower(addr) then return nil end
  return out
end

function on_rcpt(ctx)
  local rcpt = ctx.txn.rcpt
  local orig, why = srs_reverse(rcpt)
  if orig then
    ctx:set_recipients({ orig })
    return gw.accept()
  elseif why then
    gw.log("info", "invalid SRS address", { rcpt = rcpt, reason = why })
    return gw.reject(550, "5.1.1", "Invalid SRS address")
  end
  local out, refused = targets(rcpt)
  if refused then return refused end
  if out == nil then return gw.continue() end
  ctx:set_recipients(out)
  return gw.accept()
end

function on_data(ctx)
  if not srs_domain then return gw.continue() end
  local sender = ctx.txn.sender or ""
  if sender == "" or is_local(sender) or domain_of(sender) == srs_domain then
    return gw.continue()
  end
  for _, r in ipairs(ctx.txn.recipients) do
    if forwarded[string.lower(r)] then
      ctx:set_sender(srs_forward(sender))
      return gw.continue()
    end
  end
  return gw.continue()
end

local function trusted(ctx)
  if (ctx.conn.auth_user or "") ~= "" then return true end
  return #expn_networks > 0 and gw.cidr.contains(expn_networks, ctx.conn.ip)
end

-- argument returns the address in an EXPN argument: the part in angle
-- brackets if there is one, else the trimmed argument.
local function argument(arg)
  arg = arg or ""
  return string.match(arg, "<([^>]*)>") or string.match(arg, "^%s*(.-)%s*$")
end

function on_command(ctx)
  if ctx.command ~= "EXPN" or not expn or not trusted(ctx) then return gw.continue() end
  local out, refused = targets(argument(ctx.arg))
  if refused then return refused end
  if out == nil then return gw.continue() end
  local lines = {}
  for i, t in ipairs(out) do lines[i] = "<" .. t .. ">" end
  ctx:reply_lines(lines)
  return gw.accept()
end
