// Every Lua script of the Redis cache, as commented constants: each runs atomically in one round trip,
// touches only keys passed in KEYS (one user's hash tag, so one Cluster slot) and never trusts stored data.
//
// Stored layout (lib/cache/entity-codec.ts): an entity is a hash of `g` (generation), `v` (version),
// `t` ('1' for a tombstone) and data fields; an RPM counter is a hash of one field, named by its minute
// bucket, holding the count; a user's change stamp is a string (CHANGE_STAMP_LUA). Memory mirror:
// lib/cache/memory-cache.ts implements the same branches in TypeScript (it has no stamps: it
// answers in process, so it never needs to tell a client that its last reply is still current).
import { RPM_COUNTER_TTL_SEC } from './ttl.js';

/**
 * Shared helpers, prepended to the scripts that need them (exported for the Lua/TypeScript parity test).
 * - `int_in` mirrors checkField's integer rule: at most 17 characters of a canonical integer (no
 *   leading zeros, no negative zero), within [lo, hi].
 * - `valid` mirrors checkField for the rule strings of `luaRule` (i|lo|hi, n|lo|hi, e|a|b|, s|max).
 * - `load` reads a key as a hash; a key of another type (foreign or corrupt data) reads as absent
 *   instead of failing the script with WRONGTYPE, and `store` replaces it.
 * - `store` rewrites the entry from scratch, so fields of an older shape (a sentinel's `x`, a
 *   tombstone's `t`) never linger next to new data.
 */
export const LUA_HELPERS = `
local MAX_SAFE = ${Number.MAX_SAFE_INTEGER}

local function int_in(text, lo, hi)
  if type(text) ~= 'string' or #text > 17 or not string.match(text, '^%-?%d+$') then return nil end
  -- Canonical only, as the client writes integers: no leading zeros, no negative zero.
  if string.match(text, '^%-?0.') or text == '-0' then return nil end
  local n = tonumber(text)
  if n < lo or n > hi then return nil end
  return n
end

local function meta(text)
  return int_in(text, 0, MAX_SAFE)
end

local function valid(rule, text)
  if type(text) ~= 'string' then return false end
  local kind = string.sub(rule, 1, 1)
  if kind == 'i' or kind == 'n' then
    if text == '' then return kind == 'n' end
    local lo, hi = string.match(rule, '^.|(%-?%d+)|(%-?%d+)$')
    return int_in(text, tonumber(lo), tonumber(hi)) ~= nil
  elseif kind == 'e' then
    return string.find(text, '|', 1, true) == nil and string.find(rule, '|' .. text .. '|', 2, true) ~= nil
  elseif kind == 's' then
    return #text >= 1 and #text <= tonumber(string.sub(rule, 3))
  end
  return false
end

local function load(key)
  if redis.call('TYPE', key)['ok'] ~= 'hash' then return nil end
  local flat = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

local function store(key, g, version, first, step, ttl_ms)
  redis.call('DEL', key)
  local args = { 'g', string.format('%d', g), 'v', version }
  for i = first, #ARGV, step do
    args[#args + 1] = ARGV[i]
    args[#args + 1] = ARGV[i + 1]
  end
  redis.call('HSET', key, unpack(args))
  redis.call('PEXPIRE', key, ttl_ms)
end
`;

/**
 * The user's change stamp (`<prefix>{u:<id>}:chg`), so the counting read below can tell in one GET
 * whether any of the user's entities was written since a client read them. Every entity write
 * (fill, put, invalidate) moves it to max(stamp + 1, server time in µs); a read that finds none
 * (never written, expired, foreign data) creates one the same way. Time-based, not a plain
 * counter, so a stamp lost and created again starts above every stamp handed out before (unless
 * the server's clock went back by more than the stamp's lifetime). It lives a day from its last
 * write. Expiry does not move it: the counting read checks that the entities still exist.
 */
