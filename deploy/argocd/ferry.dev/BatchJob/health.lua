-- Argo CD health of a Ferry BatchJob (ferry.dev/v1alpha1), from the status the operator
-- aggregates from the child SyncJobs: the kstatus conditions Ready and Stalled, the phase and the
-- counts. Nil-safe: any field may be missing. Lua 5.1 compatible (Argo CD runs gopher-lua).
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

local function is_true(c)
  return type(c) == "table" and c.status == "True"
end

local status = get(obj, "status")
local generation = get(obj, "metadata", "generation")
local observed = get(status, "observedGeneration")
if type(observed) ~= "number" or (type(generation) == "number" and observed < generation) then
  hs.status = "Progressing"
  if num(generation) then
    hs.message = "waiting for the operator to observe generation " .. num(generation)
  else
    hs.message = "waiting for the operator to observe the BatchJob"
  end
  return hs
end

local phase = str(get(status, "phase"))
local total = num(get(status, "total")) or "0"
local running = num(get(status, "running")) or "0"
local failed = num(get(status, "failed")) or "0"

-- Stalled: an item is invalid, a child failed or stalled, or the batch spec is invalid (the
-- message names them). FAILED without Stalled: a child name taken by another SyncJob.
local stalled = condition(status, "Stalled")
if is_true(stalled) or phase == "FAILED" then
  hs.status = "Degraded"
  if is_true(stalled) and str(stalled.message) then
    hs.message = stalled.message
  else
    hs.message = "FAILED: " .. failed .. " of " .. total .. " jobs failed or invalid (see status.jobs)"
  end
  return hs
end

if phase == "PAUSED" then
  hs.status = "Suspended"
  hs.message = "PAUSED: " .. total .. " jobs paused (spec.paused)"
  return hs
end

local ready = condition(status, "Ready")
if is_true(ready) or (ready == nil and phase == "COMPLETE") then
  hs.status = "Healthy"
  hs.message = total .. " jobs ready"
  if phase then
    hs.message = phase .. ": " .. hs.message
  end
  return hs
end

hs.status = "Progressing"
hs.message = (phase or "waiting for a phase") .. ": " .. total .. " jobs, " .. running .. " running, "
  .. failed .. " failed"
local waiting = num(get(status, "counts", "WAITING"))
if waiting then
  hs.message = hs.message .. ", " .. waiting .. " waiting"
end
local summary = str(get(ready, "message"))
if summary then
  hs.message = hs.message .. "; " .. summary
end
return hs
