"""Lua scripts of the identity graph. Each runs atomically inside Redis.

Every script builds profile keys from the graph prefix it is given, so on Redis Cluster
they rely on every graph key sharing one hash tag (see ``keys.py``). The key layout and
the provenance format are described there.
"""

# Helpers shared by the scripts. ARGV[1] is always the graph key prefix.
_PRELUDE = """
local prefix = ARGV[1]

local function profile_key(id)
  return prefix .. 'p:' .. id
end

local function kind_of(field)
  return string.match(field, '^([^:]+):')
end

-- Follows merge pointers to the live profile. Returns its id and creation time in ms,
-- or nil when a record is missing.
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
"""

# Links the identifiers of one Resolve into one profile under the rules, in one atomic step.
# KEYS: [1] the event stream, [2..] the index keys of the identifiers, highest priority first.
#   Profile keys are found at run time, so they cannot be declared; they share the slot.
# ARGV: [1] graph key prefix, [2] approximate stream max length, [3] id for a new profile,
#   [4] time in ms, [5] the same time in ISO 8601 UTC, [6] source, [7] quarantine
#   threshold (0 turns it off), [8] quarantine window in ms, [9] the kind rules, one line
#   "<kind> <max> <window ms> <1 if unique>" per kind in priority order,
#   [10..] the identifiers' fields "<kind>:<hash>", in the order of KEYS[2..].
# Returns {profile id or '' when nothing was linked, 1 when created else 0,
#   {ids merged into the profile, oldest first},
#   {position, reason, rule kind or '', 1 when quarantined by this call else 0, ...}}
#   where position is 0-based in the identifiers and reason is one of erased,
#   quarantined, unique or limit.
RESOLVE = (
    _PRELUDE
    + """
local now = tonumber(ARGV[4])
local source = ARGV[6]
local threshold = tonumber(ARGV[7])
local claim_window = tonumber(ARGV[8])
local count = #KEYS - 1

local rules = {}
local kind_order = {}
for kind, maximum, window, unique in string.gmatch(ARGV[9], '(%S+) (%d+) (%d+) (%d)') do
  rules[kind] = {max = tonumber(maximum), window = tonumber(window), unique = unique == '1'}
  kind_order[#kind_order + 1] = kind
end

local function field_at(i)
  return ARGV[9 + i]
end

local rejected = {}
local function rejection_list()
  local flat = {}
  for i = 1, count do
    local item = rejected[i]
    if item then
      flat[#flat + 1] = i - 1
      flat[#flat + 1] = item[1]
      flat[#flat + 1] = item[2]
      flat[#flat + 1] = item[3] or 0
    end
  end
  return flat
end

-- What each identifier points at: a live profile, nothing (new), or a marker.
local holder = {}
local created_at = {}
for i = 1, count do
  local value = redis.call('GET', KEYS[i + 1])
  if value then
    local marker = string.sub(value, 1, 2)
    if marker == 'x:' then
      rejected[i] = {'erased', ''}
    elseif marker == 'q:' then
      rejected[i] = {'quarantined', ''}
    else
      local id, created = live_profile(value)
      if id then
        holder[i] = id
        created_at[id] = created
      end
    end
  end
end

-- Fast path: every usable identifier is already on one profile, so nothing changes.
local only = nil
local unchanged = true
for i = 1, count do
  if not rejected[i] then
    if not holder[i] or (only and holder[i] ~= only) then
      unchanged = false
      break
    end
    only = holder[i]
  end
end
if unchanged then
  return {only or '', 0, {}, rejection_list()}
end

-- Counts a profile's links per kind; a kind with a window counts only recent links.
local function link_counts(id)
  local counts = {}
  local links = redis.call('HGETALL', profile_key(id) .. ':links')
  for j = 1, #links, 2 do
    local kind = kind_of(links[j])
    local rule = rules[kind]
    if rule then
      local millis = tonumber(string.match(links[j + 1], '^(%d+)')) or 0
      if rule.window == 0 or millis > now - rule.window then
        counts[kind] = (counts[kind] or 0) + 1
      end
    end
  end
  return counts
end

-- Returns the first kind, in priority order, whose maximum the union would exceed.
-- A side with no value of a kind never breaks that kind's rule, so a profile that is
-- already over a lowered maximum stays usable but cannot grow.
local function broken_kind(group, added)
  for _, kind in ipairs(kind_order) do
    local before = group[kind] or 0
    local extra = added[kind] or 0
    if before > 0 and extra > 0 and before + extra > rules[kind].max then
      return kind
    end
  end
  return nil
end

-- Greedy union in priority order: each identifier joins the group, with its whole
-- profile, unless that would break a rule; then it is rejected and the group goes on.
local group = {}
local members = {}
local member_list = {}
local first_position = {}
local new_positions = {}
local conflicts = {}
for i = 1, count do
  local id = holder[i]
  if not rejected[i] and not (id and members[id]) then
    local added
    if id then
      added = link_counts(id)
    else
      added = {[kind_of(field_at(i))] = 1}
    end
    local kind = broken_kind(group, added)
    if kind then
      rejected[i] = {rules[kind].unique and 'unique' or 'limit', kind}
      local own_rule = rules[kind_of(field_at(i))]
      if id and threshold > 0 and not own_rule.unique then
        conflicts[#conflicts + 1] = {i, id}
      end
    else
      for added_kind, number in pairs(added) do
        group[added_kind] = (group[added_kind] or 0) + number
      end
      if id then
        members[id] = true
        member_list[#member_list + 1] = {id, created_at[id]}
        first_position[id] = i
      else
        new_positions[#new_positions + 1] = i
      end
    end
  end
end

if #member_list == 0 and #new_positions == 0 then
  return {'', 0, {}, rejection_list()}
end

-- The oldest profile survives: earliest creation time, then the lower id.
table.sort(member_list, function(a, b)
  if a[2] ~= b[2] then
    return a[2] < b[2]
  end
  return a[1] < b[1]
end)

local survivor = ARGV[3]
local created = 1
local survivor_anchor = nil
if #member_list == 0 then
  redis.call('HSET', profile_key(survivor), 'created', now, 'state', 'live')
else
  survivor = member_list[1][1]
  created = 0
  survivor_anchor = field_at(first_position[survivor])
end
local survivor_links = profile_key(survivor) .. ':links'
local survivor_merged = profile_key(survivor) .. ':merged'

-- Moves a loser's identifiers and merge history to the survivor, then marks it merged.
-- Profiles merged into the loser earlier are re-pointed, so every chain is one hop.
-- NOTE: links of kinds with a window and the merged set have no cap, so their size,
-- and the time this step blocks Redis, still grows with a profile's age.
local function merge(loser, via)
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
  redis.call('HSET', loser_key, 'state', 'merged', 'into', survivor, 'parent', survivor,
    'merged_at', now, 'merge_source', source, 'merge_via', via,
    'merge_with', survivor_anchor)
end

local merged = {}
for j = 2, #member_list do
  local loser = member_list[j][1]
  merge(loser, field_at(first_position[loser]))
  merged[#merged + 1] = loser
end

-- New identifiers: the anchor is the request's identifier already on the survivor, or
-- for a new profile the first identifier linked to it.
local first_new = nil
for _, i in ipairs(new_positions) do
  local anchor = survivor_anchor or first_new or '-:-'
  redis.call('HSET', survivor_links, field_at(i),
    now .. ':' .. survivor .. ':' .. anchor .. ':' .. source)
  redis.call('SET', KEYS[i + 1], survivor)
  first_new = first_new or field_at(i)
end

-- Claims: the holder and the survivor both claimed a value the rules kept apart. A value
-- claimed by more than threshold profiles within the window is quarantined.
for _, conflict in ipairs(conflicts) do
  local i = conflict[1]
  local owner = conflict[2]
  local claims = prefix .. 'cl:' .. field_at(i)
  redis.call('ZADD', claims, now, owner, now, survivor)
  redis.call('ZREMRANGEBYSCORE', claims, '-inf', '(' .. (now - claim_window))
  redis.call('PEXPIRE', claims, claim_window)
  local claimants = redis.call('ZCARD', claims)
  if claimants > threshold then
    redis.call('SET', KEYS[i + 1], 'q:' .. now .. ':' .. claimants)
    redis.call('HDEL', profile_key(owner) .. ':links', field_at(i))
    redis.call('ZADD', prefix .. 'quarantine', now, field_at(i))
    redis.call('DEL', claims)
    rejected[i][3] = 1
  end
end

if #merged > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
    'type', 'merge', 'profile_id', survivor, 'merged_ids', table.concat(merged, ','),
    'time', ARGV[5])
end
return {survivor, created, merged, rejection_list()}
"""
)