export const CHANGE_STAMP_LUA = `
local STAMP_TTL_MS = 86400000

local function new_stamp(key)
  local time = redis.call('TIME')
  local stamp = tonumber(time[1]) * 1000000 + tonumber(time[2])
  local previous = redis.pcall('GET', key)
  if type(previous) == 'string' and string.match(previous, '^%d+$') and #previous <= 16 and tonumber(previous) >= stamp then
    stamp = tonumber(previous) + 1
  end
  local text = string.format('%d', stamp)
  redis.call('SET', key, text, 'PX', STAMP_TTL_MS)
  return text
end

local function current_stamp(key)
  local stamp = redis.pcall('GET', key)
  if type(stamp) == 'string' then return stamp end
  return new_stamp(key)
end
`;

/**
 * The batched read: HGETALL of every key in KEYS, in order, as a JSON array of flat arrays.
 * A key that is not a hash answers 0 (a miss), so foreign data cannot fail the read; an absent key
 * answers [] or {} (cjson cannot tell an empty table's kind), also a miss.
 * One JSON string instead of nested RESP arrays because this runs on every request: the client
 * then decodes one bulk string with JSON.parse instead of ~50 small ones (docs/benchmark.md), and pcall
 * spares a TYPE call per key. Decoding and validation happen in TypeScript (inspectEntry),
 * identically for both caches. `read_entities(n)` reads KEYS[1..n]; the counting read below shares it.
 */
const READ_ENTITIES_LUA = `
local function read_entities(n)
  local out = {}
  for i = 1, n do
    local flat = redis.pcall('HGETALL', KEYS[i])
    if flat['err'] then out[i] = 0 else out[i] = flat end
  end
  return cjson.encode(out)
end
`;

/** KEYS[1..n] = entities, KEYS[n+1] = the user's change stamp. Returns { stamp, JSON text }. */
export const READ_BATCH_LUA = `${CHANGE_STAMP_LUA}${READ_ENTITIES_LUA}
local n = #KEYS - 1
return { current_stamp(KEYS[n + 1]), read_entities(n) }
`;

/**
 * Fill after a miss. KEYS[1] = entity, KEYS[2] = the user's change stamp (moved when applied);
 * ARGV = generation, version, ttl ms, then (field, value, rule) triples. Applied iff the stored
 * generation (0 when absent or unreadable) equals the one the miss reported — no invalidation
 * since the store read began — and there is no intact live value at the same or a newer version.
 * A live value whose fields break their rules counts as absent, so a fill repairs corrupt data
 * instead of being refused by its version forever. Returns 1 when applied, 0 when refused.
 */
export const FILL_LUA = `${LUA_HELPERS}${CHANGE_STAMP_LUA}
local key = KEYS[1]
local generation = tonumber(ARGV[1])
local version = tonumber(ARGV[2])
local h = load(key)
local g = 0
if h then g = meta(h['g']) or 0 end
if g ~= generation then return 0 end
if h and h['t'] ~= '1' then
  local v = meta(h['v'])
  if v ~= nil and v >= version then
    local intact = true
    for i = 4, #ARGV, 3 do
      -- An entry from before store holds existed has no held field: it holds nothing (entity-codec.ts).
      local text = h[ARGV[i]]
      if text == nil and ARGV[i] == 'h' then text = '0' end
      if not valid(ARGV[i + 2], text) then
        intact = false
        break
      end
    end
    if intact then return 0 end
  end
end
store(key, g, ARGV[2], 4, 3, ARGV[3])
new_stamp(KEYS[2])
return 1
`;

/**
 * Versioned write from a settlement or an administration write. KEYS[1] = entity, KEYS[2] = the
 * user's change stamp (moved when applied); ARGV = version, ttl ms, then (field, value) pairs.
 * Applied iff the version is newer than the stored one — live or tombstone; absent or unreadable
 * counts as none. The generation is kept: a put does not undo an invalidation's effect on fills
 * already in flight. Returns 1 when applied, 0 when refused.
 */
export const PUT_LUA = `${LUA_HELPERS}${CHANGE_STAMP_LUA}
local key = KEYS[1]
local h = load(key)
local g = 0
if h then
  g = meta(h['g']) or 0
  local v = meta(h['v'])
  if v ~= nil and tonumber(ARGV[1]) <= v then return 0 end
end
store(key, g, ARGV[1], 3, 2, ARGV[2])
new_stamp(KEYS[2])
return 1
`;

