"""The application on top of the library: the runner (in-process or an orchestrator plugin), the
local Prefect supervisor, the demo and the command line."""
