-- Argo CD health of a mlops.dev Dataset, from status.phase and the Ready and Progressing
-- conditions the operator writes (controllers/dataset.py, data/versions.py):
--   Ready True with reason PreviousVersionAvailable (the newest snapshot failed or failed
--     validation; the last valid version keeps feeding training) -> Degraded, saying so
--   Ready True -> Healthy, also while a refresh snapshot runs: a Dataset with a
--     refreshInterval would otherwise flap to Progressing on every refresh
--   Progressing True (first snapshot, or a retry after a failure) -> Progressing
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

local st = obj.status or {}
local ready = condition("Ready")
local progressing = condition("Progressing")
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