# Reads a profile, following a merged id to the profile it was merged into.
# KEYS: [1] the record key of the requested profile.
# ARGV: [1] graph key prefix, [2] the requested profile id.
# Returns nil for an unknown id, else {live profile id, created ms, flat list of link
# fields and provenance, ids merged into it}.
GET_PROFILE = (
    _PRELUDE
    + """
local id = live_profile(ARGV[2])
if not id then
  return false
end
local key = profile_key(id)
local created = redis.call('HGET', key, 'created')
local links = redis.call('HGETALL', key .. ':links')
local merged = redis.call('SMEMBERS', key .. ':merged')
return {id, created, links, merged}
"""
)

# Reads everything stored about a profile and the profiles merged into it.
# KEYS: [1] the record key of the requested profile.
# ARGV: [1] graph key prefix, [2] the requested profile id.
# Returns nil for an unknown id, else {live profile id, flat record, flat links,
#   {id, created, parent, merged_at, merge_source, merge_via, merge_with, ...}}
#   with '' for a missing record field.
EXPORT_PROFILE = (
    _PRELUDE
    + """
local id = live_profile(ARGV[2])
if not id then
  return false
end
local key = profile_key(id)
local record = redis.call('HGETALL', key)
local links = redis.call('HGETALL', key .. ':links')
local merged = {}
for _, merged_id in ipairs(redis.call('SMEMBERS', key .. ':merged')) do
  local fields = redis.call('HMGET', profile_key(merged_id), 'created', 'parent',
    'merged_at', 'merge_source', 'merge_via', 'merge_with')
  merged[#merged + 1] = merged_id
  for j = 1, 6 do
    merged[#merged + 1] = fields[j] or ''
  end
end
return {id, record, links, merged}
"""
)

