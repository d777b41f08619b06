-- Argo CD health of a Ferry CompareTask (ferry.dev/v1alpha1), from the status the operator and
-- the comparison pod write: the phase of the current or last run, its result and per-table rows.
-- Nil-safe: any field may be missing. Lua 5.1 compatible (Argo CD runs gopher-lua).
local hs = {}

local function get(t, ...)
  for i = 1, select("#", ...) do
    if type(t) ~= "table" then
      return nil
    end
    t = t[select(i, ...)]
  end
  return t
end

local function str(v)
  if type(v) == "string" and v ~= "" then
    return v
  end
  return nil
end

local function num(v)
  if type(v) ~= "number" then
    return nil
  end
  if v == math.floor(v) and v > -1e15 and v < 1e15 then
    return string.format("%d", v)
  end
  return tostring(v)
end

local function condition(status, kind)
  local conditions = get(status, "conditions")
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in pairs(conditions) do
    if type(c) == "table" and c.type == kind then
      return c
    end
  end
  return nil
end

local status = get(obj, "status")
local generation = get(obj, "metadata", "generation")
local observed = get(status, "observedGeneration")
if type(observed) ~= "number" or (type(generation) == "number" and observed < generation) then
  hs.status = "Progressing"
  if num(generation) then
    hs.message = "waiting for the operator to observe generation " .. num(generation)
  else
    hs.message = "waiting for the operator to observe the CompareTask"
  end
  return hs
end

local phase = str(get(status, "phase"))
local message = str(get(status, "message"))

-- Stalled: the spec is invalid (status.message says which field and why).
local stalled = condition(status, "Stalled")
if type(stalled) == "table" and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = str(stalled.message) or message or ("stalled in phase " .. (phase or "unknown"))
  return hs
end

if phase == "SUCCESSFUL" then
  local result = str(get(status, "result"))
  -- status.tables in order, skipping holes.
  local tables = {}
  local listed = get(status, "tables")
  if type(listed) == "table" then
    local last = 0
    for i in pairs(listed) do
      if type(i) == "number" and i > last and i <= 100000 then
        last = i
      end
    end
    for i = 1, last do
      if type(listed[i]) == "table" then
        tables[#tables + 1] = listed[i]
      end
    end
  end
  if result == "INCONSISTENT" then
    -- A table differs when a result it has is anything but CONSISTENT (a content result may also
    -- be CAN_NOT_COMPARE: no primary key, compared as a whole).
    local names = {}
    for _, t in ipairs(tables) do
      local o, r, c = get(t, "objectResult"), get(t, "rowsResult"), get(t, "contentResult")
      if (o ~= nil and o ~= "CONSISTENT") or (r ~= nil and r ~= "CONSISTENT")
        or (c ~= nil and c ~= "CONSISTENT" and c ~= "CAN_NOT_COMPARE") then
        names[#names + 1] = str(get(t, "source")) or "?"
      end
    end
    hs.status = "Degraded"
    if #names == 0 then
      hs.message = "INCONSISTENT: the target differs from the source"
    else
      local shown = {}
      for i = 1, math.min(#names, 3) do
        shown[i] = names[i]
      end
      local more = ""
      if #names > 3 then
        more = " and " .. (#names - 3) .. " more"
      end
      hs.message = "INCONSISTENT: " .. #names .. " of " .. #tables .. " tables differ: "
        .. table.concat(shown, ", ") .. more
    end
    return hs
  end
  hs.status = "Healthy"
  if result then
    hs.message = result .. ": " .. #tables .. " tables compared"
  else
    hs.message = "SUCCESSFUL"
  end
  return hs
end

if phase == "FAILED" or phase == "TIMEOUT_INTERRUPT" then
  hs.status = "Degraded"
  hs.message = phase
  if message then
    hs.message = phase .. ": " .. message
  end
  return hs
end

if phase == "CANCELLED" then
  hs.status = "Suspended"
  hs.message = "CANCELLED (spec.cancel)"
  return hs
end

hs.status = "Progressing"
hs.message = phase or "waiting for a phase"
local runs = num(get(status, "runs"))
if phase and runs then
  hs.message = phase .. " (run " .. runs .. ")"
end
return hs
