"""The commands, one module each, written once against deployer.targets.base.Target: the CLI calls
them and renders what they return. `load` reads an environment and chooses its target."""
