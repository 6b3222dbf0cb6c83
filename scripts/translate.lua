-- translate.lua: gateway translation between an internal mail system and
-- the outside: address masquerading, header fields added and removed, a
-- subject tag for some senders, and routes chosen per destination domain.
--
-- Params (all optional):
--
--   masquerade     { from = "internal.example", to = "example.test",
--                    headers = ["From"] }. An envelope sender in domain
--                  from, or in a subdomain of it, is rewritten into domain
--                  to at MAIL (local part unchanged); at DATA the same is
--                  done to every address in the listed header fields
--                  (default just From).
--   add_headers    map of field name to value, added at DATA (in name
--                  order), e.g. { "X-Gateway" = "edge" }.
--   strip_headers  list of field names removed at DATA (every instance),
--                  e.g. ["X-Internal-Id"].
--   tag_subject    { match = glob, tag = "[partner]" }. When the envelope
--                  sender matches the glob (gw.glob: "*" any run of
--                  characters, compared without regard to case), the
--                  Subject gets the tag and a space in front, unless it
--                  already contains the tag; a message without a Subject
--                  gets one with just the tag.
--   routes         list of { match = glob, transport = name, via =
--                  "host:port" }, tried in order at predelivery against
--                  the destination domain; the first that matches sets the
--                  route (transport "" or absent keeps the configured one;
--                  via absent means an MX look-up). "*.partner.test"
--                  matches the subdomains of partner.test, not
--                  partner.test itself.
--
-- Stages: mail (masquerade), data (headers, subject), predelivery (routes).
-- Every hook answers continue: the script changes mail, it never decides.
--
-- Example:
--
--   lua "translate" {
--     path = "scripts/translate.lua"
--     params = {
--       masquerade    = { from = "internal.example", to = "example.test" }
--       add_headers   = { "X-Gateway" = "edge" }
--       strip_headers = ["X-Internal-Id"]
--       tag_subject   = { match = "*@partner.test", tag = "[partner]" }
--       routes        = [{ match = "*.partner.test", transport = "smtp", via = "127.0.0.1:2626" }]
--     }
--   }

local P = gw.params or {}

local function list(v)
  if type(v) ~= "table" then return {} end
  return v
end

local masq_from, masq_to, masq_headers
if type(P.masquerade) == "table" and P.masquerade.from and P.masquerade.to then
  masq_from = string.lower(P.masquerade.from)
  masq_to = P.masquerade.to
  masq_headers = list(P.masquerade.headers)
  if #masq_headers == 0 then masq_headers = { "From" } end
end

local add_names = {}
for name in pairs(list(P.add_headers)) do add_names[#add_names + 1] = name end
table.sort(add_names)

local strip = list(P.strip_headers)
local tag = type(P.tag_subject) == "table" and P.tag_subject.tag and P.tag_subject or nil
local routes = list(P.routes)
for i, r in ipairs(routes) do
  if type(r) ~= "table" or type(r.match) ~= "string" or (r.transport == nil and r.via == nil) then
    error("translate.lua: routes[" .. i .. "] wants { match = glob, transport and/or via }")
  end
end

-- internal reports whether domain d is masq_from or one of its subdomains.
local function internal(d)
  d = string.lower(d)
  return d == masq_from or string.sub(d, -(#masq_from + 1)) == "." .. masq_from
end

-- masquerade rewrites every address of an internal domain in s.
local function masquerade(s)
  return (string.gsub(s, "@([%w%.%-]+)", function(d)
    if internal(d) then return "@" .. masq_to end
  end))
end

function on_mail(ctx)
  if not masq_from then return gw.continue() end
  local sender = ctx.txn.sender or ""
  local l, d = string.match(sender, "^(.*)@([^@]+)$")
  if d and internal(d) then
    ctx:set_sender(l .. "@" .. masq_to)
  end
  return gw.continue()
end

function on_data(ctx)
  local msg = ctx.msg
  if masq_from then
    for _, name in ipairs(masq_headers) do
      local v = msg:header(name)
      if v then
        local nv = masquerade(v)
        if nv ~= v then msg:set_header(name, nv) end
      end
    end
  end
  for _, name in ipairs(strip) do msg:remove_header(name) end
  for _, name in ipairs(add_names) do msg:add_header(name, P.add_headers[name]) end
  if tag and gw.glob(tag.match or "*", ctx.txn.sender or "") then
    local subject = msg:header("Subject")
    if subject == nil or subject == "" then
      msg:set_header("Subject", tag.tag)
    elseif not string.find(subject, tag.tag, 1, true) then
      msg:set_header("Subject", tag.tag .. " " .. subject)
    end
  end
  return gw.continue()
end

-- ctx.arg is the destination domain: the engine asks once per domain.
function on_predelivery(ctx)
  local domain = string.lower(ctx.arg or "")
  for _, r in ipairs(routes) do
    if gw.glob(r.match or "", domain) then
      ctx:set_route({ transport = r.transport or "", via = r.via or "" })
      return gw.continue()
    end
  end
  return gw.continue()
end
