-- lists.lua: mailing lists. plugins/lists is its twin: the two behave the
-- same (scripts/twins_test.go runs one table of cases against both).
--
-- At RCPT, a list address is replaced by the list's members and accepted,
-- when the envelope sender may post to the list. At DATA, the message of
-- a list transaction gets the list's header fields (RFC 2369, RFC 2919)
-- and its envelope sender becomes the list's bounce address, so that
-- delivery failures go to the list's owner and not to the poster.
--
-- Who may post (posters): "members", the members and the owner (others
-- get 550 5.7.1 Not allowed to post to this list, the null sender too);
-- "anyone"; "moderated", the owner only (others get 550 5.7.1 List is
-- moderated; there is no moderation queue, and a moderated list needs an
-- owner).
--
-- One list a transaction: a list address after other recipients gets
-- 452 4.5.3 Send to the list in a separate transaction, and any recipient
-- after a list address 452 4.5.3 Send to this recipient in a separate
-- transaction: the client sends it again in a transaction of its own
-- (RFC 5321 §4.5.3.1.10). This keeps the list's sender and header fields
-- off mail to other recipients. The second rule is kept at the command
-- stage, when RCPT arrives and before any rcpt hook runs, so that it holds
-- even when a hook earlier in the pipeline accepts the recipient (an
-- alias) and the rcpt stage ends before this script sees it.
--
-- How a transaction is known to be a list's: on_rcpt writes the note
-- "list" (ctx.notes["lua.<name>/list"]) with the list address, which the
-- later stages of the transaction see and which ends with it. The note
-- counts while the recipients are exactly the list's members: sending to
-- a list's members one by one is no list post.
--
-- Params:
--
--   lists          map of list address to a list object (default none):
--     members      list of addresses (required, at least one).
--     posters      "members" (default), "anyone" or "moderated".
--     owner        address of the list's owner: may always post, gets
--                  the bounces, and is named in List-Owner. Optional,
--                  except for a moderated list.
--     name         optional phrase before the List-Id, e.g. "Team".
--     id           the List-Id label (RFC 2919); default: the list
--                  address with "@" replaced by ".", in lower case.
--     bounce       envelope sender of the list's messages; default: the
--                  owner, else <list>-bounces@<domain>.
--     unsubscribe  optional List-Unsubscribe target (a mailto: or https:
--                  URL), written as <target>.
--   expn           true: answer EXPN of a list with its members and VRFY
--                  of a list with its address, to trusted clients only:
--                  authenticated ones and those in expn_networks. Default
--                  false.
--   expn_networks  list of CIDR strings (or single IPs) trusted with EXPN
--                  and VRFY besides authenticated clients; default none.
--
-- A post gets List-Id: [name] <id>, List-Post: <mailto:list>,
-- List-Owner: <mailto:owner> (with an owner), List-Unsubscribe: <target>
-- (when set) and Precedence: list, after the fields of those names it
-- carried are removed (with List-Unsubscribe-Post). A message that
-- already carries the list's own List-Id came back round a loop: 554
-- 5.4.6 List loop detected. EXPN of a list answers 250 with one <member>
-- a line; VRFY of one, 250 [name] <list>. Other clients, and addresses
-- that are no list, get the server's own answers (502 to EXPN, 252 to
-- VRFY).
--
-- Stages: rcpt, command (RCPT, VRFY, EXPN), data.
--
-- Example:
--
--   lua "lists" {
--     path = "scripts/lists.lua"
--     params = {
--       lists = {
--         "team@example.test" = {
--           members = ["alice@example.test", "bob@example.org"]
--           owner   = "alice@example.test"
--           name    = "Team"
--         }
--       }
--       expn          = true
--       expn_networks = ["10.0.0.0/8"]
--     }
--     match { stage = ["rcpt", "command", "data"] }
--   }

local P = gw.params or {}

local function list(v)
  if type(v) ~= "table" then return {} end
  return v
end

-- normal returns addr with its domain in lower case.
local function normal(addr)
  local l, d = string.match(addr, "^(.*)@([^@]*)$")
  if not l then error("lists.lua: " .. addr .. " is not an address") end
  return l .. "@" .. string.lower(d)
end

local POSTERS = { members = true, anyone = true, moderated = true }

