-- Argo CD health check for labs.ambientlab.io/LabRun.
--
-- Install it as resource.customizations.health.labs.ambientlab.io_LabRun in argocd-cm: argocd-cm-patch.yaml
-- embeds this file verbatim (health_test.go keeps the two equal and runs the rules below).
--
--   no status, no phase yet, or status.observedGeneration < metadata.generation -> Progressing
--   Succeeded and MeshRestored True                                              -> Healthy
--   Succeeded but MeshRestored not True                                          -> Degraded
--   Failed                                                                       -> Degraded
--   Pending, Queued, Running, Restoring                                          -> Progressing
--   any other phase                                                              -> Unknown
--
-- Argo CD runs health scripts without Lua's string library (only base, table and a safe os), so this script
-- uses nothing but comparisons and concatenation.
local hs = {}

local function text(v)
  if v == nil then
    return ""
  end
  return tostring(v)
end

local function number(v, default)
  if type(v) == "number" then
    return v
  end
  if type(v) == "string" then
    return tonumber(v) or default
  end
  return default
end

local function condition(status, condType)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == condType then
      return c
    end
  end
  return nil
end

local function join(a, b)
  if a == "" then
    return b
  end
  return a .. "; " .. b
end

local status = obj.status
local phase = ""
if type(status) == "table" then
  phase = text(status.phase)
end
local generation = 0
if type(obj.metadata) == "table" then
  generation = number(obj.metadata.generation, 0)
end

-- The controller writes status.phase on its first pass and status.observedGeneration on every pass; until it
-- has seen the current generation, whatever the status says is stale.
if phase == "" or number(status.observedGeneration, -1) < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller"
  return hs
end

local message = text(status.message)
local restored = condition(status, "MeshRestored")
local meshRestored = restored ~= nil and restored.status == "True"

local function meshNotRestored()
  local reason
  if restored == nil then
    reason = "no MeshRestored condition"
  elseif text(restored.reason) ~= "" then
    reason = text(restored.reason)
  else
    reason = "MeshRestored is " .. text(restored.status)
  end
  local s = "mesh NOT restored: " .. reason
  if restored ~= nil and text(restored.message) ~= "" then
    s = s .. " (" .. text(restored.message) .. ")"
  end
  return s
end

if phase == "Succeeded" then
  if meshRestored then
    hs.status = "Healthy"
    hs.message = message
  else
    hs.status = "Degraded"
    hs.message = join(message, meshNotRestored())
  end
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  if message == "" then
    message = "LabRun failed"
    if text(status.reason) ~= "" then
      message = message .. ": " .. text(status.reason)
    end
  end
  if not meshRestored then
    message = join(message, meshNotRestored())
  end
  hs.message = message
  return hs
end

if phase == "Pending" or phase == "Queued" or phase == "Running" or phase == "Restoring" then
  hs.status = "Progressing"
  if message == "" then
    message = phase
  end
  local holder = text(status.lockHolder)
  -- The controller's own Queued message already names the holder; say it only when the message does not.
  if phase == "Queued" and holder ~= "" and message ~= "Waiting for the mesh lock held by LabRun " .. holder then
    message = message .. " (waiting for the mesh lock held by LabRun " .. holder .. ")"
  end
  hs.message = message
  return hs
end

hs.status = "Unknown"
hs.message = join("Unrecognized phase " .. phase, message)
return hs
