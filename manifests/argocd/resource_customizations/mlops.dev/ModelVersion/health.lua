-- Argo CD health of a mlops.dev ModelVersion, from the Ready and Degraded conditions the
-- operator writes after its digest-verification Job (controllers/modelversion.py):
--   first: metadata.generation not yet observed (no status, no status.observedGeneration, or
--     one below it) -> Progressing "Waiting for the operator to observe generation N";
--     then the kstatus conditions: Stalled True -> Degraded (its message), Reconciling True ->
--     Progressing (its message)
--   Degraded True (ArtifactInvalid: model.onnx missing or its sha256 differs) -> Degraded
--   Ready True (Verified) -> Healthy, naming the aliases the version holds
--   otherwise (not verified yet, Verifying) -> Progressing
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
local ready = condition("Ready")
local degraded = condition("Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = message(degraded, "The model artifact is invalid")
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  local m = message(ready, "Verified")
  if obj.spec ~= nil and obj.spec.aliases ~= nil and #obj.spec.aliases > 0 then
    m = m .. "; holds " .. table.concat(obj.spec.aliases, ", ")
  end
  hs.message = m
else
  hs.status = "Progressing"
  hs.message = message(ready, "Waiting for the operator to verify the model artifact")
end
return hs