local function new_list(addr, p)
  local l = { address = normal(addr), members = {}, is_member = {} }
  for _, m in ipairs(list(p.members)) do
    local k = string.lower(m)
    if not l.is_member[k] then
      l.is_member[k] = true
      l.members[#l.members + 1] = normal(m)
    end
  end
  if #l.members == 0 then error("lists.lua: list " .. addr .. " has no members") end
  l.posters = p.posters or "members"
  if not POSTERS[l.posters] then
    error("lists.lua: list " .. addr .. ": posters must be members, anyone or moderated")
  end
  l.owner = p.owner and normal(p.owner)
  if l.posters == "moderated" and not l.owner then
    error("lists.lua: list " .. addr .. " is moderated but has no owner")
  end
  local loc, dom = string.match(l.address, "^(.*)@([^@]*)$")
  l.id = p.id or (string.lower(loc) .. "." .. dom)
  l.name, l.unsubscribe = p.name, p.unsubscribe
  l.bounce = (p.bounce and normal(p.bounce)) or l.owner or (loc .. "-bounces@" .. dom)
  return l
end

local lists = {} -- lower-case list address → list
for addr, p in pairs(list(P.lists)) do
  lists[string.lower(addr)] = new_list(addr, p)
end

local expn = P.expn == true
local expn_networks = list(P.expn_networks)
if #expn_networks > 0 then gw.cidr.contains(expn_networks, "192.0.2.1") end -- a bad CIDR fails the load

-- The fields a post carries that the list's own replace.
local REMOVED = { "List-Id", "List-Post", "List-Owner", "List-Unsubscribe", "List-Unsubscribe-Post", "Precedence" }

-- The transaction's list ------------------------------------------------

-- same reports whether addrs are exactly the members of l.
local function same(l, addrs)
  local seen, n = {}, 0
  for _, a in ipairs(addrs) do
    local k = string.lower(a)
    if not l.is_member[k] then return false end
    if not seen[k] then seen[k] = true; n = n + 1 end
  end
  return n == #l.members
end

-- list_of returns the list whose transaction ctx is, or nil: the list of
-- the note on_rcpt wrote ("<hook>/list", the hook being this script under
-- the name the gateway's config gives it), while the recipients are
-- exactly its members.
local function list_of(ctx)
  local rcpts = ctx.txn and ctx.txn.recipients or {}
  if #rcpts == 0 then return nil end
  for k, v in pairs(ctx.notes) do
    local l = string.sub(k, -5) == "/list" and lists[string.lower(v)]
    if l and same(l, rcpts) then return l end
  end
  return nil
end

-- Hooks -----------------------------------------------------------------

local function may_post(l, sender)
  sender = string.lower(sender or "")
  local owner = sender ~= "" and l.owner ~= nil and sender == string.lower(l.owner)
  if l.posters == "moderated" and not owner then
    return gw.reject(550, "5.7.1", "List is moderated")
  end
  if l.posters == "members" and not owner and not l.is_member[sender] then
    return gw.reject(550, "5.7.1", "Not allowed to post to this list")
  end
  return nil
end

local function after_list()
  return gw.defer(452, "4.5.3", "Send to this recipient in a separate transaction")
end

function on_rcpt(ctx)
  local key = string.lower(ctx.txn.rcpt)
  local l = lists[key]
  if l == nil then
    if list_of(ctx) then return after_list() end
    return gw.continue()
  end
  local refused = may_post(l, ctx.txn.sender)
  if refused then
    gw.log("info", "may not post to the list", { list = l.address, sender = ctx.txn.sender })
    return refused
  end
  if #(ctx.txn.recipients or {}) > 0 then
    return gw.defer(452, "4.5.3", "Send to the list in a separate transaction")
  end
  ctx:note("list", key)
  ctx:set_recipients(l.members)
  return gw.accept()
end

function on_data(ctx)
  local l = list_of(ctx)
  if l == nil then return gw.continue() end
  local tag = string.lower("<" .. l.id .. ">")
  for _, v in ipairs(ctx.msg:headers("List-Id")) do
    if string.find(string.lower(v), tag, 1, true) then
      return gw.reject(554, "5.4.6", "List loop detected")
    end
  end
  for _, f in ipairs(REMOVED) do ctx.msg:remove_header(f) end
  ctx.msg:add_header("List-Id", (l.name and (l.name .. " ") or "") .. "<" .. l.id .. ">")
  ctx.msg:add_header("List-Post", "<mailto:" .. l.address .. ">")
  if l.owner then ctx.msg:add_header("List-Owner", "<mailto:" .. l.owner .. ">") end
  if l.unsubscribe then ctx.msg:add_header("List-Unsubscribe", "<" .. l.unsubscribe .. ">") end
  ctx.msg:add_header("Precedence", "list")
  ctx:set_sender(l.bounce)
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

local function answer(ctx, verb)
  if not expn or not trusted(ctx) then return gw.continue() end
  local l = lists[string.lower(argument(ctx.arg))]
  if l == nil then return gw.continue() end
  if verb == "VRFY" then
    ctx:reply_lines({ (l.name and (l.name .. " ") or "") .. "<" .. l.address .. ">" })
  else
    local lines = {}
    for i, m in ipairs(l.members) do lines[i] = "<" .. m .. ">" end
    ctx:reply_lines(lines)
  end
  return gw.accept()
end

function on_command(ctx)
  local verb = ctx.command
  if verb == "RCPT" then
    if list_of(ctx) then return after_list() end
    return gw.continue()
  end
  if verb == "EXPN" or verb == "VRFY" then return answer(ctx, verb) end
  return gw.continue()
end
