-- Argo CD health of a mlops.dev Dataset, from status.phase and the Ready and Progressing
-- conditions the operator writes (controllers/dataset.py, data/versions.py):
--   first: metadata.generation not yet observed (no status, no status.observedGeneration, or
--     one below it) -> Progressing "Waiting for the operator to observe generation N";
--     then Stalled True (kstatus) -> Degraded (its message)
--   Ready True with reason PreviousVersionAvailable (the newest snapshot failed or failed
--     validation; the last valid version keeps feeding training) -> Degraded, saying so
--   Ready True -> Healthy, also while a refresh snapshot runs: a Dataset with a
--     refreshInterval would otherwise flap to Progressing on every refresh
--   Reconciling True (kstatus) or Progressing True (first snapshot, or a retry after a
--     failure) -> Progressing; checked after Ready, for the refresh reason above
--   phase Failed (no valid version at all: SnapshotFailed, NoValidVersion) -> Degraded
--   otherwise (no status yet) -> Progressing
local hs = {}

local function condition(ctype)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == ctype then
        return c
      end
    end
  end
  return nil
end

local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

-- the operator writes status.observedGeneration = metadata.generation on every reconcile: until
-- it has, the status describes an older spec (or none at all)
local function unobserved()
  local gen = obj.metadata ~= nil and obj.metadata.generation or nil
  if type(gen) ~= "number" then
    return nil
  end
  local og = obj.status ~= nil and obj.status.observedGeneration or nil
  if type(og) == "number" and og >= gen then
    return nil
  end
  local m = "Waiting for the operator to observe generation " .. gen
  if type(og) == "number" then
    m = m .. " (the status is of generation " .. og .. ")"
  end
  return m
end

local waiting = unobserved()
if waiting ~= nil then
  return {status = "Progressing", message = waiting}
end
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = message(stalled, stalled.reason or "Stalled")}
end

local st = obj.status or {}
local ready = condition("Ready")
local progressing = condition("Progressing")
local reconciling = condition("Reconciling")
if ready ~= nil and ready.status == "True" then
  if ready.reason == "PreviousVersionAvailable" then
    hs.status = "Degraded"
  else
    hs.status = "Healthy"
  end
  local m = message(ready, "Ready")
  if progressing ~= nil and progressing.status == "True" then
    m = m .. "; " .. message(progressing, "snapshot in progress")
  end
  hs.message = m
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = message(reconciling, reconciling.reason or "Reconciling")
elseif progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = message(progressing, "Snapshotting")
elseif st.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message(ready, "No valid version")
else
  hs.status = "Progressing"
  hs.message = message(ready, "Waiting for the operator to take the first snapshot")
end
return hs
