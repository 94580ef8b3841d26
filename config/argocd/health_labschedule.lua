-- Argo CD health check for labs.ambientlab.io/LabSchedule.
--
-- Install it as resource.customizations.health.labs.ambientlab.io_LabSchedule in argocd-cm: argocd-cm-patch.yaml
-- embeds this file verbatim (health_labschedule_test.go keeps the two equal and runs the rules below).
--
--   no status, or status.observedGeneration < metadata.generation   -> Progressing
--   condition Stalled True (the schedule or time zone does not parse) -> Degraded
--   spec.suspend true                                                 -> Suspended
--   status.lastRun.phase Failed                                       -> Degraded
--   status.lastRun.phase Succeeded                                    -> Healthy
--   no finished run yet                                               -> Progressing
--   any other last-run phase                                          -> Unknown
--
-- The health is the last finished run's: a schedule is healthy while its latest check of the mesh passed.
-- Argo CD runs health scripts without Lua's string library, so this script uses only comparisons and `..`.
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

-- lastRunText names the last run and its failing steps (at most 5 of them).
local function lastRunText(run)
  local s = "LabRun " .. text(run.name) .. " " .. text(run.phase)
  if type(run.summary) == "table" and run.summary.total ~= nil then
    s = s .. ": " .. text(run.summary.passed or 0) .. "/" .. text(run.summary.total) .. " steps passed"
  end
  if type(run.failedSteps) == "table" and #run.failedSteps > 0 then
    local names = ""
    for i, step in ipairs(run.failedSteps) do
      if i > 5 then
        names = names .. ", …"
        break
      end
      if names ~= "" then
        names = names .. ", "
      end
      names = names .. text(step)
    end
    s = s .. "; failed: " .. names
  end
  return s
end

local status = obj.status
local generation = 0
if type(obj.metadata) == "table" then
  generation = number(obj.metadata.generation, 0)
end
if type(status) ~= "table" or number(status.observedGeneration, -1) < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller"
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled.message)
  return hs
end

local run = status.lastRun
if type(run) ~= "table" then
  run = nil
end

if type(obj.spec) == "table" and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended"
  if run ~= nil then
    hs.message = hs.message .. "; last: " .. lastRunText(run)
  end
  return hs
end

if run == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the first run to finish"
  return hs
end

if run.phase == "Succeeded" then
  hs.status = "Healthy"
elseif run.phase == "Failed" then
  hs.status = "Degraded"
else
  hs.status = "Unknown"
end
hs.message = lastRunText(run)
return hs
