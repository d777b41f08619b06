-- Argo CD health of a Ferry SyncJob (ferry.dev/v1alpha1), from the status the operator writes:
-- the kstatus conditions Ready and Stalled, the phase, lastError and the worker's progress.
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
    hs.message = "waiting for the operator to observe the SyncJob"
  end
  return hs
end

local phase = str(get(status, "phase"))
local failed = {
  START_JOB_FAILED = true,
  FULL_TRANSFER_FAILED = true,
  INCRE_TRANSFER_FAILED = true,
  CHANGE_JOB_FAILED = true,
  CREATE_FAILED = true,
  RELEASE_RESOURCE_FAILED = true,
}

local function last_error()
  local code = str(get(status, "lastError", "code"))
  local message = str(get(status, "lastError", "message"))
  if code and message then
    return code .. ": " .. message
  end
  return code or message
end

-- Stalled: needs a person (invalid spec, failed precheck, retries exhausted, failed release, or a
-- streaming job whose checkpoint or worker has stopped).
local stalled = condition(status, "Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  local precheck = condition(status, "PrecheckPassed")
  if phase == "CONFIGURATION" and type(precheck) == "table" and precheck.status == "False" then
    hs.message = "precheck failed: " .. (str(precheck.message) or "see status.precheck.items")
  else
    hs.message = str(stalled.message) or last_error() or ("stalled in phase " .. (phase or "unknown"))
  end
  return hs
end

-- A failed phase not (yet) Stalled: retries are left, and the operator restarts the worker after
-- a backoff; or a running job's spec was edited into an invalid one (CHANGE_JOB_FAILED with
-- SPEC_INVALID), which waits for a fixed spec.
if phase and failed[phase] then
  hs.status = "Degraded"
  hs.message = phase
  local err = last_error()
  if err then
    hs.message = hs.message .. ": " .. err
  end
  local code = get(status, "lastError", "code")
  if is_true(condition(status, "Reconciling")) and code ~= "SPEC_INVALID" then
    hs.message = hs.message .. " (retrying)"
  end
  return hs
end

if phase == "PAUSING" then
  hs.status = "Suspended"
  hs.message = "PAUSING: stopped at a checkpoint (spec.paused)"
  return hs
end

local ready = condition(status, "Ready")
local is_ready = is_true(ready)
if ready == nil then
  -- No Ready condition: the operator's rule from the phase alone.
  is_ready = phase == "INCRE_TRANSFER_STARTED" or phase == "RELEASE_RESOURCE_COMPLETE"
    or (phase == "FULL_TRANSFER_COMPLETE" and get(obj, "spec", "taskType") == "FULL_TRANS")
end
if is_ready then
  hs.status = "Healthy"
  hs.message = phase or "Ready"
  local lag = num(get(status, "progress", "lagSeconds"))
  if phase == "INCRE_TRANSFER_STARTED" and lag then
    hs.message = hs.message .. ", lag " .. lag .. "s"
    if is_true(condition(status, "LagOverThreshold")) then
      hs.message = hs.message .. " (over spec.alarm.delaySeconds)"
    end
  end
  return hs
end

hs.status = "Progressing"
hs.message = phase or "waiting for a phase"
local percent = str(get(status, "progress", "percentText"))
if percent and phase ~= "INCRE_TRANSFER_STARTED" then
  hs.message = hs.message .. ", " .. percent
end
return hs
