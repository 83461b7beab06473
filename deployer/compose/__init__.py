"""The Compose CLI, the engine of compose semantics for every target: its commands as data
(project), the desired state it resolves (resolve), and the images it builds (build)."""