# Moves identifiers of a live profile into a new profile and publishes a split event.
# KEYS: [1] the event stream, [2] the record key of the requested profile.
# ARGV: [1] graph key prefix, [2] approximate stream max length, [3] id for the new
#   profile, [4] time in ms, [5] the same time in ISO 8601 UTC, [6] the requested profile
#   id, [7] a merged profile id to undo, or '', [8..] fields to move when [7] is ''.
# Returns {'ok', profile id, new profile id, {field, provenance, ...}, {moved merged ids}}
#   or {'error', code, detail} where code is not_found, not_linked (detail: 0-based
#   position), not_merged, nothing or all.
SPLIT_PROFILE = (
    _PRELUDE
    + """
local now = ARGV[4]
local new_id = ARGV[3]
local live = live_profile(ARGV[6])
if not live then
  return {'error', 'not_found', ARGV[6]}
end
local live_key = profile_key(live)
local links = redis.call('HGETALL', live_key .. ':links')
local provenance = {}
local total = 0
for j = 1, #links, 2 do
  provenance[links[j]] = links[j + 1]
  total = total + 1
end

local selected = {}
local subtree = {}
local undone = ARGV[7]
if undone ~= '' then
  if redis.call('SISMEMBER', live_key .. ':merged', undone) == 0 then
    return {'error', 'not_merged', undone}
  end
  -- A merged profile is in the undone subtree when its parent chain reaches it.
  local inside = {[undone] = true, [live] = false}
  for _, id in ipairs(redis.call('SMEMBERS', live_key .. ':merged')) do
    local path = {}
    local walk = id
    for _ = 1, 10000 do
      if inside[walk] ~= nil or not walk then
        break
      end
      path[#path + 1] = walk
      walk = redis.call('HGET', profile_key(walk), 'parent')
    end
    local answer = walk and inside[walk] or false
    for _, node in ipairs(path) do
      inside[node] = answer
    end
    if answer then
      subtree[#subtree + 1] = id
    end
  end
  for j = 1, #links, 2 do
    local origin = string.match(links[j + 1], '^%d+:([^:]*):')
    if inside[origin] then
      selected[#selected + 1] = links[j]
    end
  end
else
  for i = 8, #ARGV do
    if not provenance[ARGV[i]] then
      return {'error', 'not_linked', i - 8}
    end
    selected[#selected + 1] = ARGV[i]
  end
end

if #selected == 0 then
  return {'error', 'nothing', ''}
end
if #selected >= total then
  return {'error', 'all', ''}
end

local new_key = profile_key(new_id)
redis.call('HSET', new_key, 'created', now, 'state', 'live', 'split_from', live,
  'split_at', now)
local moved = {}
for _, field in ipairs(selected) do
  local millis, link_source = string.match(provenance[field], '^(%d+):[^:]*:[^:]*:[^:]*:(.*)$')
  local rewritten = millis .. ':' .. new_id .. ':-:-:' .. link_source
  redis.call('HDEL', live_key .. ':links', field)
  redis.call('HSET', new_key .. ':links', field, rewritten)
  redis.call('SET', prefix .. 'ix:' .. field, new_id)
  moved[#moved + 1] = field
  moved[#moved + 1] = rewritten
end

for _, id in ipairs(subtree) do
  redis.call('SREM', live_key .. ':merged', id)
  redis.call('SADD', new_key .. ':merged', id)
  redis.call('HSET', profile_key(id), 'into', new_id)
end
if undone ~= '' then
  redis.call('HSET', profile_key(undone), 'parent', new_id)
end

redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
  'type', 'split', 'profile_id', live, 'new_profile_id', new_id, 'time', ARGV[5])
return {'ok', live, new_id, moved, subtree}
"""
)

