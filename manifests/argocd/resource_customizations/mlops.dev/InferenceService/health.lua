-- Argo CD health of a mlops.dev InferenceService, from the Ready, Progressing and Degraded
-- conditions the operator writes (controllers/inferenceservice.py):
--   first: metadata.generation not yet observed (no status, no status.observedGeneration, or
--     one below it) -> Progressing "Waiting for the operator to observe generation N";
--     then the kstatus conditions: Stalled True -> Degraded (its message), Reconciling True ->
--     Progressing (its message)
--   Progressing True (RollingOut, Canary) -> Progressing: a new rollout is under way, even
--     when an earlier one failed (its Degraded condition is only cleared when this one ends)
--   Degraded True -> Degraded, also while Ready is True: RolloutFailed, CanaryRolledBack and
--     NotRolledOut (the alias or pin names a version that is not Ready or failed before) all
--     mean the version Git asks for is not the one serving; the message says which one keeps
--     serving, so nobody mistakes it for an outage
--   Ready True -> Healthy
--   Ready False (NoModel: no version holds the alias yet, or it is not verified yet;
--     Starting) -> Progressing: in a fresh install the first TrainingRun is still training
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

-- the Degraded reasons whose message already ends "<version> keeps serving"
-- (controllers/inferenceservice.py); NotRolledOut's does not
local NAMES_SERVING = {RolloutFailed = true, CanaryRolledBack = true}

local waiting = unobserved()
if waiting ~= nil then
  return {status = "Progressing", message = waiting}
end
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = message(stalled, stalled.reason or "Stalled")}
end
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  return {status = "Progressing", message = message(reconciling, reconciling.reason or "Reconciling")}
end
local ready = condition("Ready")
local progressing = condition("Progressing")
local degraded = condition("Degraded")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to roll out a model"
elseif progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = message(progressing, "Rolling out")
elseif degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = message(degraded, "Degraded")
  local serving = obj.status.modelVersion
  if ready.status == "True" and serving ~= nil and not NAMES_SERVING[degraded.reason] then
    hs.message = hs.message .. "; " .. serving .. " keeps serving"
  end
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message(ready, "Serving")
else
  hs.status = "Progressing"
  hs.message = "Waiting for a model to serve: " .. message(ready, ready.reason or "not ready")
end
return hs