/**
 * Invalidation (docs/behaviour.md#invalidation). KEYS[1] = entity, KEYS[2] = the user's change stamp (moved);
 * ARGV[1] = tombstone ttl ms. Drops the data, bumps the generation (so fills that read the store
 * before now are refused) and keeps the last readable version (so puts older than the dropped
 * value stay refused). Returns the new generation.
 */
export const INVALIDATE_LUA = `${LUA_HELPERS}${CHANGE_STAMP_LUA}
local key = KEYS[1]
local h = load(key)
local g = 0
local v = nil
if h then
  g = meta(h['g']) or 0
  v = meta(h['v'])
end
redis.call('DEL', key)
if v ~= nil then
  redis.call('HSET', key, 'g', string.format('%d', g + 1), 't', '1', 'v', string.format('%d', v))
else
  redis.call('HSET', key, 'g', string.format('%d', g + 1), 't', '1')
end
redis.call('PEXPIRE', key, ARGV[1])
new_stamp(KEYS[2])
return g + 1
`;

/**
 * RPM (docs/behaviour.md#requests-per-minute) on the server's clock, so every gateway instance shares the same minute buckets.
 * `rpm_hit(user counter, user-in-group counter or nil when no group cap applies, user cap (0 =
 * none), group cap)`; RPM_HIT_LUA passes KEYS[1], KEYS[2], ARGV[1] and ARGV[2].
 * Order and side effects are the contract: the group counter first, and a request over the group
 * cap returns before touching the user counter; a request over the user cap has already counted
 * in the group. A counter is a hash with one field, named by its minute bucket, holding the count: a
 * hit within the bucket is one HINCRBY. A counter from an older bucket (the increment creates the
 * field at 1) or unreadable restarts as that one field, living RPM_COUNTER_TTL_SEC from then.
 * `server_ms` (optional) is the server's time the caller already read, so one script reads TIME once.
 * Returns `<outcome> <group count> <user count> <now ms>` (outcome 0 allowed, 1 group exceeded,
 * 2 user exceeded): one string, because ioredis decodes a reply element by element and this runs
 * on every request; the client derives the bucket's end from the time (lib/cache/rpm.ts).
 */
const RPM_HIT_FUNCTION_LUA = `
local RPM_MAX_COUNT = ${Number.MAX_SAFE_INTEGER}
local RPM_TTL_SEC = ${RPM_COUNTER_TTL_SEC}

local function rpm_hit(user_key, group_key, user_cap, group_cap, server_ms)
  -- server_ms: the caller's TIME reading in ms, when it already made one.
  local now_ms = server_ms
  if now_ms == nil then
    local time = redis.call('TIME')
    now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  end
  local sec = math.floor(now_ms / 1000)
  local field = string.format('%d', math.floor(sec / 60))

  -- Within the bucket a hit is one HINCRBY: the counter's TTL was set when its bucket began, so it
  -- already outlives the bucket. Anything else — the field just created (a new bucket), a count
  -- that is not a positive safe integer, not a hash — starts over as this bucket's field at 1.
  local function hit(key)
    local count = redis.pcall('HINCRBY', key, field, 1)
    if type(count) == 'number' and count > 1 and count <= RPM_MAX_COUNT then return count end
    redis.call('DEL', key)
    redis.call('HSET', key, field, '1')
    redis.call('EXPIRE', key, RPM_TTL_SEC)
    return 1
  end

  local outcome, group_count, user_count = 0, 0, 0
  if group_key then
    group_count = hit(group_key)
    if group_count > group_cap then outcome = 1 end
  end
  if outcome == 0 and user_cap > 0 then
    user_count = hit(user_key)
    if user_count > user_cap then outcome = 2 end
  end
  return string.format('%d %d %d %d', outcome, group_count, user_count, now_ms)
end
`;

export const RPM_HIT_LUA = `${RPM_HIT_FUNCTION_LUA}
return rpm_hit(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))
`;

