-- Argo CD health of a mlops.dev TrainingRun, from status.phase and the Ready condition the
-- operator writes (controllers/trainingrun.py):
--   first (except for a finished run): metadata.generation not yet observed (no status, no
--     status.observedGeneration, or one below it) -> Progressing "Waiting for the operator to
--     observe generation N"; a Succeeded or Failed run is a record the operator never
--     reconciles again (one finished before it wrote observedGeneration must not wait for
--     good; the spec is immutable, so the generation stays 1 anyway);
--     then the kstatus conditions: Stalled True -> Degraded (its message), Reconciling True ->
--     Progressing (its message)
--   no status yet / Pending (waiting for a valid Dataset version) / Running -> Progressing
--   Succeeded -> Healthy ("registered <version>: <metric> <score>" and the promotion decision)
--   Failed (Job failed, invalid parameters, no valid Dataset version) -> Degraded, with why
-- A run is a record: a failed run stays Degraded until it is deleted, like a failed Job.
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

local st = obj.status
local finished = st ~= nil and (st.phase == "Succeeded" or st.phase == "Failed")
if not finished then
  local waiting = unobserved()
  if waiting ~= nil then
    return {status = "Progressing", message = waiting}
  end
end
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = message(stalled, stalled.reason or "Stalled")}
end
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  return {status = "Progressing", message = message(reconciling, reconciling.reason or "Reconciling")}
end

if st == nil or st.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start the training run"
  return hs
end

local ready = condition("Ready")
if st.phase == "Succeeded" then
  hs.status = "Healthy"
  local m = message(ready, "Training succeeded")
  local p = st.promotion
  if p ~= nil and p.decision ~= nil then
    m = m .. "; promotion: " .. p.decision
    if p.reason ~= nil and p.reason ~= "" then
      m = m .. " (" .. p.reason .. ")"
    end
  end
  hs.message = m
elseif st.phase == "Failed" then
  hs.status = "Degraded"
  if st.message ~= nil and st.message ~= "" then
    hs.message = st.message
  else
    hs.message = message(ready, "Training failed")
  end
elseif st.phase == "Pending" then
  hs.status = "Progressing"
  hs.message = message(ready, "Waiting for the training data")
else
  hs.status = "Progressing"
  hs.message = message(ready, "Phase " .. st.phase)
end
return hs