# Deletes a live profile and every profile merged into it, leaving a tombstone in the
# index key of each of its identifiers, and publishes an erase event.
# KEYS: [1] the event stream, [2] the record key of the requested profile.
# ARGV: [1] graph key prefix, [2] approximate stream max length, [3] the requested
#   profile id, [4] time in ms, [5] the same time in ISO 8601 UTC, [6] tombstone time to
#   live in ms (0 keeps tombstones forever).
# Returns {'ok', profile id, {merged ids}, number of identifiers} or {'error', 'not_found'}.
ERASE_PROFILE = (
    _PRELUDE
    + """
local live = live_profile(ARGV[3])
if not live then
  return {'error', 'not_found'}
end
local ttl = tonumber(ARGV[6])
local key = profile_key(live)

local fields = redis.call('HKEYS', key .. ':links')
for _, field in ipairs(fields) do
  if ttl > 0 then
    redis.call('SET', prefix .. 'ix:' .. field, 'x:' .. ARGV[4], 'PX', ttl)
  else
    redis.call('SET', prefix .. 'ix:' .. field, 'x:' .. ARGV[4])
  end
  redis.call('DEL', prefix .. 'cl:' .. field)
end

local merged = redis.call('SMEMBERS', key .. ':merged')
table.sort(merged)
for _, id in ipairs(merged) do
  redis.call('DEL', profile_key(id), profile_key(id) .. ':links', profile_key(id) .. ':merged')
end
redis.call('DEL', key, key .. ':links', key .. ':merged')

redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
  'type', 'erase', 'profile_id', live, 'merged_ids', table.concat(merged, ','),
  'time', ARGV[5])
return {'ok', live, merged, #fields}
"""
)

# Reads the state of two identifiers and the merge path from each one's origin profile.
# KEYS: [1], [2] the index keys of the two identifiers.
# ARGV: [1] graph key prefix, [2], [3] the identifiers' fields.
# Returns, per identifier, {state, live profile id or '', provenance or '',
#   {id, created, parent, merged_at, merge_source, merge_via, merge_with, ...}} where the
#   list walks from the origin profile up its parents to the first live profile, and
#   state is linked, unknown, quarantined or erased.
EXPLAIN_LINK = (
    _PRELUDE
    + """
local function describe(index_key, field)
  local value = redis.call('GET', index_key)
  if not value then
    return {'unknown', '', '', {}}
  end
  local marker = string.sub(value, 1, 2)
  if marker == 'x:' then
    return {'erased', '', '', {}}
  end
  if marker == 'q:' then
    return {'quarantined', '', '', {}}
  end
  local live = live_profile(value)
  local provenance = live and redis.call('HGET', profile_key(live) .. ':links', field)
  if not provenance then
    return {'unknown', '', '', {}}
  end

  local chain = {}
  local walk = string.match(provenance, '^%d+:([^:]*):')
  for _ = 1, 10000 do
    local record = redis.call('HMGET', profile_key(walk), 'state', 'created', 'parent',
      'merged_at', 'merge_source', 'merge_via', 'merge_with')
    if record[1] ~= 'merged' or not record[3] then
      break
    end
    chain[#chain + 1] = walk
    for j = 2, 7 do
      chain[#chain + 1] = record[j] or ''
    end
    walk = record[3]
  end
  return {'linked', live, provenance, chain}
end

return {describe(KEYS[1], ARGV[2]), describe(KEYS[2], ARGV[3])}
"""
)

# Takes a value out of quarantine.
# KEYS: [1] the value's index key, [2] the quarantine set, [3] the value's claims key.
# ARGV: [1] graph key prefix, [2] the value's field.
# Returns 1 when the value was quarantined and is now released, else 0.
RELEASE_QUARANTINED = """
local value = redis.call('GET', KEYS[1])
if not value or string.sub(value, 1, 2) ~= 'q:' then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""