/**
 * The batched read and the RPM hit in one round trip (docs/benchmark.md), for a request whose checks pass on
 * the reply the client last decoded for the same keys. KEYS[1..n] = entities as for READ_BATCH_LUA,
 * KEYS[n+1] = the user's change stamp, KEYS[n+2] = user counter, KEYS[n+3] = user-in-group counter
 * (optional); ARGV = n, the stamp of that reply, then the RPM script's ARGV. The client offers to
 * count only when every entity of that reply was a hit, so the hit is applied only when the stamp
 * is unchanged (no entity of the user was written since) and every entity key still exists (none
 * expired or was evicted since): the checks were decided on the data stored now, and refused
 * requests still never count (docs/behaviour.md#the-chain-in-order) — without reading the entities at all.
 * Returns the RPM script's reply (a string) when counted, or { stamp, JSON text } as READ_BATCH_LUA
 * when something changed: nothing counted, the client checks the fresh reply and runs the RPM
 * script on its own.
 */
export const READ_BATCH_COUNTING_LUA = `
local n = tonumber(ARGV[1])
-- The counting path first, defining only what it needs: every function a script defines is a
-- closure made on every call, and this path runs on every warm request.
if redis.pcall('GET', KEYS[n + 1]) == ARGV[2] and redis.call('EXISTS', unpack(KEYS, 1, n)) == n then
${RPM_HIT_FUNCTION_LUA}
  return rpm_hit(KEYS[n + 2], KEYS[n + 3], tonumber(ARGV[3]), tonumber(ARGV[4]))
end
${CHANGE_STAMP_LUA}${READ_ENTITIES_LUA}
return { current_stamp(KEYS[n + 1]), read_entities(n) }
`;

/**
 * One user's lease book (docs/holds.md, "Constant time"), prepended to the lease scripts. KEYS[1] =
 * the lease hash (lease id → `<expiresAtMs>|<amount>|<dim>,<dim>|<slot>,<slot>`), KEYS[2] = the
 * totals hash (dimension → units held, slot → leases holding it, `#n` → leases booked), KEYS[3] = the
 * expiry index (sorted set of lease ids by expiresAtMs). Every booked lease is counted in the totals
 * and indexed exactly once, so admission reads one total per dimension, and only expired leases are
 * ever taken out of the index: each operation costs the same however many leases are open.
 * Memory mirror: lib/cache/lease-book.ts.
 */
