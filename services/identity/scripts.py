"""Lua scripts of the identity graph. Each runs atomically inside Redis.

Both scripts build profile keys from the graph prefix they are given, so on Redis Cluster
they rely on every graph key sharing one hash tag (see ``keys.py``).
"""

# Links the identifiers of one Resolve into one profile, in one atomic step.
# KEYS: [1] the event stream, [2..] the index keys of the identifiers, in request order.
#   Profile keys are found at run time, so they cannot be declared; they share the slot.
# ARGV: [1] graph key prefix, [2] approximate stream max length, [3] id for a new
#   profile, [4] time in ms, [5] the same time in ISO 8601 UTC, [6] source,
#   [7..] the identifiers' fields "<kind>:<hash>", in request order.
# Returns {profile id, 1 when created else 0, ids of the profiles merged into it...}.
RESOLVE = """
local prefix = ARGV[1]
local now = ARGV[4]
local source = ARGV[6]
local count = #KEYS - 1

local function profile_key(id)
  return prefix .. 'p:' .. id
end

-- Follows merge pointers to the live profile; nil when a record is missing.
local function live_profile(id)
  for _ = 1, 8 do
    local record = redis.call('HMGET', profile_key(id), 'state', 'into', 'created')
    if not record[1] then
      return nil
    end
    if record[1] == 'live' then
      return id, tonumber(record[3]) or 0
    end
    if not record[2] then
      return nil
    end
    id = record[2]
  end
  return nil
end

local function is_older(a, b)
  if a[2] ~= b[2] then
    return a[2] < b[2]
  end
  return a[1] < b[1]
end

-- The live profiles the identifiers point at, oldest first.
local current = {}
local found = {}
local seen = {}
for i = 1, count do
  current[i] = redis.call('GET', KEYS[i + 1])
  if current[i] then
    local id, created = live_profile(current[i])
    if id and not seen[id] then
      seen[id] = true
      found[#found + 1] = {id, created}
    end
  end
end
table.sort(found, is_older)

local survivor = ARGV[3]
local created = 1
if #found == 0 then
  redis.call('HSET', profile_key(survivor), 'created', now, 'state', 'live')
else
  survivor = found[1][1]
  created = 0
end
local survivor_links = profile_key(survivor) .. ':links'
local survivor_merged = profile_key(survivor) .. ':merged'

-- Moves a loser's identifiers and merge history to the survivor, then marks it merged.
-- Profiles merged into the loser earlier are re-pointed, so every chain is one hop.
-- NOTE: the work grows with the loser's links and merged ids, and nothing caps them yet,
-- so one merge of two very large profiles blocks Redis for that long.
local function merge(loser)
  local loser_key = profile_key(loser)
  local links = redis.call('HGETALL', loser_key .. ':links')
  for j = 1, #links, 2 do
    redis.call('HSETNX', survivor_links, links[j], links[j + 1])
    redis.call('SET', prefix .. 'ix:' .. links[j], survivor)
  end
  redis.call('DEL', loser_key .. ':links')

  local earlier = redis.call('SMEMBERS', loser_key .. ':merged')
  for _, id in ipairs(earlier) do
    redis.call('HSET', profile_key(id), 'into', survivor)
    redis.call('SADD', survivor_merged, id)
  end
  redis.call('DEL', loser_key .. ':merged')
  redis.call('SADD', survivor_merged, loser)
  redis.call('HSET', loser_key, 'state', 'merged', 'into', survivor, 'merged_at', now)
end

local reply = {survivor, created}
for i = 2, #found do
  merge(found[i][1])
  reply[#reply + 1] = found[i][1]
end

-- A link keeps the provenance of its first Resolve; later ones do not overwrite it.
for i = 1, count do
  redis.call('HSETNX', survivor_links, ARGV[6 + i], now .. ':' .. survivor .. ':' .. source)
  if current[i] ~= survivor then
    redis.call('SET', KEYS[i + 1], survivor)
  end
end

if #reply > 2 then
  local merged_ids = table.concat(reply, ',', 3)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
    'type', 'merge', 'profile_id', survivor, 'merged_ids', merged_ids, 'time', ARGV[5])
end
return reply
"""

# Reads a profile, following a merged id to the profile it was merged into.
# KEYS: [1] the record key of the requested profile.
# ARGV: [1] graph key prefix, [2] the requested profile id.
# Returns nil for an unknown id, else {live profile id, created ms, flat list of link
# fields and provenance, ids merged into it}.
GET_PROFILE = """
local prefix = ARGV[1]
local id = ARGV[2]
for _ = 1, 8 do
  local key = prefix .. 'p:' .. id
  local record = redis.call('HMGET', key, 'state', 'into', 'created')
  if not record[1] then
    return false
  end
  if record[1] == 'live' then
    local links = redis.call('HGETALL', key .. ':links')
    local merged = redis.call('SMEMBERS', key .. ':merged')
    return {id, record[3], links, merged}
  end
  if not record[2] then
    return false
  end
  id = record[2]
end
return redis.error_reply('the merge chain of ' .. ARGV[2] .. ' is longer than 8 profiles')
"""
