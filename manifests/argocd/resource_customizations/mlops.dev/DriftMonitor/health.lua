-- Argo CD health of a mlops.dev DriftMonitor, from its Ready and Drifted conditions and the
-- retraining it drives (controllers/driftmonitor.py):
--   first: metadata.generation not yet observed (no status, no status.observedGeneration, or
--     one below it) -> Progressing "Waiting for the operator to observe generation N";
--     then the kstatus conditions: Stalled True -> Degraded (its message), Reconciling True ->
--     Progressing (its message)
--   Ready not True (NoServingModel: the InferenceService serves nothing yet; NoReference)
--     -> Progressing
--   Drifted True (DataDrift, AccuracyDegraded, DataDriftAndAccuracy):
--     a retraining in flight (status.retrain.phase Refreshing or Training) -> Progressing;
--     a retraining that succeeded after the last evaluated window -> Progressing (the next
--       window judges the new model);
--     otherwise (retraining disabled, in its cooldown, failed, or the drift outlived the new
--       model) -> Degraded: the served model no longer fits its traffic and nothing is fixing
--       it, which is what an admin watching Argo CD must see
--   Drifted False (NoDrift) or Unknown (InsufficientSamples) or not judged yet -> Healthy
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
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  return {status = "Progressing", message = message(reconciling, reconciling.reason or "Reconciling")}
end
local st = obj.status or {}
local ready = condition("Ready")
local drifted = condition("Drifted")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start monitoring"
  return hs
end
if ready.status ~= "True" then
  hs.status = "Progressing"
  hs.message = message(ready, "Not monitoring yet")
  return hs
end
if drifted == nil or drifted.status ~= "True" then
  hs.status = "Healthy"
  if drifted ~= nil then
    hs.message = message(drifted, message(ready, "Monitoring"))
  else
    hs.message = message(ready, "Monitoring") .. "; no window judged yet"
  end
  return hs
end

local r = st.retrain
local what = message(drifted, "Drift detected")
if r ~= nil and (r.phase == "Refreshing" or r.phase == "Training") then
  hs.status = "Progressing"
  local run = r.trainingRun or ("Dataset " .. (r.dataset or "") .. " refresh")
  hs.message = what .. "; retraining in progress (" .. run .. ")"
elseif r ~= nil and r.phase == "Succeeded" and r.finishedAt ~= nil and
    (st.lastEvaluationTime == nil or st.lastEvaluationTime <= r.finishedAt) then
  -- RFC 3339 UTC timestamps of one format compare correctly as strings
  hs.status = "Progressing"
  hs.message = (r.result or "retrained") .. "; waiting for the next window"
else
  hs.status = "Degraded"
  if r ~= nil and r.phase == "Failed" then
    hs.message = what .. "; " .. (r.result or "the last retraining failed")
  elseif obj.spec == nil or obj.spec.retrain == nil or obj.spec.retrain.enabled ~= true then
    hs.message = what .. "; retraining is not enabled"
  else
    -- why the operator starts no retraining is in status.message, after the latest window's
    -- summary: "<summary>; retraining not started: in cooldown for another 80s (last: ...)".
    -- Cutting the summary off would take string.find, which Argo CD's sandbox lacks, so
    -- status.message is added whole (its summary may repeat the Drifted message's), unless it
    -- is only the summary the Drifted message already holds
    hs.message = what
    if st.message ~= nil and st.message ~= "" and "data drift: " .. st.message ~= what then
      hs.message = what .. "; latest window: " .. st.message
    end
  end
end
return hs