const LEASE_BOOK_LUA = `
local lease_key, totals_key, expiry_key = KEYS[1], KEYS[2], KEYS[3]
local LEASE_COUNT = '#n'

local function server_now()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- expiresAtMs, amount, dimension list, slot list; nil when unreadable. Leases from before slots
-- existed have no slot list.
local function parse_lease(value)
  if type(value) ~= 'string' then return nil end
  local exp, amt, dims, slots = string.match(value, '^(%d+)|(%d+)|([^|]*)|?([^|]*)$')
  if exp == nil or #exp > 16 or #amt > 16 then return nil end
  return tonumber(exp), tonumber(amt), dims, slots
end

-- The change a lease makes to the totals, name → delta (sign 1 books it, -1 takes it out).
local function lease_deltas(sign, amt, dims, slots)
  local deltas = { [LEASE_COUNT] = sign }
  if amt > 0 then
    for d in string.gmatch(dims, '[^,]+') do deltas[d] = (deltas[d] or 0) + sign * amt end
  end
  for s in string.gmatch(slots, '[^,]+') do deltas[s] = (deltas[s] or 0) + sign end
  return deltas
end

-- Applies deltas with one read and one write of the totals hash (zero totals are removed).
local function apply_deltas(deltas, known)
  local names, missing = {}, {}
  for name in pairs(deltas) do
    names[#names + 1] = name
    if known == nil or known[name] == nil then missing[#missing + 1] = name end
  end
  local current = known or {}
  if #missing > 0 then
    local read = redis.call('HMGET', totals_key, unpack(missing))
    for i, name in ipairs(missing) do current[name] = tonumber(read[i]) or 0 end
  end
  local set, zero = {}, {}
  for _, name in ipairs(names) do
    local total = (current[name] or 0) + deltas[name]
    current[name] = total
    if total == 0 then zero[#zero + 1] = name else set[#set + 1] = name; set[#set + 1] = string.format('%d', total) end
  end
  if #set > 0 then redis.call('HSET', totals_key, unpack(set)) end
  if #zero > 0 then redis.call('HDEL', totals_key, unpack(zero)) end
end

-- Books a lease (its value is well formed); known: totals already read, kept up to date.
local function book(id, value, known)
  local exp, amt, dims, slots = parse_lease(value)
  if exp == nil then return end
  redis.call('HSET', lease_key, id, value)
  redis.call('ZADD', expiry_key, exp, id)
  apply_deltas(lease_deltas(1, amt, dims, slots), known)
end

local function unbook(id, value, known)
  redis.call('HDEL', lease_key, id)
  redis.call('ZREM', expiry_key, id)
  local exp, amt, dims, slots = parse_lease(value)
  if exp ~= nil then apply_deltas(lease_deltas(-1, amt, dims, slots), known) end
end

-- The three keys live at least ttl longer. Set to twice that when they would live less, so that
-- a busy user's keys are extended once per ttl, not on every reserve.
local function keep_alive(ttl)
  if redis.call('PTTL', lease_key) < ttl then
    redis.call('PEXPIRE', lease_key, 2 * ttl)
    redis.call('PEXPIRE', totals_key, 2 * ttl)
    redis.call('PEXPIRE', expiry_key, 2 * ttl)
  end
end

-- Totals and index agree with the lease hash iff all three count the same leases. Anything else (a
-- key evicted or expired alone, foreign data, a key of another type) rebuilds them from the hash, once.
local function book_intact()
  local n = redis.pcall('HGET', totals_key, LEASE_COUNT)
  local len = redis.pcall('HLEN', lease_key)
  local zlen = redis.pcall('ZCARD', expiry_key)
  if type(len) ~= 'number' or type(zlen) ~= 'number' or type(n) == 'table' then return false end
  if n == false then n = 0 else n = tonumber(n) end
  return n == len and zlen == len
end

local function rebuild(now)
  local flat = {}
  if redis.call('TYPE', lease_key)['ok'] == 'hash' then flat = redis.call('HGETALL', lease_key) end
  redis.call('DEL', lease_key, totals_key, expiry_key)
  for i = 1, #flat, 2 do book(flat[i], flat[i + 1]) end
  local last = redis.call('ZRANGE', expiry_key, -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) > now then keep_alive(tonumber(last[2]) - now) end
end

-- Opens the book at the server's time now: intact, and every lease expired by now taken out (an
-- expired lease stops counting at its expiry, whenever it is swept).
local function open_book(now)
  if not book_intact() then rebuild(now) end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', expiry_key, '-inf', now)) do
    unbook(id, redis.call('HGET', lease_key, id))
  end
end
`;

/**
 * Reservation admission, all or nothing, on the server's clock. KEYS[1..3] = the user's lease book
 * (LEASE_BOOK_LUA); KEYS[4..] = the entity hashes the dimensions read. ARGV = lease id, amount, ttl ms,
 * deadline (server ms; 0 = none: a command that runs after its caller gave up on it, e.g. buffered
 * while the server was frozen, must not hold anything nobody will release — see docs/faults.md),
 * number of money dimensions, the RPM hit to count once the holds fit (index into KEYS of the user
 * counter, 0 = none; of the user-in-group counter, 0 = none; user cap; group cap — RPM_HIT_LUA's
 * rules), replace only ('1': the lease must be open, else { 'gone' } and nothing changes — a hold
 * that grows never revives one that ended; it keeps its slots, and an enforced dimension whose row
 * is not cached answers { 'stale', name }, since the fallbacks date from the admission), then 9 per
 * money dimension: name, kind ('b' balance | 'w' window),
 * index into KEYS, usage (or balance) field, start field, expiry threshold, capacity (balance:
 * fallback balance; window: limit), fallback usage, enforced ('1' | '0'); then 3 per slot: name,
 * limit, enforced.
 * Capacity and usage come from the live entity when it is cached — read here, atomically with the
 * totals, so a settlement that landed since the caller's read is counted — else from the caller's
 * fallbacks. A slot admits iff holders + 1 ≤ limit, a dimension iff used + held + amount ≤ capacity;
 * slots are checked first, and the first enforced one that does not admit names the denial and nothing is held; unenforced ones (shadow
 * mode) never refuse, and the first that would have is named in the reply.
 * RPM runs last: it is counted only when every enforced part fits, and a request it refuses holds
 * nothing (its counters count it, as RPM_HIT_LUA's do).
 * Returns { 'reserved', expiresAtMs, over or '', the RPM reply or '', holders of each slot … },
 * { 'denied', name, available, now }, { 'rpm', the RPM reply }, { 'gone' }, { 'stale', name } or
 * { 'late', now }.
 * Memory mirror: admit() in lib/cache/leases.ts, then MemoryBillingCache's RPM hit.
 */
