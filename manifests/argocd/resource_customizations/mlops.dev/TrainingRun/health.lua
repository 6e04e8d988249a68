-- Argo CD health of a mlops.dev TrainingRun, from status.phase and the Ready condition the
-- operator writes (controllers/trainingrun.py):
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

local st = obj.status
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
