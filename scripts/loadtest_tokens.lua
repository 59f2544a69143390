-- wrk script for scripts/loadtest.sh: every request carries the next token of
-- a file (one per line), so the server sees distinct tokens.
--   wrk ... -s scripts/loadtest_tokens.lua URL -- TOKENS_FILE [START]
-- START (default 0) is the line to begin with, so consecutive runs continue
-- through the file instead of resending its first tokens.
-- With several wrk threads each thread starts at its own offset.
local tokens = {}
local counter = 0
local offset = 0
local path = "/auth"

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = args[1] or "tokens.txt"
  for line in io.lines(file) do
    if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
  end
  if #tokens == 0 then error("no tokens in " .. file) end
  -- Spread threads over the file so they do not send the same tokens.
  offset = (tonumber(args[2]) or 0) + math.floor((id or 0) * #tokens / 16)
  path = wrk.path
end

function request()
  local t = tokens[(offset + counter) % #tokens + 1]
  counter = counter + 1
  return wrk.format("GET", path, { ["Authorization"] = t, ["X-Forwarded-Uri"] = "/v1/models", ["X-Forwarded-Method"] = "GET" })
end