export const RESERVE_LUA = `${LUA_HELPERS}${LEASE_BOOK_LUA}${RPM_HIT_FUNCTION_LUA}
local now = server_now()
local lease_id = ARGV[1]
local amount = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local deadline = tonumber(ARGV[4])
local money_dims = tonumber(ARGV[5])
local rpm_user_index, rpm_group_index = tonumber(ARGV[6]), tonumber(ARGV[7])
local rpm_user_cap, rpm_group_cap = tonumber(ARGV[8]), tonumber(ARGV[9])
local replace_only = ARGV[10] == '1'
if deadline > 0 and now > deadline then return { 'late', string.format('%d', now) } end
open_book(now)

-- A re-reserve of the same lease id replaces it: its own holdings do not count against it.
local previous = redis.call('HGET', lease_key, lease_id)
if replace_only and not previous then return { 'gone' } end
local own = {}
local own_exp, own_amount, own_dims, own_slots = parse_lease(previous)
if own_exp ~= nil then own = lease_deltas(1, own_amount, own_dims, own_slots) end

-- Every total this reserve reads, in one HMGET: the dimensions', the slots', the lease count.
local slot_base = 11 + money_dims * 9
local total_names = { LEASE_COUNT }
for i = 11, slot_base - 1, 9 do total_names[#total_names + 1] = ARGV[i] end
for i = slot_base, #ARGV, 3 do total_names[#total_names + 1] = ARGV[i] end
local totals = {}
local read = redis.call('HMGET', totals_key, unpack(total_names))
for i, name in ipairs(total_names) do totals[name] = tonumber(read[i]) or 0 end
local function held(name)
  return totals[name] - (own[name] or 0)
end

-- Each entity hash once, with the fields of every dimension on it; a key of another type reads as not cached.
local fields_of = {}
for i = 11, slot_base - 1, 9 do
  local index = tonumber(ARGV[i + 2])
  local fields = fields_of[index]
  if fields == nil then
    fields = { 't', 'v', 'h' }
    fields_of[index] = fields
  end
  fields[#fields + 1] = ARGV[i + 3]
  if ARGV[i + 4] ~= '' then fields[#fields + 1] = ARGV[i + 4] end
end
local entities = {}
for index, fields in pairs(fields_of) do
  local ok, values = pcall(redis.call, 'HMGET', KEYS[index], unpack(fields))
  if ok and values[1] ~= '1' and meta(values[2]) ~= nil then
    local h = {}
    for j, field in ipairs(fields) do h[field] = values[j] end
    entities[index] = h
  end
end

local over = ''
local function refuse(name, enforced, available)
  if enforced == '1' then return { 'denied', name, string.format('%d', available), string.format('%d', now) } end
  if over == '' then over = name end
  return nil
end

-- Slots first: a user at its concurrency cap is told to retry soon, not that its money is gone
-- (what the open requests hold comes back when they end).
local slots = {}
for i = slot_base, #ARGV, 3 do
  local name, limit, enforced = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local holders = held(name)
  -- A hold that grows keeps the slot it has, whatever the others hold meanwhile.
  if holders + 1 > limit and not (replace_only and own[name]) then
    local denial = refuse(name, enforced, limit - holders)
    if denial then return denial end
  end
  slots[#slots + 1] = name
end

local names = {}
for i = 11, slot_base - 1, 9 do
  local name, kind, index = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local usage_field, start_field, threshold = ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  local capacity, used, enforced = tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7]), ARGV[i + 8]
  local h = entities[index]
  local live = false
  if h then
    local value = int_in(h[usage_field], -MAX_SAFE, MAX_SAFE)
    -- Store holds on the row (absent in entries from before they existed): they take from the
    -- balance and count in every window of the row (docs/holds.md).
    local store_held = 0
    if h['h'] then store_held = int_in(h['h'], 0, MAX_SAFE) end
    if value ~= nil and store_held ~= nil then
      live = true
      if kind == 'b' then
        capacity = value - store_held
      else
        local start = h[start_field]
        if start == '' then
          used = store_held
        else
          local start_ms = int_in(start, 0, MAX_SAFE)
          if start_ms ~= nil then
            if start_ms < threshold then used = store_held else used = value + store_held end
          end
        end
      end
    end
  end
  -- The caller's fallbacks date from its admission; a hold that grows later must see the live row.
  if replace_only and not live and enforced == '1' then return { 'stale', name } end
  local open = held(name)
  if used + open + amount > capacity then
    local denial = refuse(name, enforced, capacity - used - open)
    if denial then return denial end
  end
  names[#names + 1] = name
end

local rpm_reply = ''
if rpm_user_index > 0 then
  local group_key = nil
  if rpm_group_index > 0 then group_key = KEYS[rpm_group_index] end
  rpm_reply = rpm_hit(KEYS[rpm_user_index], group_key, rpm_user_cap, rpm_group_cap, now)
  if string.sub(rpm_reply, 1, 1) ~= '0' then return { 'rpm', rpm_reply } end
end

if previous then unbook(lease_id, previous, totals) end
local expires_at = string.format('%d', now + ttl)
book(lease_id, expires_at .. '|' .. ARGV[2] .. '|' .. table.concat(names, ',') .. '|' .. table.concat(slots, ','), totals)
keep_alive(ttl)
local reply = { 'reserved', expires_at, over, rpm_reply }
for _, name in ipairs(slots) do reply[#reply + 1] = string.format('%d', totals[name]) end
return reply
`;

