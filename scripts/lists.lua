-- lists.lua: simple mailing lists, with EXPN and VRFY for trusted clients.
--
-- At RCPT, a list address is replaced by the list's members and accepted
-- (when the sender may post). At DATA, the message of a list transaction
-- gets List-Id and List-Post header fields (and List-Unsubscribe when
-- configured), and its envelope sender becomes the list's bounce address,
-- so that delivery failures go to the list owner and not to the poster.
--
-- One list per transaction: a list address after other recipients, or
-- another recipient after a list address, gets 452 4.5.3, which tells the
-- client to send to it in a transaction of its own (RFC 5321 §4.5.3.1.10).
-- A transaction is a list transaction when its recipients are exactly the
-- members of a list (the first such list in name order, should two lists
-- have the same members).
--
-- Params:
--
--   lists          map of list address to a list object (default none):
--     members      list of addresses (required).
--     posters      "members" (default): only an envelope sender that is a
--                  member may post, others get 550 5.7.1; "anyone": all.
--     id           the List-Id (RFC 2919), e.g. "team.example.test";
--                  default: the list address with "@" replaced by ".".
--     name         optional phrase before the List-Id, e.g. "Team list".
--     bounce       envelope sender of list messages; default: unchanged.
--     unsubscribe  optional List-Unsubscribe target (a mailto: or https:
--                  URL), written as <target>.
--   users          list of addresses that VRFY confirms besides the lists;
--                  default none.
--   expn_networks  list of CIDR strings whose clients may use EXPN and
--                  VRFY, besides authenticated clients; default none.
--
-- EXPN of a list answers 250 with one member a line; VRFY of a list or a
-- user answers 250 with the address. For other clients, and for addresses
-- the script does not know, it says nothing and the server's own answer
-- stands (252 to VRFY, 502 to EXPN). A message that already carries the
-- list's own List-Id came back round a loop: 554 5.4.6.
--
-- Stages: rcpt, data, command (VRFY, EXPN).
--
-- Example:
--
--   lua "lists" {
--     path = "scripts/lists.lua"
--     params = {
--       lists = {
--         "team@example.test" = {
--           members = ["alice@example.test", "bob@example.org"]
--           bounce  = "team-bounces@example.test"
--           id      = "team.example.test"
--           posters = "members"
--         }
--       }
--       users         = ["alice@example.test"]
--       expn_networks = ["10.0.0.0/8"]
--     }
--     match { stage = ["rcpt", "data", "command"] }
--   }

local P = gw.params or {}

local function list(v)
  if type(v) ~= "table" then return {} end
  return v
end

local lists = {}  -- lower-case list address → list
local names = {}  -- list addresses in order
for addr, l in pairs(list(P.lists)) do
  local key = string.lower(addr)
  local members, is_member = {}, {}
  for _, m in ipairs(list(l.members)) do
    members[#members + 1] = m
    is_member[string.lower(m)] = true
  end
  if #members == 0 then error("lists.lua: list " .. addr .. " has no members") end
  local posters = l.posters or "members"
  if posters ~= "members" and posters ~= "anyone" then
    error("lists.lua: list " .. addr .. ": posters must be \"members\" or \"anyone\"")
  end
  lists[key] = {
    address = addr,
    members = members,
    is_member = is_member,
    posters = posters,
    id = l.id or string.gsub(key, "@", "."),
    name = l.name,
    bounce = l.bounce,
    unsubscribe = l.unsubscribe,
  }
  names[#names + 1] = key
end
table.sort(names)

local users = {}
for _, u in ipairs(list(P.users)) do users[string.lower(u)] = u end
local expn_networks = list(P.expn_networks)
if #expn_networks > 0 then gw.cidr.contains(expn_networks, "192.0.2.1") end -- a bad CIDR fails the load

-- list_of returns the list whose members are exactly addrs, or nil.
local function list_of(addrs)
  if #addrs == 0 then return nil end
  for _, key in ipairs(names) do
    local l = lists[key]
    local seen, n = {}, 0
    for _, a in ipairs(addrs) do
      local k = string.lower(a)
      if not l.is_member[k] then n = -1; break end
      if not seen[k] then seen[k] = true; n = n + 1 end
    end
    if n == #l.members then return l end
  end
  return nil
end

function on_rcpt(ctx)
  local l = lists[string.lower(ctx.txn.rcpt)]
  local so_far = ctx.txn.recipients or {}
  if l == nil then
    if list_of(so_far) then
      return gw.defer(452, "4.5.3", "Too many recipients, send the rest separately")
    end
    return gw.continue()
  end
  if #so_far > 0 then
    return gw.defer(452, "4.5.3", "Too many recipients, send the rest separately")
  end
  if l.posters == "members" and not l.is_member[string.lower(ctx.txn.sender or "")] then
    gw.log("info", "not a member of the list", { list = l.address, sender = ctx.txn.sender })
    return gw.reject(550, "5.7.1", "Not allowed to post")
  end
  ctx:set_recipients(l.members)
  return gw.accept()
end

function on_data(ctx)
  local l = list_of(ctx.txn.recipients or {})
  if l == nil then return gw.continue() end
  local tag = "<" .. l.id .. ">"
  for _, v in ipairs(ctx.msg:headers("List-Id")) do
    if string.find(v, tag, 1, true) then
      return gw.reject(554, "5.4.6", "Mail loop detected")
    end
  end
  ctx.msg:set_header("List-Id", l.name and (l.name .. " " .. tag) or tag)
  ctx.msg:set_header("List-Post", "<mailto:" .. l.address .. ">")
  if l.unsubscribe then
    ctx.msg:set_header("List-Unsubscribe", "<" .. l.unsubscribe .. ">")
  end
  if l.bounce then ctx:set_sender(l.bounce) end
  return gw.continue()
end

local function trusted(ctx)
  if (ctx.conn.auth_user or "") ~= "" then return true end
  return #expn_networks > 0 and gw.cidr.contains(expn_networks, ctx.conn.ip)
end

-- argument returns the address in a VRFY or EXPN argument: the part in
-- angle brackets if there is one, else the trimmed argument.
local function argument(arg)
  arg = arg or ""
  return string.match(arg, "<([^>]*)>") or string.match(arg, "^%s*(.-)%s*$")
end

function on_command(ctx)
  local verb = ctx.command
  if (verb ~= "EXPN" and verb ~= "VRFY") or not trusted(ctx) then
    return gw.continue()
  end
  local addr = string.lower(argument(ctx.arg))
  local l = lists[addr]
  if verb == "EXPN" then
    if l == nil then return gw.continue() end
    local lines = {}
    for i, m in ipairs(l.members) do lines[i] = "<" .. m .. ">" end
    ctx:reply_lines(lines)
    return gw.accept()
  end
  local known = (l and l.address) or users[addr]
  if known == nil then return gw.continue() end
  ctx:reply_lines({ "<" .. known .. ">" })
  return gw.accept()
end
