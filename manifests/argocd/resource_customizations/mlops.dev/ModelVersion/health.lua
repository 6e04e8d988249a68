-- Argo CD health of a mlops.dev ModelVersion, from the Ready and Degraded conditions the
-- operator writes after its digest-verification Job (controllers/modelversion.py):
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