/**
 * Release. KEYS[1..3] = the user's lease book; ARGV[1] = lease id. Returns 1 when the lease was open
 * and is now taken out, 0 when it was unknown, expired or released already (nothing changes: no
 * release gives anything back twice).
 */
export const RELEASE_LUA = `${LEASE_BOOK_LUA}
open_book(server_now())
local value = redis.call('HGET', lease_key, ARGV[1])
if not value then return 0 end
unbook(ARGV[1], value)
return 1
`;

/**
 * Renewal of a process's open leases of one user. KEYS[1..3] = the user's lease book; ARGV[1] = ttl
 * ms, ARGV[2..] = lease ids. Each open lease lives at least ttl from now (never shortened); one that
 * is unknown or expired is not revived. Returns the ids that were not renewed.
 */
export const RENEW_LUA = `${LEASE_BOOK_LUA}
local now = server_now()
local ttl = tonumber(ARGV[1])
open_book(now)
local expires_at = now + ttl
local lost = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local value = redis.call('HGET', lease_key, id)
  local exp = parse_lease(value)
  if exp == nil then
    lost[#lost + 1] = id
  elseif expires_at > exp then
    redis.call('HSET', lease_key, id, string.format('%d', expires_at) .. string.match(value, '^%d+(|.*)$'))
    redis.call('ZADD', expiry_key, expires_at, id)
  end
end
keep_alive(ttl)
return lost
`;

/** The server's time in ms, on the node that serves KEYS[1]: a clock sample where no reply brought one. */
export const SERVER_TIME_LUA = `
local time = redis.call('TIME')
return string.format('%d', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
`;

/** The user's lease hash with the server's time: { nowMs, field, value, field, value, … }. KEYS[1] = lease hash. */
export const LIST_LEASES_LUA = `
local time = redis.call('TIME')
local out = { string.format('%d', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)) }
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' then
  local flat = redis.call('HGETALL', KEYS[1])
  for i = 1, #flat do out[#out + 1] = flat[i] end
end
return out
`;
